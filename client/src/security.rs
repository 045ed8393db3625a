//! How the client reaches a secured cluster: `security.protocol` (PLAINTEXT, SSL,
//! SASL_PLAINTEXT, SASL_SSL), TLS with rustls from PEM files, and SASL PLAIN or
//! SCRAM-SHA-256/512, configured with the names Kafka's clients use:
//!
//! | setting | also accepted |
//! |---|---|
//! | `security.protocol` | |
//! | `sasl.mechanism` | `sasl.mechanisms` (librdkafka) |
//! | `sasl.username`, `sasl.password` | `sasl.jaas.config` with `username="…" password="…"` |
//! | `ssl.ca.location` | `ssl.truststore.location` (PEM) |
//! | `ssl.certificate.location`, `ssl.key.location` | `ssl.keystore.location` (PEM with both) |
//! | `ssl.endpoint.identification.algorithm` (`https` or `none`) | |
//!
//! Without a CA file the system's CA bundle is trusted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

use crate::auth::scram::{ClientExchange, Mechanism};
use crate::{ClientError, Connection};

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// A SASL mechanism and the credentials for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// `None`: PLAIN; otherwise SCRAM with this hash.
    pub scram: Option<Mechanism>,
    pub username: String,
    pub password: String,
}

impl SaslCredentials {
    pub fn mechanism_name(&self) -> &'static str {
        self.scram.map_or("PLAIN", Mechanism::name)
    }
}

/// What a connection does before its first request. Cheap to clone; the default is
/// PLAINTEXT.
#[derive(Clone, Default)]
pub struct Security {
    protocol: Protocol,
    tls: Option<Arc<ClientConfig>>,
    sasl: Option<SaslCredentials>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("tls", &self.tls.is_some())
            .field(
                "sasl",
                &self
                    .sasl
                    .as_ref()
                    .map(|s| (s.mechanism_name(), &s.username)),
            )
            .finish()
    }
}

/// TLS settings from PEM files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `ssl.endpoint.identification.algorithm=none`: the certificate must chain to the CA
    /// but need not name the host.
    pub skip_hostname_check: bool,
}

/// The socket read buffer under a TLS connection (four TLS records).
const TLS_READ_BUFFER: usize = 64 * 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order (an error names the file).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The system's CA bundle (Debian's path, then Red Hat's).
const SYSTEM_CA: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

impl TlsFiles {
    fn client_config(&self) -> Result<ClientConfig, String> {
        let mut roots = RootCertStore::empty();
        let ca = match &self.ca {
            Some(p) => p.clone(),
            None => SYSTEM_CA
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .ok_or("no ssl.ca.location and no system CA bundle")?,
        };
        for c in read_certificates(&ca)? {
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let roots = Arc::new(roots);
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if self.skip_hostname_check {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| e.to_string())?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyHostname(inner)))
        } else {
            builder.with_root_certificates(roots)
        };
        match (&self.certificate, &self.key) {
            (Some(c), Some(k)) => {
                let key =
                    PrivateKeyDer::from_pem_file(k).map_err(|e| format!("{}: {e}", k.display()))?;
                builder
                    .with_client_auth_cert(read_certificates(c)?, key)
                    .map_err(|e| format!("{}: {e}", c.display()))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err("ssl.certificate.location and ssl.key.location go together".into()),
        }
    }
}

/// A certificate verifier that checks the chain but not the name
/// (`ssl.endpoint.identification.algorithm=none`).
#[derive(Debug)]
struct AnyHostname(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `username="…"` and `password="…"` out of a `sasl.jaas.config`.
fn jaas_option(jaas: &str, key: &str) -> Option<String> {
    let at = jaas.find(&format!("{key}="))? + key.len() + 1;
    let rest = jaas[at..].strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

impl Security {
    pub fn plaintext() -> Self {
        Self::default()
    }

    /// `protocol` with TLS from `tls` (SSL, SASL_SSL) and `sasl` (SASL_*).
    pub fn new(
        protocol: Protocol,
        tls: Option<&TlsFiles>,
        sasl: Option<SaslCredentials>,
    ) -> Result<Self, String> {
        let tls = if protocol.tls() {
            let files = tls.cloned().unwrap_or_default();
            Some(Arc::new(files.client_config()?))
        } else {
            None
        };
        if protocol.sasl() && sasl.is_none() {
            return Err(format!(
                "security.protocol {protocol:?} needs sasl.username and sasl.password"
            ));
        }
        Ok(Self {
            protocol,
            tls,
            sasl: sasl.filter(|_| protocol.sasl()),
        })
    }

    /// From client settings by Kafka's names (see the module docs); `get` looks one up.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let protocol = match get("security.protocol") {
            None => Protocol::Plaintext,
            Some(p) => Protocol::from_name(&p).ok_or_else(|| {
                format!("security.protocol '{p}' is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
            })?,
        };
        let jaas = get("sasl.jaas.config").unwrap_or_default();
        let username = get("sasl.username").or_else(|| jaas_option(&jaas, "username"));
        let password = get("sasl.password").or_else(|| jaas_option(&jaas, "password"));
        let mechanism = get("sasl.mechanism")
            .or_else(|| get("sasl.mechanisms"))
            .unwrap_or_else(|| "PLAIN".into());
        let scram = if mechanism.eq_ignore_ascii_case("PLAIN") {
            None
        } else {
            Some(Mechanism::from_name(&mechanism).ok_or_else(|| {
                format!("sasl.mechanism '{mechanism}' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
            })?)
        };
        let sasl = match (username, password) {
            (Some(username), Some(password)) => Some(SaslCredentials {
                scram,
                username,
                password,
            }),
            _ => None,
        };
        let keystore = get("ssl.keystore.location");
        let tls = TlsFiles {
            ca: get("ssl.ca.location")
                .or_else(|| get("ssl.truststore.location"))
                .map(PathBuf::from),
            certificate: get("ssl.certificate.location")
                .or_else(|| keystore.clone())
                .map(PathBuf::from),
            key: get("ssl.key.location").or(keystore).map(PathBuf::from),
            skip_hostname_check: get("ssl.endpoint.identification.algorithm")
                .is_some_and(|a| a.trim().is_empty() || a.eq_ignore_ascii_case("none")),
        };
        Self::new(protocol, Some(&tls), sasl)
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Connects to `addr` (`host:port`), runs TLS and SASL as configured, and returns the
    /// connection ready for requests.
    pub async fn connect(&self, addr: &str) -> Result<Connection, ClientError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut conn = match &self.tls {
            None => Connection::from_stream(tcp),
            Some(config) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name =
                    ServerName::try_from(host.to_string()).map_err(|e| ClientError::Auth {
                        reason: format!("'{host}' is not a TLS server name: {e}"),
                    })?;
                // rustls reads at most 4 KB of ciphertext per call; a buffer under it turns
                // four or more syscalls per 16 KB record into one per 64 KB.
                let tcp = tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, tcp);
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ClientError::Auth {
                        reason: format!("TLS handshake with {addr} failed: {e}"),
                    })?;
                Connection::from_io(Box::new(tls))
            }
        };
        if let Some(sasl) = &self.sasl {
            let lifetime = authenticate(&mut conn, sasl).await?;
            conn.set_session(Arc::new(sasl.clone()), lifetime);
        }
        Ok(conn)
    }
}

