//! `frappe-sim serve`: the Frappe REST subset Tenantry uses, for every site of the bench.
//! The site is chosen per request (`X-Frappe-Site-Name`, else `Host` without port), and its
//! state is read fresh from disk and its own MariaDB database on every request, because sites
//! are created, renamed and dropped by separate CLI processes while the server runs.

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::jobs;
use crate::sim::Settings;
use crate::social_login_key::{self as slk, SecretChange};
use crate::store::{self, Insert, SiteDb};

#[derive(Clone)]
struct AppState {
    bench: PathBuf,
    settings: Settings,
}

/// Binds, prints `Listening on http://<addr>` (tests read it to learn the port), then serves
/// until killed.
pub async fn run(bench: PathBuf, settings: Settings, bind: &str, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((bind, port)).await?;
    let addr = listener.local_addr()?;
    println!("Listening on http://{addr}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    tokio::spawn(jobs::worker(bench.clone(), settings.clone()));
    let state = AppState { bench, settings };
    let app = Router::new().fallback(handle).with_state(state);
    axum::serve(listener, app).await?;
    Ok(())
}

fn guest_cookies(h: &mut HeaderMap) {
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(612_000))
        .format("%a, %d %b %Y %H:%M:%S GMT");
    for c in [
        format!("sid=Guest; Expires={expires}; Max-Age=612000; HttpOnly; Path=/; SameSite=Lax"),
        "system_user=no; Path=/; SameSite=Lax".to_owned(),
        "full_name=Guest; Path=/; SameSite=Lax".to_owned(),
        "user_id=Guest; Path=/; SameSite=Lax".to_owned(),
        "user_image=; Path=/; SameSite=Lax".to_owned(),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    guest_cookies(resp.headers_mut());
    resp
}

/// A Frappe error body: `exception`, `exc_type`, `exc` (a traceback) and optional `message`.
fn frappe_error(status: StatusCode, exc_type: &str, message: &str, with_message: bool) -> Response {
    python_error(
        status,
        &format!("frappe.exceptions.{exc_type}"),
        message,
        (!with_message).then_some(message),
        with_message.then_some(message),
    )
}

/// The error body of any Python exception `class` (dotted path) raised with `text`:
/// `_server_messages` holds `shown` (what `msgprint` showed, which for some errors, e.g.
/// `MandatoryError`, is not the exception's text) and `message` holds `message`.
fn python_error(
    status: StatusCode,
    class: &str,
    text: &str,
    shown: Option<&str>,
    message: Option<&str>,
) -> Response {
    let exc_type = class.rsplit('.').next().unwrap_or(class);
    let exc = format!(
        "Traceback (most recent call last):\n  File \"apps/frappe/frappe/app.py\", line 114, in application\n    \
         response = frappe.api.handle(request)\n{class}: {text}\n"
    );
    let mut body = json!({
        "exception": format!("{class}: {text}"),
        "exc_type": exc_type,
        "exc": serde_json::to_string(&vec![exc]).unwrap_or_default(),
    });
    if let Some(m) = message {
        body["message"] = json!(m);
    }
    if let Some(shown) = shown.filter(|s| !s.is_empty()) {
        let msg =
            json!({"message": shown, "title": "Message", "indicator": "red", "raise_exception": 1});
        body["_server_messages"] =
            json!(serde_json::to_string(&vec![msg.to_string()]).unwrap_or_default());
    }
    json_response(status, body)
}

/// A document frappe refused (validation, mandatory, set-only-once, …).
fn rejected(r: &slk::Rejection) -> Response {
    python_error(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::EXPECTATION_FAILED),
        &r.class,
        &r.text,
        Some(&r.shown),
        None,
    )
}

fn not_found(doctype: &str, name: &str) -> Response {
    frappe_error(
        StatusCode::NOT_FOUND,
        "DoesNotExistError",
        &format!("{doctype} {name} not found"),
        false,
    )
}

fn auth_failed() -> Response {
    frappe_error(StatusCode::UNAUTHORIZED, "AuthenticationError", "", false)
}

fn not_whitelisted(method: &str) -> Response {
    frappe_error(
        StatusCode::FORBIDDEN,
        "PermissionError",
        &format!(
            "<details><summary>You are not permitted to access this resource.</summary>Function <strong>{method}</strong> is not whitelisted.</details>"
        ),
        false,
    )
}

fn not_permitted() -> Response {
    frappe_error(
        StatusCode::FORBIDDEN,
        "PermissionError",
        "Not permitted",
        false,
    )
}

