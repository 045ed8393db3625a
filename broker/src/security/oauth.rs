//! OAUTHBEARER (RFC 7628, KIP-255, KIP-768): the client sends a signed JWT, the broker checks
//! its signature against the keys of a JWKS file (`--sasl-oauthbearer-jwks-endpoint-url`,
//! a `file:` URL or a path) and its claims: `exp` (with `--sasl-oauthbearer-clock-skew-seconds`
//! of leeway), and, when configured, `aud` and `iss`. The principal is `User:` and the
//! subject claim (`sub`, or `--sasl-oauthbearer-sub-claim-name`). With KIP-368
//! re-authentication on, the session ends when the token does.
//!
//! The JWKS file is read again when a token names a key it does not hold (a key rotation)
//! and at least every `--sasl-oauthbearer-jwks-endpoint-refresh-ms`, if it changed.
//! Only asymmetric algorithms (RS*, PS*, ES*, EdDSA) are accepted: a JWKS holds public keys.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tracing::{info, warn};

/// What a validator checks.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub jwks_path: PathBuf,
    pub expected_audience: Vec<String>,
    pub expected_issuer: Option<String>,
    pub sub_claim: String,
    pub clock_skew: Duration,
    pub refresh: Duration,
}

impl OAuthConfig {
    /// The JWKS file named by `--sasl-oauthbearer-jwks-endpoint-url`: `file:///path` or a path.
    pub fn jwks_path(url: &str) -> Result<PathBuf, String> {
        if let Some(rest) = url.strip_prefix("file://") {
            return Ok(PathBuf::from(rest));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Err(format!(
                "{url}: only JWKS files (file:///path) are supported; fetch the endpoint's keys into a file"
            ));
        }
        Ok(PathBuf::from(url))
    }
}

/// A token that passed: who it names and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidToken {
    pub user: String,
    pub expires: SystemTime,
}

struct Keys {
    set: JwkSet,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// Checks bearer tokens against the JWKS file.
pub struct JwksValidator {
    config: OAuthConfig,
    keys: RwLock<Keys>,
}

impl JwksValidator {
    pub fn load(config: OAuthConfig) -> Result<Self, String> {
        let (set, modified) = read_jwks(&config.jwks_path)?;
        info!(path = %config.jwks_path.display(), keys = set.keys.len(), "OAUTHBEARER keys loaded");
        Ok(Self {
            config,
            keys: RwLock::new(Keys {
                set,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    /// Re-reads the JWKS file if it changed since it was read.
    fn refresh(&self) {
        let modified = std::fs::metadata(&self.config.jwks_path)
            .and_then(|m| m.modified())
            .ok();
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.checked = Instant::now();
        if modified.is_some() && modified == keys.modified {
            return;
        }
        match read_jwks(&self.config.jwks_path) {
            Ok((set, modified)) => {
                info!(path = %self.config.jwks_path.display(), keys = set.keys.len(), "OAUTHBEARER keys reloaded");
                keys.set = set;
                keys.modified = modified;
            }
            Err(e) => warn!(error = %e, "OAUTHBEARER keys not reloaded; keeping the previous ones"),
        }
    }

    /// The key for `kid` (or the only key when the token names none), reloading the file
    /// once if it is not there.
    fn key(&self, kid: Option<&str>) -> Result<DecodingKey, String> {
        let find = |keys: &Keys| -> Option<Result<DecodingKey, String>> {
            let jwk = match kid {
                Some(k) => keys.set.find(k)?,
                None if keys.set.keys.len() == 1 => &keys.set.keys[0],
                None => {
                    return Some(Err(
                        "the token names no key (kid) and the JWKS holds several".into(),
                    ))
                }
            };
            Some(DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key unusable: {e}")))
        };
        let stale = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            if keys.checked.elapsed() < self.config.refresh {
                if let Some(k) = find(&keys) {
                    return k;
                }
            }
            true
        };
        if stale {
            self.refresh();
        }
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        find(&keys)
            .unwrap_or_else(|| Err(format!("no key '{}' in the JWKS", kid.unwrap_or_default())))
    }

    pub fn validate(&self, token: &str) -> Result<ValidToken, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(format!(
                "algorithm {:?} is not allowed: only signatures a JWKS can check",
                header.alg
            ));
        }
        let key = self.key(header.kid.as_deref())?;
        let mut v = Validation::new(header.alg);
        v.leeway = self.config.clock_skew.as_secs();
        v.set_required_spec_claims(&["exp"]);
        if self.config.expected_audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.config.expected_audience);
        }
        if let Some(iss) = &self.config.expected_issuer {
            v.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|e| format!("invalid token: {e}"))?;
        let user = data
            .claims
            .get(&self.config.sub_claim)
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("the token has no '{}' claim", self.config.sub_claim))?;
        let exp = data
            .claims
            .get("exp")
            .and_then(|e| e.as_f64())
            .ok_or("the token has no numeric 'exp' claim")?;
        Ok(ValidToken {
            user: user.to_string(),
            expires: UNIX_EPOCH + Duration::from_secs_f64(exp.max(0.0)),
        })
    }
}

fn read_jwks(path: &PathBuf) -> Result<(JwkSet, Option<SystemTime>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the JWKS {}: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a JWKS: {e}", path.display()))?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Ok((set, modified))
}

/// The bearer token in a client's initial response (RFC 7628 §3.1):
/// `n,[a=authzid],` `\x01auth=Bearer <token>\x01` then `key=value\x01` extensions, `\x01`.
pub fn parse_client_response(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the OAUTHBEARER response is not UTF-8")?;
    let (gs2, rest) = text
        .split_once('\x01')
        .ok_or("the OAUTHBEARER response has no key/value pairs")?;
    if !(gs2.starts_with("n,") || gs2.starts_with("y,")) || !gs2.ends_with(',') {
        return Err(format!("bad GS2 header '{gs2}'"));
    }
    let rest = rest
        .strip_suffix("\x01\x01")
        .ok_or("the OAUTHBEARER response does not end with two separators")?;
    let mut token = None;
    for kv in rest.split('\x01') {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("bad key/value pair '{kv}'"))?;
        if k == "auth" {
            let t = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .ok_or("the auth value is not 'Bearer <token>'")?;
            token = Some(t.trim().to_string());
        }
    }
    token.ok_or_else(|| "no auth=Bearer in the OAUTHBEARER response".to_string())
}

