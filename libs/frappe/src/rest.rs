//! Frappe REST client: token or session auth, site routing by `Host` or `X-Frappe-Site-Name`,
//! and HTTP errors mapped to variants a caller can act on.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, COOKIE, HOST, HeaderMap, HeaderValue, SET_COOKIE};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::bench::ApiCredentials;
use crate::names::{MethodPath, PersonName, SiteName, UserEmail, UserId};

/// The user Tenantry's automation acts as on every site (its API key is the provisioner's).
/// Never one of the tenant's users: metering leaves it out.
pub const AUTOMATION_USER: &str = "automation@tenantry.internal";

/// REST errors. Messages come from Frappe's `_server_messages`/`exception` fields; the `exc`
/// traceback is never kept, and secrets are never part of a message.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// 401: bad, rotated or malformed key/secret, or wrong password.
    #[error("unauthorised: {0}")]
    Unauthorized(String),
    /// 403: not permitted (no auth on a non-guest method, missing role, GET on a POST method).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404 from the site (document or method not found).
    #[error("not found: {0}")]
    NotFound(String),
    /// 404 HTML: no site by this name on the bench.
    #[error("site {0} does not exist on this server")]
    SiteNotFound(String),
    /// 409: duplicate entry (e.g. the user already exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 400/417/422: Frappe validation errors.
    #[error("validation failed: {0}")]
    Validation(String),
    /// 429: rate limited.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited {
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// 503: the site is in maintenance mode (or the server is unavailable).
    #[error("site unavailable (maintenance mode): {0}")]
    Unavailable(String),
    /// Other 5xx.
    #[error("server error {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Frappe's message, if any.
        message: String,
    },
    /// Any other unexpected status.
    #[error("unexpected HTTP status {status}: {message}")]
    UnexpectedStatus {
        /// HTTP status.
        status: u16,
        /// Frappe's message, if any.
        message: String,
    },
    /// The request never got an HTTP answer (connect, TLS, timeout).
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// A 2xx answer that is not the JSON we expect.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// `wait_until_api_key_active` ran out of time; holds the last error seen.
    #[error("API key not active before the deadline ({attempts} attempts); last error: {last}")]
    DeadlineExceeded {
        /// Requests made.
        attempts: u32,
        /// The last failure.
        last: Box<RestError>,
    },
    /// A bad base URL or header value.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl RestError {
    /// True for errors worth retrying (transport, 5xx, 429, 503).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Transport(_)
                | Self::Server { .. }
                | Self::RateLimited { .. }
                | Self::Unavailable(_)
        )
    }
}

/// How the server is told which site a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SiteRouting {
    /// `Host: <site>` (what a browser sends through a proxy).
    #[default]
    Host,
    /// `X-Frappe-Site-Name: <site>` (wins over `Host`; works through any front end).
    Header,
}

#[derive(Clone)]
enum Auth {
    None,
    Token { key: String, secret: SecretString },
    Session { sid: SecretString },
}

/// A logged-in session (`sid` cookie).
#[derive(Clone)]
pub struct Session {
    /// The `sid` cookie value.
    pub sid: SecretString,
    /// `full_name` from the login answer.
    pub full_name: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &"********")
            .field("full_name", &self.full_name)
            .finish()
    }
}

/// A new System Manager (or other system user) created over REST.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Email = user id.
    pub email: UserEmail,
    /// First name.
    pub first_name: PersonName,
    /// Last name.
    pub last_name: Option<PersonName>,
    /// Roles to grant (e.g. `System Manager`).
    pub roles: Vec<String>,
}

/// A client for one site on one Frappe server.
#[derive(Clone)]
pub struct FrappeClient {
    http: reqwest::Client,
    base: Url,
    site: SiteName,
    routing: SiteRouting,
    auth: Auth,
}

impl std::fmt::Debug for FrappeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none".to_owned(),
            Auth::Token { key, .. } => format!("token {key}:********"),
            Auth::Session { .. } => "session ********".to_owned(),
        };
        f.debug_struct("FrappeClient")
            .field("base", &self.base.as_str())
            .field("site", &self.site)
            .field("routing", &self.routing)
            .field("auth", &auth)
            .finish()
    }
}