fn server_error(e: &dyn std::fmt::Display) -> Response {
    frappe_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        &e.to_string(),
        false,
    )
}

fn no_such_site(name: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>{} does not exist</p>\n",
        html_escape(name)
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The site a request is for: `X-Frappe-Site-Name` wins over `Host` (port stripped).
fn requested_site(headers: &HeaderMap) -> String {
    if let Some(v) = headers
        .get("x-frappe-site-name")
        .and_then(|v| v.to_str().ok())
    {
        return v.trim().to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    host.rsplit_once(':')
        .map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
        .to_owned()
}

fn valid_site_dir_name(site: &str) -> bool {
    !site.is_empty()
        && !site.starts_with('.')
        && site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

enum Who {
    Guest,
    User(String),
}

/// Parses the request body as JSON or as a form.
fn body_params(headers: &HeaderMap, body: &Bytes, uri: &Uri) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(q) = uri.query() {
        for (k, v) in form_pairs(q) {
            out.insert(k, json!(v));
        }
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ctype.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in form_pairs(&String::from_utf8_lossy(body)) {
            out.insert(k, json!(v));
        }
    } else if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
        out.extend(m);
    }
    out
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let site = requested_site(&headers);
    let site_dir = state.bench.join("sites").join(&site);
    if !valid_site_dir_name(&site) || !site_dir.join("site_config.json").is_file() {
        return no_such_site(&site);
    }
    let Some(config) = store::read_json(&site_dir.join("site_config.json")) else {
        return server_error(&"site_config.json is not valid JSON");
    };
    if config
        .get("maintenance_mode")
        .is_some_and(|v| v.as_i64().unwrap_or(0) != 0 || v == &json!(true))
    {
        return frappe_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SessionStopped",
            "Session Stopped",
            false,
        );
    }
    let path = percent_decode(uri.path());
    let step = step_name(&method, &path);
    if let Some(stall) = state
        .settings
        .stall
        .get(step)
        .or_else(|| state.settings.stall.get("http"))
    {
        tokio::time::sleep(*stall).await;
    }
    if state.settings.should_fail(&state.bench, step)
        || state.settings.should_fail(&state.bench, "http")
    {
        return frappe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InjectedError",
            &format!("injected failure in {step}"),
            false,
        );
    }
    // One connection per request, closed when it ends, as frappe does (`frappe.connect` …
    // `frappe.destroy`): a pool would hold idle connections per site and exhaust a shared
    // MariaDB's max_connections that a real bench never would.
    let mut conn = match store::connect_site(&state.bench, &config).await {
        Ok(c) => c,
        Err(e) => return server_error(&store::pymysql_error(&e)),
    };
    let mut db = SiteDb { conn: &mut conn };
    let who = match authenticate(&mut db, &headers).await {
        Ok(Some(w)) => w,
        Ok(None) => return auth_failed(),
        Err(e) => return server_error(&store::pymysql_error(&e)),
    };
    let params = body_params(&headers, &body, &uri);
    let user_insert = method == Method::POST && path == "/api/resource/User";
    // `http-insert=<email>` fails only the insert of that user.
    if let Some(email) = params.get("email").and_then(Value::as_str)
        && user_insert
        && state
            .settings
            .should_fail(&state.bench, &format!("http-insert={email}"))
    {
        return frappe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InjectedError",
            &format!("injected failure in http-insert={email}"),
            false,
        );
    }
    let result = route(&state, &mut db, &method, &path, who, params).await;
    // A failed close still drops the socket; the response does not depend on it.
    let _ = sqlx::Connection::close(conn).await;
    if user_insert && result.as_ref().is_ok_and(|r| r.status() == StatusCode::OK) {
        // Keyed by the site's name now: a rename before a worker runs them breaks them.
        jobs::enqueue(&state.bench, &site, &jobs::USER_INSERT_JOBS);
    }
    result.unwrap_or_else(|e| server_error(&store::pymysql_error(&e)))
}

fn step_name(method: &Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        (_, "/api/method/login") => "http-login",
        (_, "/api/method/frappe.auth.get_logged_user") => "http-get-logged-user",
        (_, "/api/method/frappe.core.doctype.user.user.generate_keys") => "http-generate-keys",
        ("POST", p) if p.starts_with("/api/resource/") => "http-insert",
        ("PUT", p) if p.starts_with("/api/resource/") => "http-update",
        ("DELETE", p) if p.starts_with("/api/resource/") => "http-delete",
        _ => "http-other",
    }
}

