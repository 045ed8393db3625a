//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them: the credential a
//! broker stores (salt, iterations, StoredKey, ServerKey; never the password), the server's
//! side of the exchange and the client's. The primitives (PBKDF2, HMAC, SHA-2) are RustCrypto's.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::Digest;

/// Kafka's floor for `iterations` (and librdkafka's default).
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's ceiling for `iterations`.
pub const MAX_ITERATIONS: u32 = 16384;

/// A SCRAM mechanism, by its SASL name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    /// The code Alter/DescribeUserScramCredentials use (1: SHA-256, 2: SHA-512).
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Mechanism::Sha256),
            2 => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = <hmac::Hmac<sha2::Sha512> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Hi(password, salt, iterations): PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
                out
            }
            Mechanism::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a broker keeps for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl Credential {
    /// The credential for `password` with a fresh random salt.
    pub fn new(mechanism: Mechanism, password: &str, iterations: u32) -> Self {
        let salt = random_salt();
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Self::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// The credential for an already salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mechanism: Mechanism,
        salted_password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Self {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        Self {
            salt,
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// Whether `password` is the one this credential was made from (SASL/PLAIN checks
    /// passwords against the SCRAM store).
    pub fn matches_password(&self, mechanism: Mechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        constant_time_eq(&mechanism.hash(&client_key), &self.stored_key)
    }
}

/// Why a SCRAM exchange failed. The text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    #[error("Authentication failed during authentication due to invalid credentials with SASL mechanism {0}")]
    InvalidCredentials(Mechanism),
    #[error("the SCRAM nonce does not continue the client's")]
    NonceMismatch,
    #[error("the server's signature is wrong: it does not know the password")]
    BadServerSignature,
    #[error("the server refused: {0}")]
    ServerError(String),
}

/// `n=user,r=nonce[,ext...]` fields of a SCRAM message, in order.
fn fields(msg: &str) -> Result<Vec<(char, &str)>, ScramError> {
    msg.split(',')
        .map(|f| {
            let mut chars = f.chars();
            match (chars.next(), chars.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => Ok((k, &f[2..])),
                _ => Err(ScramError::Malformed(format!("field '{f}'"))),
            }
        })
        .collect()
}

fn field<'a>(fields: &[(char, &'a str)], key: char) -> Result<&'a str, ScramError> {
    fields
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| ScramError::Malformed(format!("no '{key}=' field")))
}

/// RFC 5802's saslname: `=2C` is ',' and `=3D` is '='.
fn decode_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed(format!("bad escape in name '{s}'"))),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn encode_name(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// A fresh salt for a new credential.
pub fn random_salt() -> Vec<u8> {
    random_bytes(24)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}

/// A nonce of letters, digits, '-' and '_' (no '+', '/' or '=' for clients that parse
/// SCRAM attributes loosely).
fn nonce() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(24))
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's half of one exchange: `client_first` then `client_final`.
pub struct ServerExchange {
    mechanism: Mechanism,
    state: ServerState,
}

