//! Authentication shared by the broker (the server side) and the client: SCRAM and SASL/PLAIN.

pub mod scram;

/// A SASL/PLAIN token (RFC 4616): `[authzid] NUL authcid NUL password`. Returns the user
/// and the password; an authorization id other than the user is refused, as Kafka does.
pub fn parse_plain(token: &[u8]) -> Result<(String, String), String> {
    let text = std::str::from_utf8(token).map_err(|_| "the PLAIN token is not UTF-8")?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the PLAIN token is not authzid NUL user NUL password".into());
    };
    if user.is_empty() || password.is_empty() {
        return Err("the PLAIN user and password must not be empty".into());
    }
    if !authzid.is_empty() && authzid != user {
        return Err("the PLAIN authorization id is not the user".into());
    }
    Ok((user.to_string(), password.to_string()))
}

/// The PLAIN token for `user` and `password`.
pub fn plain_token(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tokens() {
        assert_eq!(
            parse_plain(&plain_token("alice", "pw")),
            Ok(("alice".into(), "pw".into()))
        );
        assert!(parse_plain(b"alice\0alice\0pw").is_ok());
        assert!(parse_plain(b"bob\0alice\0pw").is_err());
        assert!(parse_plain(b"\0alice").is_err());
        assert!(parse_plain(b"\0alice\0pw\0more").is_err());
        assert!(parse_plain(b"\0\0pw").is_err());
    }
}