/// `Ok(None)` = credentials were sent but are wrong (401).
async fn authenticate(
    db: &mut SiteDb<'_>,
    headers: &HeaderMap,
) -> Result<Option<Who>, sqlx::Error> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = auth.split_once(' ').unwrap_or((auth, ""));
        let pair = match scheme.to_ascii_lowercase().as_str() {
            "token" => Some(rest.trim().to_owned()),
            "basic" => base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok()),
            _ => None,
        };
        let Some((key, secret)) = pair.as_deref().and_then(|p| p.split_once(':')) else {
            return Ok(None);
        };
        return Ok(db.user_for_token(key, secret).await?.map(Who::User));
    }
    let sid = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "sid")
        .map(|(_, v)| v.to_owned());
    match sid {
        Some(sid) if sid != "Guest" => Ok(Some(
            db.session_user(&sid).await?.map_or(Who::Guest, Who::User),
        )),
        _ => Ok(Some(Who::Guest)),
    }
}

async fn is_system_manager(db: &mut SiteDb<'_>, user: &str) -> Result<bool, sqlx::Error> {
    if user == "Administrator" {
        return Ok(true);
    }
    Ok(db.get_doc("User", user).await?.is_some_and(|d| {
        d.get("roles")
            .and_then(Value::as_array)
            .is_some_and(|roles| {
                roles
                    .iter()
                    .any(|r| r.get("role") == Some(&json!("System Manager")))
            })
    }))
}

async fn route(
    state: &AppState,
    db: &mut SiteDb<'_>,
    method: &Method,
    path: &str,
    who: Who,
    params: Map<String, Value>,
) -> Result<Response, sqlx::Error> {
    let realistic = |ms: u64| state.settings.delay("http", Duration::from_millis(ms));
    if let Some(m) = path.strip_prefix("/api/method/") {
        return match m {
            "ping" => Ok(json_response(StatusCode::OK, json!({"message": "pong"}))),
            // Administrator login 0.1–0.6 s, the first token call 55–128 ms (measured).
            "login" => {
                realistic(250).await;
                login(db, &params).await
            }
            "logout" => Ok(json_response(StatusCode::OK, json!({}))),
            "frappe.www.login.login_via_key" => login_via_key(db, method, &params).await,
            "frappe.auth.get_logged_user" => Ok(match who {
                Who::Guest => not_whitelisted(m),
                Who::User(u) => {
                    realistic(80).await;
                    json_response(StatusCode::OK, json!({"message": u}))
                }
            }),
            "frappe.core.doctype.user.user.generate_keys" => {
                let Who::User(caller) = who else {
                    return Ok(not_whitelisted(m));
                };
                if method != Method::POST || !is_system_manager(db, &caller).await? {
                    return Ok(not_permitted());
                }
                // generate_keys over REST: 0.3–0.5 s.
                realistic(400).await;
                let user = params
                    .get("user")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok(match db.generate_keys(user).await? {
                    Some((_key, secret)) => {
                        json_response(StatusCode::OK, json!({"message": {"api_secret": secret}}))
                    }
                    None => frappe_error(
                        StatusCode::NOT_FOUND,
                        "DoesNotExistError",
                        &format!("User {user} not found"),
                        false,
                    ),
                })
            }
            _ => Ok(not_whitelisted(m)),
        };
    }
    if matches!(path, "/app" | "/app/home" | "/login") {
        return desk(db, path, &who).await;
    }
    let Some(rest) = path.strip_prefix("/api/resource/") else {
        return Ok(frappe_error(
            StatusCode::NOT_FOUND,
            "PageDoesNotExistError",
            "Page not found",
            false,
        ));
    };
    let Who::User(caller) = who else {
        return Ok(not_permitted());
    };
    let (doctype, name) = match rest.split_once('/') {
        Some((d, n)) => (d.to_owned(), Some(n.to_owned())),
        None => (rest.to_owned(), None),
    };
    match (method.as_str(), name) {
        ("GET", None) => list(db, &doctype, &caller, &params).await,
        ("POST", None) => {
            if !is_system_manager(db, &caller).await? {
                return Ok(not_permitted());
            }
            // A User insert with its password: 0.8–1.2 s.
            realistic(850).await;
            insert(db, &doctype, params, &caller).await
        }
        // read_doc loads the document before it checks permission: a missing one is 404 for
        // anyone.
        ("GET", Some(name)) if doctype == slk::DOCTYPE => {
            let Some(doc) = db.get_doc(&doctype, &name).await? else {
                return Ok(not_found(&doctype, &name));
            };
            if !is_system_manager(db, &caller).await? {
                return Ok(not_permitted());
            }
            Ok(json_response(StatusCode::OK, json!({"data": doc})))
        }
        ("PUT", Some(name)) if doctype == slk::DOCTYPE => {
            update_social_login_key(db, &name, &params, &caller).await
        }
        ("DELETE", Some(name)) => delete(db, &doctype, &name, &caller).await,
        ("GET", Some(name)) => {
            if doctype == "User" && name != caller && !is_system_manager(db, &caller).await? {
                return Ok(not_permitted());
            }
            Ok(match db.get_doc(&doctype, &name).await? {
                Some(doc) => {
                    let doc = present(db, &doctype, &name, doc).await?;
                    json_response(StatusCode::OK, json!({"data": doc}))
                }
                None => frappe_error(
                    StatusCode::NOT_FOUND,
                    "DoesNotExistError",
                    &format!("{doctype} {name} not found"),
                    false,
                ),
            })
        }
        ("PUT", Some(name)) => {
            if name != caller && !is_system_manager(db, &caller).await? {
                return Ok(not_permitted());
            }
            realistic(500).await;
            let Some(mut doc) = db.get_doc(&doctype, &name).await? else {
                return Ok(frappe_error(
                    StatusCode::NOT_FOUND,
                    "DoesNotExistError",
                    &format!("{doctype} {name} not found"),
                    false,
                ));
            };
            for (k, v) in params {
                match k.as_str() {
                    "new_password" if doctype == "User" => {
                        if let Some(pw) = v.as_str().filter(|p| !p.is_empty()) {
                            db.set_password(&name, pw).await?;
                        }
                    }
                    "name" | "doctype" | "api_key" | "api_secret" | "owner" | "creation" => {}
                    _ => {
                        doc[k] = v;
                    }
                }
            }
            doc["modified"] = json!(
                chrono::Local::now()
                    .format("%Y-%m-%d %H:%M:%S%.6f")
                    .to_string()
            );
            doc["modified_by"] = json!(caller);
            db.save_doc(&doctype, &name, &doc).await?;
            let doc = present(db, &doctype, &name, doc).await?;
            Ok(json_response(StatusCode::OK, json!({"data": doc})))
        }
        _ => Ok(not_permitted()),
    }
}