fn sasl_failed(code: i16, message: Option<&StrBytes>) -> ClientError {
    ClientError::Auth {
        reason: format!(
            "{}{}",
            crate::error_name(code),
            message.map(|m| format!(": {m}")).unwrap_or_default()
        ),
    }
}

/// SaslHandshake v1, then the mechanism's SaslAuthenticate rounds (v1); returns the session
/// lifetime the broker gave (KIP-368), if any.
pub(crate) async fn authenticate(
    conn: &mut Connection,
    sasl: &SaslCredentials,
) -> Result<Option<std::time::Duration>, ClientError> {
    let hs = conn
        .exchange(
            SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(sasl.mechanism_name())),
            1,
        )
        .await?;
    if hs.error_code != 0 {
        let offered: Vec<&str> = hs.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(ClientError::Auth {
            reason: format!(
                "{} (the broker offers {})",
                crate::error_name(hs.error_code),
                offered.join(", ")
            ),
        });
    }
    let round = |bytes: Vec<u8>| SaslAuthenticateRequest::default().with_auth_bytes(bytes.into());
    let lifetime_ms: i64;
    match sasl.scram {
        None => {
            let r = conn
                .exchange(
                    round(crate::auth::plain_token(&sasl.username, &sasl.password)),
                    1,
                )
                .await?;
            if r.error_code != 0 {
                return Err(sasl_failed(r.error_code, r.error_message.as_ref()));
            }
            lifetime_ms = r.session_lifetime_ms;
        }
        Some(m) => {
            let (mut exchange, first) = ClientExchange::start(m, &sasl.username, &sasl.password);
            let r = conn.exchange(round(first), 1).await?;
            if r.error_code != 0 {
                return Err(sasl_failed(r.error_code, r.error_message.as_ref()));
            }
            let last = exchange
                .server_first(&r.auth_bytes)
                .map_err(|e| ClientError::Auth {
                    reason: e.to_string(),
                })?;
            let r = conn.exchange(round(last), 1).await?;
            if r.error_code != 0 {
                return Err(sasl_failed(r.error_code, r.error_message.as_ref()));
            }
            exchange
                .server_final(&r.auth_bytes)
                .map_err(|e| ClientError::Auth {
                    reason: e.to_string(),
                })?;
            lifetime_ms = r.session_lifetime_ms;
        }
    }
    Ok((lifetime_ms > 0).then(|| std::time::Duration::from_millis(lifetime_ms as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn settings_by_kafka_and_librdkafka_names() {
        let s = Security::from_settings(settings(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="s3cret";"#,
            ),
        ]))
        .expect("settings");
        assert_eq!(s.protocol(), Protocol::SaslPlaintext);
        assert_eq!(
            s.sasl,
            Some(SaslCredentials {
                scram: Some(Mechanism::Sha512),
                username: "alice".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(
            Security::from_settings(settings(&[]))
                .expect("plain")
                .protocol(),
            Protocol::Plaintext
        );
        for bad in [
            vec![("security.protocol", "TLS")],
            vec![("security.protocol", "SASL_PLAINTEXT")],
            vec![
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "GSSAPI"),
                ("sasl.username", "a"),
                ("sasl.password", "b"),
            ],
            vec![
                ("security.protocol", "SSL"),
                ("ssl.ca.location", "/nonexistent/ca.pem"),
            ],
        ] {
            assert!(Security::from_settings(settings(&bad)).is_err(), "{bad:?}");
        }
    }
}
