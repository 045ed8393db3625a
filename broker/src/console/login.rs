//! Who is looking: with the authoriser on (`--authorizer`), the console asks for a user name
//! and password, checks them against the SCRAM credentials in the metadata (as SASL/PLAIN
//! does), and from then on shows and changes only what that user's ACLs allow, as a Kafka
//! client signed in as the same user would be allowed. Without the authoriser nobody signs in
//! and everything is open, as the Kafka listeners are.
//!
//! A sign-in is a random token in an `HttpOnly`, `SameSite=Strict` cookie named after the
//! broker (cookies are not kept apart by port), held in this broker's memory for
//! [`LOGIN_LIFETIME`]: it ends with the broker, with a sign-out, and as soon as the user's
//! credentials are deleted or changed. Password checks run two at a time, an unknown user
//! costs the same as a wrong password, and a failure is answered after a second: guessing
//! is slow and cannot take the broker's CPU.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use metadata_quorum::quorum::tls::PeerAddr;
use metadata_quorum::MetadataImage;
use parking_lot::Mutex;
use serde::Deserialize;
use strom_client::auth::scram::Mechanism;
use tracing::{info, warn};

use super::{esc, page, url, Nav};
use crate::security::Session;
use crate::Broker;

/// How long a sign-in lasts.
pub const LOGIN_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// How long a failed sign-in waits before it is answered.
const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// The cookie that carries broker `node`'s sign-in token.
fn cookie_name(node: i32) -> String {
    format!("strom_console_{node}")
}

/// A signed-in user: who, until when, and the credentials they signed in with (a change of
/// them ends the sign-in).
#[derive(Debug, Clone)]
struct Login {
    user: String,
    expires: Instant,
    credentials: Vec<Vec<u8>>,
}

/// The sign-ins of this broker's console, by token.
#[derive(Debug)]
pub struct Logins {
    by_token: Mutex<HashMap<String, Login>>,
    /// Password checks (PBKDF2) running at once; a check holds its permit until it ends,
    /// even when the client has gone.
    checks: Arc<tokio::sync::Semaphore>,
}

impl Default for Logins {
    fn default() -> Self {
        Self {
            by_token: Mutex::default(),
            checks: Arc::new(tokio::sync::Semaphore::new(2)),
        }
    }
}

/// The stored keys of `user`'s SCRAM credentials, one a mechanism: what a sign-in is checked
/// against on each request.
fn credentials_of(image: &MetadataImage, user: &str) -> Vec<Vec<u8>> {
    Mechanism::ALL
        .iter()
        .filter_map(|m| crate::security::sasl::credential(image, user, *m))
        .map(|c| c.stored_key)
        .collect()
}

impl Logins {
    fn start(&self, user: &str, image: &MetadataImage) -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source works");
        let token: String = bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        let now = Instant::now();
        let mut map = self.by_token.lock();
        map.retain(|_, l| l.expires > now);
        map.insert(
            token.clone(),
            Login {
                user: user.to_string(),
                expires: now + LOGIN_LIFETIME,
                credentials: credentials_of(image, user),
            },
        );
        token
    }

    /// The user signed in with `token`, while the sign-in lasts and their credentials are
    /// the ones they signed in with.
    fn user(&self, token: &str, image: &MetadataImage) -> Option<String> {
        let mut map = self.by_token.lock();
        let login = map.get(token)?;
        if login.expires <= Instant::now()
            || credentials_of(image, &login.user) != login.credentials
        {
            map.remove(token);
            return None;
        }
        Some(login.user.clone())
    }

    fn end(&self, token: &str) {
        self.by_token.lock().remove(token);
    }
}

/// Whether `password` is `user`'s, by any SCRAM mechanism the user has credentials for.
/// Every mechanism costs a derivation, a missing credential one with a stand-in salt, so
/// timing does not tell who exists.
fn password_matches(image: &MetadataImage, user: &str, password: &str) -> bool {
    let mut matched = false;
    for m in Mechanism::ALL {
        match crate::security::sasl::credential(image, user, m) {
            Some(c) => matched |= c.matches_password(m, password),
            None => {
                let _ = m.salted_password(password.as_bytes(), b"no-such-user", 4096);
            }
        }
    }
    matched
}