/// What GET returns: a User's api_secret is masked, passwords never appear.
async fn present(
    db: &mut SiteDb<'_>,
    doctype: &str,
    name: &str,
    mut doc: Value,
) -> Result<Value, sqlx::Error> {
    if doctype == "User" && db.get_auth("User", name, "api_secret").await?.is_some() {
        doc["api_secret"] = json!("***************");
    }
    Ok(doc)
}

async fn login(db: &mut SiteDb<'_>, params: &Map<String, Value>) -> Result<Response, sqlx::Error> {
    let usr = params
        .get("usr")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let pwd = params
        .get("pwd")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if usr.is_empty() || !db.check_password(usr, pwd).await? {
        return Ok(frappe_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "Invalid login credentials",
            true,
        ));
    }
    let doc = db.get_doc("User", usr).await?.unwrap_or_default();
    let full_name = doc
        .get("full_name")
        .and_then(Value::as_str)
        .unwrap_or(usr)
        .to_owned();
    let sid = db.new_session(usr).await?;
    let resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"message": "Logged In", "home_page": "/app", "full_name": full_name}).to_string(),
    )
        .into_response();
    Ok(with_session(resp, &sid, usr, &full_name))
}

/// The cookies a login sets (`sid` HttpOnly for 7 days, and the desk's readable ones).
fn with_session(mut resp: Response, sid: &str, usr: &str, full_name: &str) -> Response {
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(612_000))
        .format("%a, %d %b %Y %H:%M:%S GMT");
    for c in [
        format!("sid={sid}; Expires={expires}; Max-Age=612000; HttpOnly; Path=/; SameSite=Lax"),
        "system_user=yes; Path=/; SameSite=Lax".to_owned(),
        format!(
            "full_name={}; Path=/; SameSite=Lax",
            full_name.replace(' ', "%20")
        ),
        format!("user_id={}; Path=/; SameSite=Lax", usr.replace('@', "%40")),
        "user_image=; Path=/; SameSite=Lax".to_owned(),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `GET /api/method/frappe.www.login.login_via_key?key=…` (guest): a live key logs its user in
/// and redirects to the desk (`redirect_post_login`); any other key gets frappe's 403 page.
async fn login_via_key(
    db: &mut SiteDb<'_>,
    method: &Method,
    params: &Map<String, Value>,
) -> Result<Response, sqlx::Error> {
    if method != Method::GET {
        return Ok(not_permitted());
    }
    let key = params
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(user) = db.take_login_key(key).await? else {
        return Ok(html_page(
            StatusCode::FORBIDDEN,
            "Not Permitted",
            "The link you trying to login is invalid or expired.",
        ));
    };
    let full_name = full_name(db, &user).await?;
    let sid = db.new_session(&user).await?;
    let resp = (StatusCode::FOUND, [(header::LOCATION, "/app")]).into_response();
    Ok(with_session(resp, &sid, &user, &full_name))
}

/// A user's full name, else the user id.
async fn full_name(db: &mut SiteDb<'_>, user: &str) -> Result<String, sqlx::Error> {
    Ok(db
        .get_doc("User", user)
        .await?
        .and_then(|d| {
            d.get("full_name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| user.to_owned()))
}

/// What the browser sees of the desk: `/app` for a session (the user's name on the page),
/// the login page for a guest (frappe redirects `/app` there).
async fn desk(db: &mut SiteDb<'_>, path: &str, who: &Who) -> Result<Response, sqlx::Error> {
    match (path, who) {
        ("/app" | "/app/home", Who::User(user)) => {
            let full_name = full_name(db, user).await?;
            Ok(html_page(
                StatusCode::OK,
                "Home",
                &format!(
                    "Logged in as <span id=\"user\">{}</span> ({})",
                    html_escape(user),
                    html_escape(&full_name)
                ),
            ))
        }
        ("/app" | "/app/home", Who::Guest) => Ok((
            StatusCode::FOUND,
            [(header::LOCATION, "/login?redirect-to=%2Fapp")],
        )
            .into_response()),
        _ => Ok(html_page(StatusCode::OK, "Login", "Login to Frappe")),
    }
}

fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=en>\n<title>{}</title>\n<h1>{}</h1>\n<p>{body}</p>\n",
        html_escape(title),
        html_escape(title),
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !e.contains(char::is_whitespace)
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

async fn insert(
    db: &mut SiteDb<'_>,
    doctype: &str,
    params: Map<String, Value>,
    caller: &str,
) -> Result<Response, sqlx::Error> {
    if doctype == slk::DOCTYPE {
        return insert_social_login_key(db, &params, caller).await;
    }
    if doctype == "User" {
        let email = params
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !valid_email(&email) {
            return Ok(frappe_error(
                StatusCode::EXPECTATION_FAILED,
                "InvalidEmailAddressError",
                &format!("{email} is not a valid Email Address"),
                false,
            ));
        }
        let Some(first) = params
            .get("first_name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Ok(frappe_error(
                StatusCode::EXPECTATION_FAILED,
                "MandatoryError",
                "[User, ]: first_name",
                false,
            ));
        };
        let roles: Vec<String> = params
            .get("roles")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| r.get("role").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let user_type = params
            .get("user_type")
            .and_then(Value::as_str)
            .unwrap_or("Website User");
        let doc = store::new_user_doc(
            &email,
            first,
            params.get("last_name").and_then(Value::as_str),
            user_type,
            &roles,
            caller,
        );
        return Ok(match db.insert_doc("User", &email, &doc).await? {
            Insert::Inserted(doc) => {
                if let Some(pw) = params
                    .get("new_password")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                {
                    db.set_password(&email, pw).await?;
                }
                // Password fields given in the insert are saved encrypted like any other.
                if let (Some(key), Some(secret)) = (
                    params.get("api_key").and_then(Value::as_str),
                    params.get("api_secret").and_then(Value::as_str),
                ) && !key.is_empty()
                    && !secret.is_empty()
                {
                    db.set_api_keys(&email, key, secret).await?;
                }
                json_response(StatusCode::OK, json!({"data": doc}))
            }
            Insert::Duplicate => duplicate("User", &email),
        });
    }
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| store::random_hex(10), str::to_owned);
    let now = chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    let mut doc = Value::Object(params);
    doc["name"] = json!(name);
    doc["doctype"] = json!(doctype);
    doc["owner"] = json!(caller);
    doc["creation"] = json!(now);
    doc["modified"] = json!(now);
    doc["modified_by"] = json!(caller);
    doc["docstatus"] = json!(0);
    Ok(match db.insert_doc(doctype, &name, &doc).await? {
        Insert::Inserted(doc) => json_response(StatusCode::OK, json!({"data": doc})),
        Insert::Duplicate => duplicate(doctype, &name),
    })
}

fn duplicate(doctype: &str, name: &str) -> Response {
    frappe_error(
        StatusCode::CONFLICT,
        "DuplicateEntryError",
        &format!("{doctype} {name} already exists"),
        false,
    )
}

fn now_str() -> String {
    chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// `POST /api/resource/Social Login Key`: named `scrub(provider_name)`, validated as frappe
/// does, the secret kept in `__Auth` and masked in the document.
async fn insert_social_login_key(
    db: &mut SiteDb<'_>,
    params: &Map<String, Value>,
    caller: &str,
) -> Result<Response, sqlx::Error> {
    let mut doc = match slk::new_doc(params) {
        Ok(d) => d,
        Err(r) => return Ok(rejected(&r)),
    };
    // Without a provider name frappe names the document by hash; the mandatory check then
    // refuses it, naming that hash.
    let name = slk::autoname(&doc).unwrap_or_else(|| store::random_hex(10));
    if let Err(r) = slk::validate(&mut doc, &name, None) {
        return Ok(rejected(&r));
    }
    let secret = slk::take_secret(&mut doc);
    let now = now_str();
    for (k, v) in [
        ("name", json!(name)),
        ("owner", json!(caller)),
        ("creation", json!(now)),
        ("modified", json!(now)),
        ("modified_by", json!(caller)),
        ("docstatus", json!(0)),
        ("idx", json!(0)),
        ("doctype", json!(slk::DOCTYPE)),
    ] {
        doc.insert(k.to_owned(), v);
    }
    let doc = Value::Object(doc);
    Ok(match db.insert_doc(slk::DOCTYPE, &name, &doc).await? {
        Insert::Inserted(doc) => {
            // Stored only once the row exists, so a duplicate never overwrites the existing
            // key's secret (frappe rolls the whole request back).
            if let SecretChange::Set(s) = secret {
                db.set_auth(slk::DOCTYPE, &name, slk::SECRET_FIELD, &s)
                    .await?;
            }
            json_response(StatusCode::OK, json!({"data": doc}))
        }
        Insert::Duplicate => duplicate(slk::DOCTYPE, &name),
    })
}

/// `PUT /api/resource/Social Login Key/<name>`: `doc.update(data); doc.save()`. A masked
/// secret sent back keeps the stored one; an empty one removes it.
async fn update_social_login_key(
    db: &mut SiteDb<'_>,
    name: &str,
    params: &Map<String, Value>,
    caller: &str,
) -> Result<Response, sqlx::Error> {
    let Some(stored) = db.get_doc(slk::DOCTYPE, name).await? else {
        return Ok(not_found(slk::DOCTYPE, name));
    };
    if !is_system_manager(db, caller).await? {
        return Ok(not_permitted());
    }
    let Value::Object(before) = stored else {
        return Ok(server_error(&"stored document is not an object"));
    };
    let mut doc = before.clone();
    if let Err(r) = slk::apply(&mut doc, params) {
        return Ok(rejected(&r));
    }
    if let Err(r) = slk::validate(&mut doc, name, Some(&before)) {
        return Ok(rejected(&r));
    }
    match slk::take_secret(&mut doc) {
        SecretChange::Keep => {}
        SecretChange::Set(s) => {
            db.set_auth(slk::DOCTYPE, name, slk::SECRET_FIELD, &s)
                .await?;
        }
        SecretChange::Remove => {
            db.delete_auth(slk::DOCTYPE, name, slk::SECRET_FIELD)
                .await?;
        }
    }
    doc.insert("modified".to_owned(), json!(now_str()));
    doc.insert("modified_by".to_owned(), json!(caller));
    let doc = Value::Object(doc);
    db.save_doc(slk::DOCTYPE, name, &doc).await?;
    Ok(json_response(StatusCode::OK, json!({"data": doc})))
}

/// `DELETE /api/resource/<doctype>/<name>`: 202 `{"message": "ok"}`. frappe loads the document
/// before checking the delete permission (System Manager here), so a missing one is 404 for
/// anyone; its passwords go with it.
async fn delete(
    db: &mut SiteDb<'_>,
    doctype: &str,
    name: &str,
    caller: &str,
) -> Result<Response, sqlx::Error> {
    if db.get_doc(doctype, name).await?.is_none() {
        return Ok(not_found(doctype, name));
    }
    if !is_system_manager(db, caller).await? {
        return Ok(frappe_error(
            StatusCode::FORBIDDEN,
            "PermissionError",
            &format!("User not allowed to delete {doctype}: {name}"),
            false,
        ));
    }
    // User.on_trash refuses the standard users.
    if doctype == "User" && (name == "Administrator" || name == "Guest") {
        return Ok(frappe_error(
            StatusCode::EXPECTATION_FAILED,
            "ValidationError",
            &format!("User {name} cannot be deleted"),
            false,
        ));
    }
    if !db.delete_doc(doctype, name).await? {
        // Deleted by a concurrent request between the two statements.
        return Ok(not_found(doctype, name));
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({"message": "ok"}),
    ))
}

/// `GET /api/resource/<doctype>` (`frappe.client.get_list`): `fields` (JSON list, default
/// `["name"]`, `"*"` for every column), `filters` (JSON dict or list of `[field, op, value]`),
/// `order_by` (default `modified desc`), `limit_start`, `limit_page_length` or `limit`
/// (default 20; 0 = no limit). Answers `{"data": [{…}, …]}`.
async fn list(
    db: &mut SiteDb<'_>,
    doctype: &str,
    caller: &str,
    params: &Map<String, Value>,
) -> Result<Response, sqlx::Error> {
    // Only System Managers may read these doctypes (other doctypes: any logged-in user, as the
    // single-document GET allows).
    if (doctype == "User" || doctype == slk::DOCTYPE) && !is_system_manager(db, caller).await? {
        return Ok(not_permitted());
    }
    let decode_error = |e: &serde_json::Error| {
        python_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "json.decoder.JSONDecodeError",
            &e.to_string(),
            None,
            None,
        )
    };
    let fields = match json_param(params, "fields") {
        Ok(Some(Value::Array(fs))) => fs
            .iter()
            .map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_owned))
            .collect(),
        Ok(Some(Value::String(f))) => vec![f],
        Ok(_) => vec!["name".to_owned()],
        Err(e) => return Ok(decode_error(&e)),
    };
    let filters = match json_param(params, "filters") {
        Ok(f) => list_filters(doctype, f),
        Err(e) => return Ok(decode_error(&e)),
    };
    let Some(filters) = filters else {
        return Ok(frappe_error(
            StatusCode::EXPECTATION_FAILED,
            "ValidationError",
            "Invalid filters",
            false,
        ));
    };
    let int_param = |key: &str| {
        params.get(key).map(|v| match v {
            Value::Number(n) => n.as_i64().unwrap_or(0),
            Value::String(s) => s.trim().parse::<f64>().map_or(0, |f| f as i64),
            _ => 0,
        })
    };
    let limit = int_param("limit_page_length")
        .or_else(|| int_param("limit"))
        .unwrap_or(20);
    let start = int_param("limit_start").unwrap_or(0).max(0);
    let (order_field, descending) =
        params
            .get("order_by")
            .and_then(Value::as_str)
            .map_or(("modified".to_owned(), true), |o| {
                let mut words = o.split_whitespace();
                let f = column_name(doctype, words.next().unwrap_or("modified"));
                let desc = words.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
                (f, desc)
            });

    let mut docs: Vec<Value> = db
        .list_docs(doctype)
        .await?
        .into_iter()
        .filter(|d| filters.iter().all(|f| f.matches(d)))
        .collect();
    docs.sort_by(|a, b| {
        let key = |d: &Value| text_of(d.get(&order_field));
        let ord = key(a).cmp(&key(b));
        if descending { ord.reverse() } else { ord }
    });
    let rows: Vec<Value> = docs
        .iter()
        .skip(usize::try_from(start).unwrap_or(0))
        .take(if limit > 0 {
            usize::try_from(limit).unwrap_or(usize::MAX)
        } else {
            usize::MAX
        })
        .map(|d| project(doctype, d, &fields))
        .collect();
    Ok(json_response(StatusCode::OK, json!({"data": rows})))
}

