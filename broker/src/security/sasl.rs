//! The SASL side of a connection: SaslHandshake (v1) names a mechanism, SaslAuthenticate
//! carries its tokens. PLAIN checks the password against the SCRAM credentials in the metadata
//! image; SCRAM-SHA-256/512 runs RFC 5802's exchange against them; OAUTHBEARER checks a signed
//! JWT against a JWKS file ([`super::oauth`]). Until it succeeds a
//! connection may send only ApiVersions and these two; a failure is answered, then the
//! connection is closed. With `--connections-max-reauth-ms` the session has a lifetime
//! (KIP-368): the client re-authenticates on the same connection before it ends, or the
//! broker closes the connection at its next request.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;
use metadata_quorum::MetadataImage;
use strom_client::auth::scram::{Credential, Mechanism, ScramError, ServerExchange};
use tracing::info;

use super::oauth::{self, JwksValidator};
use crate::handlers::str_bytes;

/// A mechanism this broker can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
    OAuthBearer,
}

impl SaslMechanism {
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("PLAIN") {
            return Some(Self::Plain);
        }
        if name.eq_ignore_ascii_case("OAUTHBEARER") {
            return Some(Self::OAuthBearer);
        }
        Mechanism::from_name(name).map(Self::Scram)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(m) => m.name(),
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// The SCRAM credential of `user` for `mechanism` in `image`.
pub fn credential(image: &MetadataImage, user: &str, mechanism: Mechanism) -> Option<Credential> {
    image
        .scram
        .get(&(user.to_string(), mechanism.code()))
        .map(|c| Credential {
            salt: c.salt.clone(),
            iterations: c.iterations,
            stored_key: c.stored_key.clone(),
            server_key: c.server_key.clone(),
        })
}

enum Step {
    /// Waiting for SaslHandshake.
    Handshake,
    /// Handshake done; waiting for the first SaslAuthenticate.
    Mechanism(SaslMechanism),
    /// SCRAM: server-first sent.
    Scram(Box<ServerExchange>),
    /// OAUTHBEARER: the token was refused and the error sent; the client's `\x01` ends it.
    OAuthRefused(String),
    Done,
}

/// One connection's SASL state.
pub struct SaslServer {
    enabled: Vec<SaslMechanism>,
    reauth: Option<Duration>,
    oauth: Option<Arc<JwksValidator>>,
    step: Step,
    /// The authenticated user and when the session ends.
    user: Option<(String, Option<Instant>)>,
    /// SaslHandshake v0: the tokens that follow are raw frames, not SaslAuthenticate.
    raw: bool,
    mechanism: Option<SaslMechanism>,
    /// An exchange just succeeded: `Some(true)` when it re-authenticated a session.
    completed: Option<bool>,
}

/// What the connection does after a SASL answer.
pub struct SaslAnswer<T> {
    pub response: T,
    /// Close the connection once the answer is written.
    pub close: bool,
}

impl SaslServer {
    pub fn new(
        enabled: Vec<SaslMechanism>,
        reauth: Option<Duration>,
        oauth: Option<Arc<JwksValidator>>,
    ) -> Self {
        Self {
            enabled,
            reauth,
            oauth,
            step: Step::Handshake,
            user: None,
            raw: false,
            mechanism: None,
            completed: None,
        }
    }

    /// Whether the last answer completed an exchange (`Some(true)`: a re-authentication);
    /// reading it clears it.
    pub fn take_completed(&mut self) -> Option<bool> {
        self.completed.take()
    }

    /// The mechanism of the last handshake.
    pub fn mechanism(&self) -> Option<&'static str> {
        self.mechanism.map(SaslMechanism::name)
    }

    /// The authenticated principal (`User:name`), once there is one.
    pub fn principal(&self) -> Option<String> {
        self.user.as_ref().map(|(u, _)| format!("User:{u}"))
    }

    /// Whether the connection may send other requests: authenticated, and not mid
    /// re-authentication.
    pub fn authenticated(&self) -> bool {
        self.user.is_some() && matches!(self.step, Step::Done)
    }

    /// Whether the session lifetime has run out (KIP-368).
    pub fn expired(&self, now: Instant) -> bool {
        matches!(&self.user, Some((_, Some(end))) if now >= *end)
    }

    /// Whether the next frame is a raw SASL token (after SaslHandshake v0).
    pub fn expects_raw_token(&self) -> bool {
        self.raw && !matches!(self.step, Step::Done)
    }