/// The error a failed token is answered with before the client's final `\x01` (RFC 7628 §3.2.2).
pub fn error_challenge() -> Vec<u8> {
    br#"{"status":"invalid_token"}"#.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_response_yields_the_token() {
        let r = b"n,,\x01auth=Bearer abc.def.ghi\x01traceId=7\x01\x01";
        assert_eq!(parse_client_response(r), Ok("abc.def.ghi".to_string()));
        let r = b"n,a=alice,\x01auth=Bearer t\x01\x01";
        assert_eq!(parse_client_response(r), Ok("t".to_string()));
        assert!(parse_client_response(b"n,,\x01auth=Basic x\x01\x01").is_err());
        assert!(parse_client_response(b"n,,\x01auth=Bearer t\x01").is_err());
        assert!(parse_client_response(b"\x01").is_err());
        assert!(parse_client_response(b"n,,\x01other=1\x01\x01").is_err());
        assert!(parse_client_response(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn jwks_urls_are_files() {
        assert_eq!(
            OAuthConfig::jwks_path("file:///etc/strom/jwks.json"),
            Ok(PathBuf::from("/etc/strom/jwks.json"))
        );
        assert!(OAuthConfig::jwks_path("https://idp/keys").is_err());
    }

    #[test]
    fn symmetric_and_malformed_tokens_are_refused_before_any_key_lookup() {
        let dir = std::env::temp_dir().join(format!("strom-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("jwks.json");
        std::fs::write(&path, r#"{"keys":[]}"#).expect("write");
        let v = JwksValidator::load(OAuthConfig {
            jwks_path: path,
            expected_audience: vec![],
            expected_issuer: None,
            sub_claim: "sub".into(),
            clock_skew: Duration::from_secs(30),
            refresh: Duration::from_secs(3600),
        })
        .expect("load");
        // {"alg":"HS256","typ":"JWT"}.{"sub":"a","exp":9999999999}.sig
        let hs = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.c2ln";
        assert!(v.validate(hs).expect_err("refused").contains("not allowed"));
        assert!(v.validate("not-a-jwt").is_err());
    }
}