/// A list parameter that frappe `json.loads` when it arrives as text (query-string parameters
/// always do); a JSON body may already carry the value itself.
fn json_param(params: &Map<String, Value>, key: &str) -> Result<Option<Value>, serde_json::Error> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s).map(Some),
        Some(v) => Ok(Some(v.clone())),
    }
}

/// `name`, `` `tabX`.name `` and `` `name` `` all mean the column `name`.
fn column_name(doctype: &str, raw: &str) -> String {
    let table = format!("`tab{doctype}`.");
    raw.trim()
        .strip_prefix(&table)
        .unwrap_or(raw.trim())
        .trim_matches('`')
        .to_owned()
}

/// A column's value as SQL would compare it (NULL as "").
fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// One list row: the requested columns (`x as y` renames). Child tables are not columns, so
/// `*` leaves them out.
fn project(doctype: &str, doc: &Value, fields: &[String]) -> Value {
    let mut row = Map::new();
    for f in fields {
        if f.trim() == "*" {
            if let Some(all) = doc.as_object() {
                for (k, v) in all.iter().filter(|(_, v)| !v.is_array()) {
                    row.insert(k.clone(), v.clone());
                }
            }
            continue;
        }
        let lower = f.to_ascii_lowercase();
        let (col, alias) = match lower.find(" as ") {
            Some(i) => (&f[..i], f[i + 4..].trim()),
            None => (f.as_str(), ""),
        };
        let col = column_name(doctype, col);
        let key = if alias.is_empty() {
            col.clone()
        } else {
            alias.trim_matches('`').to_owned()
        };
        row.insert(key, doc.get(&col).cloned().unwrap_or(Value::Null));
    }
    Value::Object(row)
}