enum ServerState {
    Start,
    /// Sent server-first; `credential` is `None` for an unknown user, who still gets a
    /// server-first (with a made-up salt) so that names cannot be probed.
    Challenged {
        user: String,
        credential: Option<Credential>,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

impl ServerExchange {
    pub fn new(mechanism: Mechanism) -> Self {
        Self {
            mechanism,
            state: ServerState::Start,
        }
    }

    /// Answers the client-first message. `lookup` finds the user's credential.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ServerState::Start) {
            return Err(ScramError::Malformed("client-first sent twice".into()));
        }
        self.state = ServerState::Done;
        let msg = std::str::from_utf8(msg)
            .map_err(|_| ScramError::Malformed("client-first is not UTF-8".into()))?;
        // gs2-header: no channel binding ("n") or "y"; no authzid or one equal to the user.
        let (cb, rest) = msg
            .split_once(',')
            .ok_or_else(|| ScramError::Malformed("no GS2 header".into()))?;
        if cb != "n" && cb != "y" {
            return Err(ScramError::Malformed(
                "channel binding is not supported".into(),
            ));
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or_else(|| ScramError::Malformed("no GS2 header".into()))?;
        let f = fields(bare)?;
        let user = decode_name(field(&f, 'n')?)?;
        let client_nonce = field(&f, 'r')?;
        if client_nonce.is_empty() || !client_nonce.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ScramError::Malformed("bad client nonce".into()));
        }
        if let Some(a) = authzid.strip_prefix("a=") {
            if decode_name(a)? != user {
                return Err(ScramError::Malformed(
                    "the authorization id is not the user".into(),
                ));
            }
        } else if !authzid.is_empty() {
            return Err(ScramError::Malformed("bad authorization id".into()));
        }
        let credential = lookup(&user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (random_bytes(24), MIN_ITERATIONS),
        };
        let nonce = format!("{client_nonce}{}", nonce());
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        self.state = ServerState::Challenged {
            user,
            credential,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first.into_bytes())
    }

    /// Checks the client-final message; on success returns the server-final message and
    /// the authenticated user.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let ServerState::Challenged {
            user,
            credential,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(ScramError::Malformed(
                "client-final before client-first".into(),
            ));
        };
        let msg = std::str::from_utf8(msg)
            .map_err(|_| ScramError::Malformed("client-final is not UTF-8".into()))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| ScramError::Malformed("no proof".into()))?;
        let f = fields(without_proof)?;
        // Kafka checks that the nonce *ends with* the server's: librdkafka before 2.3 sends
        // its client nonce twice (client nonce + the whole server nonce). What the client
        // sent is what its proof signs, so the check below still binds the exchange.
        if !field(&f, 'r')?.ends_with(&nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("the proof is not base64".into()))?;
        let Some(credential) = credential else {
            return Err(ScramError::InvalidCredentials(self.mechanism));
        };
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let m = self.mechanism;
        let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::InvalidCredentials(m));
        }
        let client_key = xor(&proof, &client_signature);
        if !constant_time_eq(&m.hash(&client_key), &credential.stored_key) {
            return Err(ScramError::InvalidCredentials(m));
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        Ok((
            format!("v={}", B64.encode(server_signature)).into_bytes(),
            user,
        ))
    }
}