fn token_of(headers: &HeaderMap, node: i32) -> Option<&str> {
    let name = cookie_name(node);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name.as_str())?.strip_prefix('='))
}

/// Who asks for a console page: nobody in particular when the authoriser is off (everything
/// is open), else the signed-in user, whose ACLs decide.
pub struct Viewer {
    session: Option<Session>,
    /// The sign-in token, to check that the sign-in still holds later (an event stream).
    token: Option<String>,
}

impl Viewer {
    /// Whether the viewer may do `op` on the resource (`resource_type`, `name`): always
    /// without the authoriser, else as the authoriser decides for the signed-in user.
    pub fn may(&self, b: &Broker, op: i8, resource_type: i8, name: &str) -> bool {
        match &self.session {
            None => true,
            Some(s) => b.authorizer.allows(&b.image(), s, op, resource_type, name),
        }
    }

    /// Whether the viewer may see the cluster's own records (the metadata timeline): Describe
    /// on the cluster, as DescribeCluster needs.
    pub fn may_describe_cluster(&self, b: &Broker) -> bool {
        self.may(
            b,
            metadata_quorum::acl::operation::DESCRIBE,
            metadata_quorum::acl::resource::CLUSTER,
            crate::security::authorizer::CLUSTER_NAME,
        )
    }

    /// The signed-in principal (`User:name`), if there is one.
    pub fn principal(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.principal.as_str())
    }

    /// Whether the sign-in still holds (not signed out, expired, nor its credentials
    /// changed), for what outlives one request; always without the authoriser.
    pub fn still_signed_in(&self, b: &Broker) -> bool {
        match (&self.session, &self.token) {
            (Some(s), Some(t)) => b
                .console_logins
                .user(t, &b.image())
                .is_some_and(|u| s.principal == format!("User:{u}")),
            _ => !b.config.authorizer,
        }
    }
}

impl FromRequestParts<Arc<Broker>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, b: &Arc<Broker>) -> Result<Self, Response> {
        if !b.config.authorizer {
            return Ok(Self {
                session: None,
                token: None,
            });
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<PeerAddr>>()
            .map(|ConnectInfo(PeerAddr(p))| *p)
            .unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
        let token = token_of(&parts.headers, b.node_id);
        if let Some((user, token)) =
            token.and_then(|t| Some((b.console_logins.user(t, &b.image())?, t)))
        {
            return Ok(Self {
                session: Some(Session {
                    listener: Arc::from("HTTP"),
                    principal: format!("User:{user}"),
                    peer,
                }),
                token: Some(token.to_string()),
            });
        }
        let here = parts
            .uri
            .path_and_query()
            .map_or("/ui", |p| p.as_str())
            .to_string();
        Err(Redirect::to(&format!("/ui/login?next={}", url(&here))).into_response())
    }
}