/// One `[field, operator, value]` condition of a list request.
struct ListFilter {
    field: String,
    op: String,
    value: Value,
}

impl ListFilter {
    /// Compared as MariaDB does under `utf8mb4_unicode_ci`: case-insensitively, NULL as "".
    fn matches(&self, doc: &Value) -> bool {
        let have = text_of(doc.get(&self.field)).to_lowercase();
        let want = || text_of(Some(&self.value)).to_lowercase();
        let list = || -> Vec<String> {
            match &self.value {
                Value::Array(vs) => vs.iter().map(|v| text_of(Some(v)).to_lowercase()).collect(),
                v => text_of(Some(v))
                    .split(',')
                    .map(|s| s.trim().to_lowercase())
                    .collect(),
            }
        };
        let numeric = |a: &str, b: &str| match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.partial_cmp(&y),
            _ => Some(a.cmp(b)),
        };
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self.op.as_str() {
            "=" => have == want(),
            "!=" => have != want(),
            "in" => list().contains(&have),
            "not in" => !list().contains(&have),
            "like" => like(&have, &want()),
            "not like" => !like(&have, &want()),
            "is" => (want() == "set") != have.is_empty(),
            ">" => numeric(&have, &want()) == Some(Greater),
            "<" => numeric(&have, &want()) == Some(Less),
            ">=" => matches!(numeric(&have, &want()), Some(Greater | Equal)),
            "<=" => matches!(numeric(&have, &want()), Some(Less | Equal)),
            _ => false,
        }
    }
}