#[derive(Deserialize)]
struct Message<T> {
    message: T,
}

/// A REST path as spans show it: a document's name (a user's email, say) becomes `{name}`, so
/// traces carry no personal data and span names stay few.
fn span_route(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "api", "resource", doctype, _name, ..] => format!("/api/resource/{doctype}/{{name}}"),
        _ => path.to_owned(),
    }
}

impl FrappeClient {
    /// A client for `site` on the server at `base_url` (e.g. `http://127.0.0.1:8000`), without
    /// auth. Requests time out after 30 s.
    pub fn new(base_url: &str, site: SiteName, routing: SiteRouting) -> Result<Self, RestError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| RestError::Config(e.to_string()))?;
        Self::with_http(http, base_url, site, routing)
    }

    /// Like [`FrappeClient::new`] with a shared `reqwest::Client` (connection pool).
    pub fn with_http(
        http: reqwest::Client,
        base_url: &str,
        site: SiteName,
        routing: SiteRouting,
    ) -> Result<Self, RestError> {
        let base = Url::parse(base_url).map_err(|e| RestError::Config(format!("base url: {e}")))?;
        Ok(Self {
            http,
            base,
            site,
            routing,
            auth: Auth::None,
        })
    }

    /// This client, authenticating with an API key pair.
    pub fn with_token(&self, creds: &ApiCredentials) -> Self {
        Self {
            auth: Auth::Token {
                key: creds.api_key.clone(),
                secret: creds.api_secret.clone(),
            },
            ..self.clone()
        }
    }

    /// This client, authenticating with a session cookie.
    pub fn with_session(&self, session: &Session) -> Self {
        Self {
            auth: Auth::Session {
                sid: session.sid.clone(),
            },
            ..self.clone()
        }
    }

    /// The site this client talks to.
    pub fn site(&self) -> &SiteName {
        &self.site
    }

    fn headers(&self) -> Result<HeaderMap, RestError> {
        let mut h = HeaderMap::new();
        let site = HeaderValue::from_str(self.site.as_str())
            .map_err(|e| RestError::Config(e.to_string()))?;
        match self.routing {
            SiteRouting::Host => {
                h.insert(HOST, site);
            }
            SiteRouting::Header => {
                h.insert("X-Frappe-Site-Name", site);
            }
        }
        match &self.auth {
            Auth::None => {}
            Auth::Token { key, secret } => {
                let mut v =
                    HeaderValue::from_str(&format!("token {key}:{}", secret.expose_secret()))
                        .map_err(|_| {
                            RestError::Config("API key/secret are not valid header text".into())
                        })?;
                v.set_sensitive(true);
                h.insert(AUTHORIZATION, v);
            }
            Auth::Session { sid } => {
                let mut v = HeaderValue::from_str(&format!("sid={}", sid.expose_secret()))
                    .map_err(|_| RestError::Config("session id is not valid header text".into()))?;
                v.set_sensitive(true);
                h.insert(COOKIE, v);
            }
        }
        Ok(h)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(HeaderMap, Value), RestError> {
        let mut url = self.base.clone();
        url.set_path(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let method_name = method.to_string();
        let mut req = self.http.request(method, url).headers(self.headers()?);
        if let Some(b) = body {
            req = req.json(b);
        }
        let route = span_route(path);
        let span = tracing::info_span!(
            "rest",
            otel.name = %format!("{method_name} {route}"),
            otel.kind = "client",
            http.request.method = %method_name,
            url.path = %route,
            http.response.status_code = tracing::field::Empty,
        );
        let (resp, text) = timeline::outside(async {
            let resp = req.send().await?;
            let (status, headers) = (resp.status(), resp.headers().clone());
            span.record("http.response.status_code", status.as_u16());
            resp.text().await.map(|text| ((status, headers), text))
        })
        .instrument(span.clone())
        .await
        .map_err(RestError::Transport)?;
        let (status, headers) = resp;
        if status.is_success() {
            let value = serde_json::from_str(&text).map_err(|e| {
                // Never echo the body: a cut-off generate_keys answer holds the secret.
                RestError::Decode(format!(
                    "{e} ({} bytes of {})",
                    text.len(),
                    headers
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("unknown content type")
                ))
            })?;
            return Ok((headers, value));
        }
        Err(error_from_response(status, &headers, &text))
    }

    /// `POST /api/method/login`: returns the session (its `sid` cookie).
    pub async fn login(
        &self,
        user: &UserId,
        password: &SecretString,
    ) -> Result<Session, RestError> {
        let body = json!({"usr": user.as_str(), "pwd": password.expose_secret()});
        let (headers, value) = self
            .send(Method::POST, "/api/method/login", &[], Some(&body))
            .await?;
        let sid = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(cookie_value("sid"))
            .filter(|sid| sid != "Guest")
            .ok_or_else(|| {
                RestError::Decode("login answered 200 without a session cookie".into())
            })?;
        let full_name = value
            .get("full_name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Session {
            sid: sid.into(),
            full_name,
        })
    }

    /// `frappe.auth.get_logged_user`: who the current auth is.
    pub async fn get_logged_user(&self) -> Result<String, RestError> {
        let (_, value) = self
            .send(
                Method::GET,
                "/api/method/frappe.auth.get_logged_user",
                &[],
                None,
            )
            .await?;
        message_of(value)
    }

    /// Calls a whitelisted method with `POST` and a JSON body; returns its `message`.
    pub async fn call_method(&self, method: &MethodPath, args: &Value) -> Result<Value, RestError> {
        let path = format!("/api/method/{method}");
        let (_, value) = self.send(Method::POST, &path, &[], Some(args)).await?;
        Ok(value.get("message").cloned().unwrap_or(Value::Null))
    }

    /// `POST /api/resource/<doctype>`: inserts a document, returns the stored `data`.
    pub async fn insert_doc(&self, doctype: &str, doc: &Value) -> Result<Value, RestError> {
        let path = format!("/api/resource/{}", encode_segment(doctype));
        let (_, value) = self.send(Method::POST, &path, &[], Some(doc)).await?;
        data_of(value)
    }

    /// `GET /api/resource/<doctype>/<name>`.
    pub async fn get_doc(&self, doctype: &str, name: &str) -> Result<Value, RestError> {
        let path = format!(
            "/api/resource/{}/{}",
            encode_segment(doctype),
            encode_segment(name)
        );
        let (_, value) = self.send(Method::GET, &path, &[], None).await?;
        data_of(value)
    }

    /// `PUT /api/resource/<doctype>/<name>` with the fields to change.
    pub async fn update_doc(
        &self,
        doctype: &str,
        name: &str,
        changes: &Value,
    ) -> Result<Value, RestError> {
        let path = format!(
            "/api/resource/{}/{}",
            encode_segment(doctype),
            encode_segment(name)
        );
        let (_, value) = self.send(Method::PUT, &path, &[], Some(changes)).await?;
        data_of(value)
    }

    /// Creates a system user with roles (no welcome email).
    pub async fn create_user(&self, user: &NewUser) -> Result<Value, RestError> {
        let roles: Vec<Value> = user.roles.iter().map(|r| json!({"role": r})).collect();
        let doc = json!({
            "email": user.email.as_str(),
            "first_name": user.first_name.as_str(),
            "last_name": user.last_name.as_ref().map(PersonName::as_str),
            "send_welcome_email": 0,
            "user_type": "System User",
            "roles": roles,
        });
        self.insert_doc("User", &doc).await
    }

    /// Sets a user's password (`PUT /api/resource/User/<user>` with `new_password`).
    pub async fn set_user_password(
        &self,
        user: &UserId,
        password: &SecretString,
    ) -> Result<(), RestError> {
        self.update_doc(
            "User",
            user.as_str(),
            &json!({"new_password": password.expose_secret()}),
        )
        .await
        .map(drop)
    }

    /// `generate_keys` for a user (rotates the secret; call once), then reads the api_key from the
    /// User document if this frappe version did not return it.
    pub async fn generate_keys(&self, user: &UserId) -> Result<ApiCredentials, RestError> {
        let method = MethodPath::parse("frappe.core.doctype.user.user.generate_keys")
            .map_err(|e| RestError::Config(e.to_string()))?;
        let value = self
            .call_method(&method, &json!({"user": user.as_str()}))
            .await?;
        let keys: crate::parse::GeneratedKeys = serde_json::from_value(value)
            .map_err(|e| RestError::Decode(format!("generate_keys: {e}")))?;
        let api_key = match keys.api_key {
            Some(k) => k,
            None => self
                .get_doc("User", user.as_str())
                .await?
                .get("api_key")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    RestError::Decode("User has no api_key after generate_keys".into())
                })?,
        };
        Ok(ApiCredentials {
            api_key,
            api_secret: keys.api_secret.into(),
        })
    }

    /// Polls `get_logged_user` with `creds` (back-off 50 ms doubling to 1 s) until it answers
    /// 200 or `deadline` passes; returns how long it took. On a real bench keys work at once;
    /// this guards against a wrong site, a proxy that does not know the site yet, or a rename.
    pub async fn wait_until_api_key_active(
        &self,
        creds: &ApiCredentials,
        deadline: Instant,
    ) -> Result<Duration, RestError> {
        self.api_key_user(creds, deadline)
            .await
            .map(|(took, _)| took)
    }

    /// Like [`FrappeClient::wait_until_api_key_active`], also returning the user the key answers
    /// as — one call when the key works at once, as it does on a real bench.
    pub async fn api_key_user(
        &self,
        creds: &ApiCredentials,
        deadline: Instant,
    ) -> Result<(Duration, String), RestError> {
        let client = self.with_token(creds);
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        let mut attempts = 0u32;
        // Retry loop: every failure (401 while a key propagates, 404 before a proxy knows the
        // site, 5xx, connection refused) is retried until the deadline; the last one is kept.
        loop {
            attempts += 1;
            let last = match client.get_logged_user().await {
                Ok(user) if user != "Guest" => return Ok((started.elapsed(), user)),
                Ok(_) => RestError::Unauthorized("authenticated as Guest".into()),
                Err(e) => e,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(RestError::DeadlineExceeded {
                    attempts,
                    last: Box::new(last),
                });
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// `DELETE /api/resource/<doctype>/<name>`. Frappe answers 202 `{"message": "ok"}`; a
    /// missing document is [`RestError::NotFound`] (callers that only want it gone may treat
    /// that as done).
    pub async fn delete_doc(&self, doctype: &str, name: &str) -> Result<(), RestError> {
        let path = format!(
            "/api/resource/{}/{}",
            encode_segment(doctype),
            encode_segment(name)
        );
        self.send(Method::DELETE, &path, &[], None).await.map(drop)
    }

    /// `GET /api/resource/<doctype>`: the names of every document of `doctype` the caller may
    /// read, in Frappe's default order.
    pub async fn list_doc_names(&self, doctype: &str) -> Result<Vec<String>, RestError> {
        self.list_names_where(doctype, "[]").await
    }

    /// `GET /api/resource/<doctype>?filters=…`: the names of the documents matching `filters`
    /// (Frappe's JSON filter list, e.g. `[["enabled","=",1]]`).
    pub async fn list_names_where(
        &self,
        doctype: &str,
        filters: &str,
    ) -> Result<Vec<String>, RestError> {
        let path = format!("/api/resource/{}", encode_segment(doctype));
        // Frappe pages lists at 20 rows unless told otherwise; 0 lifts the limit.
        let query = [
            ("fields", r#"["name"]"#),
            ("filters", filters),
            ("limit_page_length", "0"),
        ];
        let (_, value) = self.send(Method::GET, &path, &query, None).await?;
        let rows = data_of(value)?;
        let rows = rows
            .as_array()
            .ok_or_else(|| RestError::Decode(format!("{doctype} list: data is not a list")))?;
        rows.iter()
            .map(|row| {
                row.get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| RestError::Decode(format!("{doctype} list: a row has no name")))
            })
            .collect()
    }
}

fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn cookie_value(name: &str) -> impl Fn(&str) -> Option<String> + '_ {
    move |header: &str| {
        let first = header.split(';').next()?.trim();
        let (k, v) = first.split_once('=')?;
        (k == name).then(|| v.to_owned())
    }
}

fn message_of<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, RestError> {
    serde_json::from_value::<Message<T>>(value)
        .map(|m| m.message)
        .map_err(|e| RestError::Decode(e.to_string()))
}

fn data_of(value: Value) -> Result<Value, RestError> {
    value
        .get("data")
        .cloned()
        .ok_or_else(|| RestError::Decode("response has no data".into()))
}

/// Maps a non-2xx answer to a [`RestError`] (public for the transcript tests).
pub fn error_from_response(status: StatusCode, headers: &HeaderMap, body: &str) -> RestError {
    let json: Option<Value> = serde_json::from_str(body).ok();
    let message = json
        .as_ref()
        .map_or_else(|| fallback_message(body), frappe_message);
    let is_html = body
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("<!doctype html");
    match status.as_u16() {
        401 => RestError::Unauthorized(message),
        403 => RestError::Forbidden(message),
        404 if is_html => {
            // Frappe's "no such site" page: `<p>unknown.localhost does not exist</p>`.
            let site = body
                .split("<p>")
                .nth(1)
                .and_then(|s| s.split(" does not exist").next())
                .unwrap_or_default()
                .to_owned();
            RestError::SiteNotFound(site)
        }
        404 => RestError::NotFound(message),
        409 => RestError::Conflict(message),
        400 | 417 | 422 => RestError::Validation(message),
        429 => RestError::RateLimited {
            retry_after: headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse().ok())
                .map(Duration::from_secs),
        },
        503 => RestError::Unavailable(message),
        s if s >= 500 => RestError::Server { status: s, message },
        s => RestError::UnexpectedStatus { status: s, message },
    }
}

