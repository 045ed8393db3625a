//! Who is on the other end of a connection: listeners with Kafka's security protocols, TLS
//! (rustls) and SASL (PLAIN, SCRAM-SHA-256/512). A connection authenticates before any other
//! request; what it may then do is the authoriser's business, per request.
//!
//! ```text
//!   accept --> [TLS handshake: SSL, SASL_SSL] --> [SASL exchange: SASL_*] --> requests
//!                 principal from the client          principal from the
//!                 certificate (mTLS), mapped          SASL user
//! ```

pub mod authorizer;
pub mod oauth;
pub mod principal;
pub mod sasl;
pub mod tls;

use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::ConfigError;

/// A listener's security protocol (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// One Kafka listener: its name (the endpoint name brokers register it under), protocol, the
/// address it binds and the address clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    pub advertised: (String, u16),
}

/// The principal of a connection that has not authenticated (PLAINTEXT, or SSL without a
/// client certificate), as Kafka names it.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// What a request handler knows about the connection it came on.
#[derive(Debug, Clone)]
pub struct Session {
    /// The listener's name: Metadata answers with the brokers' endpoints of this listener.
    pub listener: std::sync::Arc<str>,
    /// `User:name`.
    pub principal: String,
    pub peer: SocketAddr,
}

/// `NAME://host:port,...` (Kafka's `listeners` and `advertised.listeners` syntax).
pub fn parse_listener_list(
    flag: &'static str,
    list: &str,
) -> Result<Vec<(String, String, u16)>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { flag, reason };
    let mut out: Vec<(String, String, u16)> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, addr) = item
            .split_once("://")
            .ok_or_else(|| invalid(format!("'{item}' is not NAME://host:port")))?;
        let name = name.to_ascii_uppercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(format!("'{name}' is not a listener name")));
        }
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| invalid(format!("'{item}' has no port")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(format!("'{port}' is not a port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if out.iter().any(|(n, _, _)| *n == name) {
            return Err(invalid(format!("listener {name} is named twice")));
        }
        out.push((name, host.to_string(), port));
    }
    if out.is_empty() {
        return Err(invalid("no listener given".into()));
    }
    Ok(out)
}

/// `NAME:PROTOCOL,...` (Kafka's `listener.security.protocol.map`).
pub fn parse_protocol_map(
    map: Option<&str>,
) -> Result<Vec<(String, SecurityProtocol)>, ConfigError> {
    let mut out: Vec<(String, SecurityProtocol)> =
        ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
            .iter()
            .filter_map(|n| SecurityProtocol::from_name(n).map(|p| (n.to_string(), p)))
            .collect();
    for item in map
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, proto) = item.split_once(':').ok_or(ConfigError::Invalid {
            flag: "--listener-security-protocol-map",
            reason: format!("'{item}' is not NAME:PROTOCOL"),
        })?;
        let proto = SecurityProtocol::from_name(proto).ok_or(ConfigError::Invalid {
            flag: "--listener-security-protocol-map",
            reason: format!(
                "'{proto}' is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"
            ),
        })?;
        let name = name.to_ascii_uppercase();
        out.retain(|(n, _)| *n != name);
        out.push((name, proto));
    }
    Ok(out)
}

/// Resolves `host:port` to the address to bind; an empty host binds every interface.
pub fn bind_address(flag: &'static str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConfigError::Invalid {
            flag,
            reason: format!("cannot resolve '{host}'"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_lists_parse_as_kafka_writes_them() {
        let l = parse_listener_list(
            "--listeners",
            "PLAINTEXT://127.0.0.1:9092, sasl_ssl://localhost:9094,INTERNAL://:9095",
        )
        .expect("parse");
        assert_eq!(
            l,
            vec![
                ("PLAINTEXT".into(), "127.0.0.1".into(), 9092),
                ("SASL_SSL".into(), "localhost".into(), 9094),
                ("INTERNAL".into(), "".into(), 9095),
            ]
        );
        for bad in [
            "",
            "127.0.0.1:9092",
            "X://h",
            "X://h:port",
            "A://h:1,A://h:2",
            "A-B://h:1",
        ] {
            assert!(parse_listener_list("--listeners", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_protocol_map_extends_the_standard_names() {
        let m = parse_protocol_map(Some("INTERNAL:SSL,PLAINTEXT:SASL_PLAINTEXT")).expect("map");
        let get = |n: &str| m.iter().find(|(k, _)| k == n).map(|(_, p)| *p);
        assert_eq!(get("INTERNAL"), Some(SecurityProtocol::Ssl));
        assert_eq!(get("PLAINTEXT"), Some(SecurityProtocol::SaslPlaintext));
        assert_eq!(get("SASL_SSL"), Some(SecurityProtocol::SaslSsl));
        assert!(parse_protocol_map(Some("X:TLS")).is_err());
        assert!(parse_protocol_map(Some("X")).is_err());
    }
}