/// The client's half of one exchange.
pub struct ClientExchange {
    mechanism: Mechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl ClientExchange {
    /// Starts an exchange; returns it and the client-first message.
    pub fn start(mechanism: Mechanism, user: &str, password: &str) -> (Self, Vec<u8>) {
        let nonce = nonce();
        let client_first_bare = format!("n={},r={nonce}", encode_name(user));
        let first = format!("n,,{client_first_bare}").into_bytes();
        (
            Self {
                mechanism,
                password: password.to_string(),
                client_first_bare,
                nonce,
                server_signature: None,
            },
            first,
        )
    }

    /// Answers the server-first message with the client-final message.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg = std::str::from_utf8(msg)
            .map_err(|_| ScramError::Malformed("server-first is not UTF-8".into()))?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let f = fields(msg)?;
        let nonce = field(&f, 'r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64
            .decode(field(&f, 's')?)
            .map_err(|_| ScramError::Malformed("the salt is not base64".into()))?;
        let iterations: u32 = field(&f, 'i')?
            .parse()
            .map_err(|_| ScramError::Malformed("bad iteration count".into()))?;
        if !(1..=1_000_000).contains(&iterations) {
            return Err(ScramError::Malformed(format!("{iterations} iterations")));
        }
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{msg},{without_proof}", self.client_first_bare);
        let proof = xor(&client_key, &m.hmac(&stored_key, auth_message.as_bytes()));
        let server_key = m.hmac(&salted, b"Server Key");
        self.server_signature = Some(m.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server proves it knows the credential.
    pub fn server_final(&self, msg: &[u8]) -> Result<(), ScramError> {
        let msg = std::str::from_utf8(msg)
            .map_err(|_| ScramError::Malformed("server-final is not UTF-8".into()))?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let v = msg
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v.split(',').next().unwrap_or("")).ok())
            .ok_or_else(|| ScramError::Malformed("no server signature".into()))?;
        match &self.server_signature {
            Some(s) if constant_time_eq(s, &v) => Ok(()),
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(
        mechanism: Mechanism,
        stored: &Credential,
        password: &str,
    ) -> Result<String, ScramError> {
        let mut server = ServerExchange::new(mechanism);
        let (mut client, first) = ClientExchange::start(mechanism, "al=ice,x", password);
        let server_first = server.client_first(&first, |u| {
            assert_eq!(u, "al=ice,x");
            Some(stored.clone())
        })?;
        let client_final = client.server_first(&server_first)?;
        let (server_final, user) = server.client_final(&client_final)?;
        client.server_final(&server_final)?;
        Ok(user)
    }

    #[test]
    fn both_mechanisms_authenticate_the_right_password_only() {
        for m in Mechanism::ALL {
            let c = Credential::new(m, "s3cret", MIN_ITERATIONS);
            assert_eq!(exchange(m, &c, "s3cret"), Ok("al=ice,x".to_string()));
            assert_eq!(
                exchange(m, &c, "wrong"),
                Err(ScramError::InvalidCredentials(m))
            );
            assert!(c.matches_password(m, "s3cret"));
            assert!(!c.matches_password(m, "s3cret "));
        }
    }

    /// RFC 7677's SCRAM-SHA-256 example, checked from the server's stored keys.
    #[test]
    fn rfc7677_test_vector() {
        let m = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let c = Credential::from_salted_password(m, &salted, salt, 4096);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let proof = B64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .expect("b64");
        let client_key = xor(&proof, &m.hmac(&c.stored_key, auth.as_bytes()));
        assert_eq!(m.hash(&client_key), c.stored_key);
        assert_eq!(
            B64.encode(m.hmac(&c.server_key, auth.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn a_replayed_or_altered_nonce_is_refused() {
        let m = Mechanism::Sha512;
        let c = Credential::new(m, "pw", MIN_ITERATIONS);
        let mut server = ServerExchange::new(m);
        let (mut client, first) = ClientExchange::start(m, "bob", "pw");
        let sf = server
            .client_first(&first, |_| Some(c.clone()))
            .expect("first");
        let cf = String::from_utf8(client.server_first(&sf).expect("final")).expect("utf8");
        let tampered = cf.replacen(",p=", "X,p=", 1);
        assert_eq!(
            server.client_final(tampered.as_bytes()),
            Err(ScramError::NonceMismatch)
        );
        // The exchange is over: a second client-final is out of order.
        assert!(matches!(
            server.client_final(cf.as_bytes()),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn a_nonce_with_the_client_part_twice_is_accepted_as_kafka_does() {
        // librdkafka < 2.3 signs and sends r=<client nonce><server nonce>.
        let m = Mechanism::Sha256;
        let c = Credential::new(m, "pw", MIN_ITERATIONS);
        let mut server = ServerExchange::new(m);
        let first = b"n,,n=kcat,r=abc";
        let sf = server
            .client_first(first, |_| Some(c.clone()))
            .expect("first");
        let sf = String::from_utf8(sf).expect("utf8");
        let nonce = sf.split(',').next().expect("r").trim_start_matches("r=");
        let salted = m.salted_password(b"pw", &c.salt, c.iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r=abc{nonce}");
        let auth = format!("n=kcat,r=abc,{sf},{without_proof}");
        let proof = xor(&client_key, &m.hmac(&c.stored_key, auth.as_bytes()));
        let cf = format!("{without_proof},p={}", B64.encode(proof));
        assert_eq!(
            server.client_final(cf.as_bytes()).map(|(_, u)| u),
            Ok("kcat".to_string())
        );
    }

    #[test]
    fn an_unknown_user_gets_a_challenge_then_the_same_failure() {
        let m = Mechanism::Sha256;
        let mut server = ServerExchange::new(m);
        let (mut client, first) = ClientExchange::start(m, "nobody", "pw");
        let sf = server.client_first(&first, |_| None).expect("challenged");
        let cf = client.server_first(&sf).expect("final");
        assert_eq!(
            server.client_final(&cf),
            Err(ScramError::InvalidCredentials(m))
        );
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [
            &b""[..],
            b"n,,",
            b"p=tls,,n=a,r=b",
            b"n,,n=a",
            b"\xff\xfe",
            b"n,,x=1,r=2",
        ] {
            let mut server = ServerExchange::new(Mechanism::Sha256);
            assert!(
                matches!(
                    server.client_first(bad, |_| None),
                    Err(ScramError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }
}