/// SQL `LIKE` with `%` and `_` (both already lower-cased).
fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&t, &p)
}

/// The filters of a list request: `{"field": value}`, `{"field": [op, value]}`, or a list of
/// `[field, op, value]` / `[doctype, field, op, value]`. `None` if malformed.
fn list_filters(doctype: &str, raw: Option<Value>) -> Option<Vec<ListFilter>> {
    let cond = |field: &str, v: &Value| match v {
        Value::Array(pair) if pair.len() == 2 && pair[0].is_string() => ListFilter {
            field: column_name(doctype, field),
            op: pair[0].as_str().unwrap_or("=").trim().to_lowercase(),
            value: pair[1].clone(),
        },
        v => ListFilter {
            field: column_name(doctype, field),
            op: "=".to_owned(),
            value: v.clone(),
        },
    };
    match raw {
        None => Some(vec![]),
        Some(Value::Object(m)) => Some(m.iter().map(|(k, v)| cond(k, v)).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                let parts = item.as_array()?;
                let parts = match parts.len() {
                    3 => parts.as_slice(),
                    4 | 5 => &parts[1..4],
                    _ => return None,
                };
                Some(ListFilter {
                    field: column_name(doctype, parts[0].as_str()?),
                    op: parts[1].as_str()?.trim().to_lowercase(),
                    value: parts[2].clone(),
                })
            })
            .collect(),
        Some(_) => None,
    }
}