/// The message of a body that is not valid JSON (e.g. cut short by a proxy): the first
/// `"message"` or `"exception"` string value, found by scanning.
fn fallback_message(body: &str) -> String {
    for key in ["\"message\":\"", "\"exception\":\""] {
        if let Some(start) = body.find(key) {
            let rest = &body[start + key.len()..];
            let mut out = String::new();
            let mut escaped = false;
            for c in rest.chars() {
                match (escaped, c) {
                    (true, c) => {
                        out.push(c);
                        escaped = false;
                    }
                    (false, '\\') => escaped = true,
                    (false, '"') => return strip_tags(&out),
                    (false, c) => out.push(c),
                }
            }
        }
    }
    String::new()
}

/// The human part of a Frappe error body: `_server_messages` → `message` → `exception`,
/// with HTML tags stripped. Never the `exc` traceback.
pub fn frappe_message(body: &Value) -> String {
    let from_server_messages = body
        .get("_server_messages")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
        .and_then(|msgs| {
            msgs.iter()
                .filter_map(|m| serde_json::from_str::<Value>(m).ok())
                .find_map(|m| m.get("message").and_then(Value::as_str).map(str::to_owned))
        });
    let text = from_server_messages
        .or_else(|| {
            body.get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .or_else(|| {
            body.get("exception")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .or_else(|| {
            body.get("exc_type")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    strip_tags(&text)
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod span_tests {
    use super::span_route;

    #[test]
    fn span_routes_hide_document_names() {
        assert_eq!(
            span_route("/api/resource/User/ada@example.com"),
            "/api/resource/User/{name}"
        );
        assert_eq!(span_route("/api/resource/User"), "/api/resource/User");
        assert_eq!(span_route("/api/method/login"), "/api/method/login");
    }
}