/// Where to go after signing in: a console path only (never another site).
fn next_page(next: &str) -> &str {
    let ok = next.starts_with("/ui") && !next.starts_with("//") && !next.contains('\\');
    if ok {
        next
    } else {
        "/ui/cluster"
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

fn form(b: &Broker, status: StatusCode, next: &str, alert: Option<&str>) -> Response {
    let mut body = String::new();
    if let Some(a) = alert {
        let _ = write!(body, "<p role=\"alert\">{}</p>", esc(a));
    }
    let _ = write!(
        body,
        "<p>This broker enforces ACLs: sign in with a Kafka user's name and password \
         (its SCRAM credentials). You see and change what that user's ACLs allow.</p>\
         <form method=\"post\" action=\"/ui/login\" aria-label=\"Sign in\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>User name<input name=\"username\" autocomplete=\"username\" required></label>\
         <label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
        esc(next_page(next))
    );
    (status, page(b, None, "Sign in", Nav::None, false, &body)).into_response()
}

/// GET /ui/login: the sign-in form (or straight on when nobody needs to sign in).
pub async fn login_form(State(b): State<Arc<Broker>>, Query(q): Query<NextQuery>) -> Response {
    if !b.config.authorizer {
        return Redirect::to(next_page(&q.next)).into_response();
    }
    form(&b, StatusCode::OK, &q.next, None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// POST /ui/login: checks the password against the user's SCRAM credentials and, if it
/// matches, sets the sign-in cookie and goes on to `next`.
pub async fn login(
    State(b): State<Arc<Broker>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !b.config.authorizer {
        return Redirect::to(next_page(&f.next)).into_response();
    }
    if !super::actions::same_site(&b, &headers) {
        return form(
            &b,
            StatusCode::FORBIDDEN,
            &f.next,
            Some("Refused: the form did not come from this console."),
        );
    }
    let user = f.username.trim().to_string();
    let image = b.image();
    // PBKDF2 takes milliseconds of CPU: off the async workers, two at a time.
    let checked = match b.console_logins.checks.clone().acquire_owned().await {
        Ok(permit) => {
            let (image, user, password) = (image.clone(), user.clone(), f.password);
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                password_matches(&image, &user, &password)
            })
            .await
            .unwrap_or(false)
        }
        Err(_) => false,
    };
    if !checked {
        warn!(user = %user, %peer, "console sign-in failed");
        tokio::time::sleep(FAILURE_DELAY).await;
        return form(
            &b,
            StatusCode::UNAUTHORIZED,
            &f.next,
            Some("Invalid user name or password."),
        );
    }
    let token = b.console_logins.start(&user, &image);
    info!(user = %user, %peer, "console sign-in");
    let secure = if b.config.http_tls { "; Secure" } else { "" };
    let cookie = format!(
        "{}={token}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        cookie_name(b.node_id),
        LOGIN_LIFETIME.as_secs()
    );
    let mut r = Redirect::to(next_page(&f.next)).into_response();
    if let Ok(v) = cookie.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// POST /ui/logout: ends the sign-in.
pub async fn logout(State(b): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    if !super::actions::same_site(&b, &headers) {
        return form(
            &b,
            StatusCode::FORBIDDEN,
            "/ui/cluster",
            Some("Refused: the form did not come from this console."),
        );
    }
    if let Some(t) = token_of(&headers, b.node_id) {
        b.console_logins.end(t);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    let cleared = format!(
        "{}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        cookie_name(b.node_id)
    );
    if let Ok(v) = cleared.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_gone_on_to() {
        assert_eq!(next_page("/ui/topics?x=1"), "/ui/topics?x=1");
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example/ui",
            "/v1/topics",
            "/ui\\..\\x",
        ] {
            assert_eq!(next_page(bad), "/ui/cluster", "{bad}");
        }
    }

    #[test]
    fn the_token_is_read_from_among_other_cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; strom_console_2=other; strom_console_1=abc; strom_console_12=x"
                .parse()
                .expect("header"),
        );
        assert_eq!(token_of(&h, 1), Some("abc"));
        assert_eq!(token_of(&h, 2), Some("other"));
        assert_eq!(token_of(&h, 3), None);
    }

    #[test]
    fn a_sign_in_ends_when_the_credentials_change() {
        use metadata_quorum::MetadataRecord;
        let cred = |password: &str| {
            let c = strom_client::auth::scram::Credential::new(Mechanism::Sha256, password, 4096);
            MetadataRecord::UserScramCredential {
                user: "alice".into(),
                mechanism: Mechanism::Sha256.code(),
                salt: c.salt,
                iterations: c.iterations,
                stored_key: c.stored_key,
                server_key: c.server_key,
            }
        };
        let image = MetadataImage::default()
            .replay(&[cred("secret")])
            .expect("image");
        assert!(password_matches(&image, "alice", "secret"));
        assert!(!password_matches(&image, "alice", "wrong"));
        assert!(!password_matches(&image, "bob", "secret"));
        let logins = Logins::default();
        let token = logins.start("alice", &image);
        assert_eq!(logins.user(&token, &image).as_deref(), Some("alice"));
        assert_eq!(logins.user("not-a-token", &image), None);
        let image = image.replay(&[cred("changed")]).expect("image");
        assert_eq!(logins.user(&token, &image), None);
        // Gone for good, even with the old credentials back.
        let token = logins.start("alice", &image);
        logins.end(&token);
        assert_eq!(logins.user(&token, &image), None);
    }
}