    /// A raw token (SaslHandshake v0): the answer to send as a raw frame, or `None` when
    /// authentication failed and the connection is to be closed without one, as Kafka does.
    pub fn authenticate_raw(&mut self, token: &[u8], image: &MetadataImage) -> Option<Vec<u8>> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(token.to_vec().into());
        let answer = self.authenticate(&request, image);
        if answer.close || answer.response.error_code != 0 {
            return None;
        }
        if matches!(self.step, Step::Done) {
            self.raw = false;
        }
        Some(answer.response.auth_bytes.to_vec())
    }

    pub fn handshake(
        &mut self,
        r: &SaslHandshakeRequest,
        version: i16,
    ) -> SaslAnswer<SaslHandshakeResponse> {
        let mechanisms = self.enabled.iter().map(|m| str_bytes(m.name())).collect();
        let answer = |code: i16, close| SaslAnswer {
            response: SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(mechanisms),
            close,
        };
        // A handshake starts an exchange: the first one, or a re-authentication (KIP-368).
        let may_start = match self.step {
            Step::Handshake => true,
            Step::Done => self.reauth.is_some(),
            _ => false,
        };
        if !may_start {
            return answer(ResponseError::IllegalSaslState.code(), true);
        }
        match self
            .enabled
            .iter()
            .find(|m| m.name().eq_ignore_ascii_case(r.mechanism.as_str()))
        {
            Some(m) => {
                self.step = Step::Mechanism(*m);
                self.mechanism = Some(*m);
                self.raw = version == 0;
                answer(0, false)
            }
            None => {
                info!(mechanism = %r.mechanism.as_str(), "SASL mechanism not enabled");
                answer(ResponseError::UnsupportedSaslMechanism.code(), true)
            }
        }
    }

    pub fn authenticate(
        &mut self,
        r: &SaslAuthenticateRequest,
        image: &MetadataImage,
    ) -> SaslAnswer<SaslAuthenticateResponse> {
        let step = std::mem::replace(&mut self.step, Step::Done);
        // An OAUTHBEARER token's end bounds the session (KIP-368).
        let mut token_end: Option<SystemTime> = None;
        let outcome: Result<(Vec<u8>, Option<String>), (ResponseError, String)> = match step {
            Step::Mechanism(SaslMechanism::Plain) => {
                match strom_client::auth::parse_plain(&r.auth_bytes) {
                    Err(e) => Err((ResponseError::SaslAuthenticationFailed, e)),
                    Ok((user, password)) => {
                        let ok = Mechanism::ALL.iter().any(|m| {
                            credential(image, &user, *m)
                                .is_some_and(|c| c.matches_password(*m, &password))
                        });
                        if ok {
                            Ok((Vec::new(), Some(user)))
                        } else {
                            Err((
                                ResponseError::SaslAuthenticationFailed,
                                "Authentication failed: Invalid username or password".into(),
                            ))
                        }
                    }
                }
            }
            Step::Mechanism(SaslMechanism::Scram(m)) => {
                let mut exchange = Box::new(ServerExchange::new(m));
                match exchange.client_first(&r.auth_bytes, |u| credential(image, u, m)) {
                    Ok(server_first) => {
                        self.step = Step::Scram(exchange);
                        Ok((server_first, None))
                    }
                    Err(e) => Err(scram_failure(e)),
                }
            }
            Step::Scram(mut exchange) => match exchange.client_final(&r.auth_bytes) {
                Ok((server_final, user)) => Ok((server_final, Some(user))),
                Err(e) => Err(scram_failure(e)),
            },
            Step::Mechanism(SaslMechanism::OAuthBearer) => {
                let checked = match &self.oauth {
                    None => Err("OAUTHBEARER has no JWKS configured".to_string()),
                    Some(v) => oauth::parse_client_response(&r.auth_bytes)
                        .and_then(|token| v.validate(&token)),
                };
                match checked {
                    Ok(t) => {
                        token_end = Some(t.expires);
                        Ok((Vec::new(), Some(t.user)))
                    }
                    Err(why) => {
                        // RFC 7628: the error goes as a challenge; the client answers
                        // with a lone separator and the exchange fails then.
                        info!(reason = %why, "OAUTHBEARER token refused");
                        self.step = Step::OAuthRefused(why);
                        Ok((oauth::error_challenge(), None))
                    }
                }
            }
            Step::OAuthRefused(why) => Err((
                ResponseError::SaslAuthenticationFailed,
                format!("Authentication failed: {why}"),
            )),
            Step::Handshake | Step::Done => Err((
                ResponseError::IllegalSaslState,
                "SaslAuthenticate without a SaslHandshake before it".into(),
            )),
        };
        match outcome {
            Ok((bytes, user)) => {
                let mut lifetime = 0;
                if let Some(user) = user {
                    if let Some((previous, _)) = &self.user {
                        if *previous != user {
                            return self.fail(
                                ResponseError::SaslAuthenticationFailed,
                                format!(
                                    "re-authentication as '{user}' on a connection of '{previous}'"
                                ),
                            );
                        }
                    }
                    let mut session = self.reauth;
                    if let (Some(d), Some(end)) = (session, token_end) {
                        let left = end
                            .duration_since(SystemTime::now())
                            .unwrap_or(Duration::ZERO);
                        session = Some(d.min(left));
                    }
                    let end = session.map(|d| Instant::now() + d);
                    lifetime = session.map_or(0, |d| d.as_millis() as i64);
                    self.completed = Some(self.user.is_some());
                    self.user = Some((user, end));
                }
                SaslAnswer {
                    response: SaslAuthenticateResponse::default()
                        .with_auth_bytes(bytes.into())
                        .with_session_lifetime_ms(lifetime),
                    close: false,
                }
            }
            Err((error, message)) => self.fail(error, message),
        }
    }

    fn fail(
        &mut self,
        error: ResponseError,
        message: String,
    ) -> SaslAnswer<SaslAuthenticateResponse> {
        self.step = Step::Done;
        SaslAnswer {
            response: SaslAuthenticateResponse::default()
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(message))),
            close: true,
        }
    }
}

fn scram_failure(e: ScramError) -> (ResponseError, String) {
    match e {
        ScramError::InvalidCredentials(_) => {
            (ResponseError::SaslAuthenticationFailed, e.to_string())
        }
        other => (
            ResponseError::SaslAuthenticationFailed,
            format!("Authentication failed: {other}"),
        ),
    }
}
