//! authentik-fake: a test double of the Authentik API v3 subset Tenantry's identity service uses.
//!
//! It follows `contracts/authentik.md` §6: DRF status codes and error shapes, uniqueness rules,
//! cascades, small pages so clients must follow `next`, and request/response bodies that are
//! checked against the real OpenAPI schema (a checked-in subset, see `schema/extract.py`).
//! Start one per test with [`FakeAuthentik::start`]; the API lives under `<base_url>/api/v3`.

mod error;
mod fields;
mod page;
mod render;
mod routes;
mod schema;
mod server;
mod store;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use schema::{FieldErrors, subset as schema_subset, validate_request, validate_response};

use render::Include;
use server::Shared;
use store::{Group, User};

/// How a fake instance behaves.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// The API token clients must send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Default page size of list endpoints. Small on purpose, so clients must follow `next`.
    pub page_size: usize,
    /// What `GET /admin/version/` reports as `version_current`.
    pub version: String,
    /// Scheme and host the OIDC URLs (`setup_urls`) are built from, e.g. `http://auth.localhost`.
    pub public_host: String,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            token: "authentik-fake-token".to_owned(),
            page_size: 2,
            version: "2026.8.5".to_owned(),
            public_host: "http://auth.localhost".to_owned(),
        }
    }
}

/// Every object of a fake, in API representation (providers include `client_secret`).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `Group` objects, with `users_obj`.
    pub groups: Vec<Value>,
    /// `User` objects, with `groups_obj`.
    pub users: Vec<Value>,
    /// `OAuth2Provider` objects, with `client_id` and `client_secret`.
    pub providers: Vec<Value>,
    /// `Application` objects, with `pk` and `pbm_uuid`.
    pub applications: Vec<Value>,
    /// `PolicyBinding` objects.
    pub bindings: Vec<Value>,
}

/// A running fake server. Dropping it stops serving too; [`FakeAuthentik::stop`] also waits.
pub struct FakeAuthentik {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeAuthentik {
    /// Binds 127.0.0.1:0 and serves on a tokio task.
    pub async fn start(config: FakeConfig) -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Binds the given address (used by the bin and `tenantry dev`).
    pub async fn start_on(addr: SocketAddr, config: FakeConfig) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let app = routes::router(Arc::clone(&shared)).layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            server::gate,
        ));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                eprintln!("authentik-fake: server error: {e}");
            }
        });
        Ok(FakeAuthentik {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:<port>`; the API is under `/api/v3`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every following API request is answered with `status` (body `{"detail":…}`) until
    /// cleared with `None` — simulates an outage.
    pub fn set_outage(&self, status: Option<u16>) {
        self.shared.set_outage(status);
    }

    /// The next `n` API requests are answered with `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared.fail_next(n, status);
    }

    /// Number of requests answered so far (all, including failed ones).
    pub fn requests(&self) -> u64 {
        self.shared.requests()
    }

    /// A snapshot of all objects for assertions.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.shared.store();
        let inc = Include::default();
        Snapshot {
            groups: s.groups.iter().map(|g| render::group(&s, g, inc)).collect(),
            users: s.users.iter().map(|u| render::user(&s, u, inc)).collect(),
            providers: s
                .providers
                .iter()
                .map(|p| render::provider(&s, p))
                .collect(),
            applications: s.apps.iter().map(|a| render::app(&s, a)).collect(),
            bindings: s.bindings.iter().map(|b| render::binding(&s, b)).collect(),
        }
    }

    /// Whether `username` with `password` can sign in to application `app_slug`: the password
    /// matches a set password, the user is active, the app exists and has a provider, and the
    /// app's policy bindings let the user in. This is what an OIDC login would check.
    pub fn can_sign_in(&self, app_slug: &str, username: &str, password: &str) -> bool {
        let s = self.shared.store();
        let Some(user) = s
            .users
            .iter()
            .find(|u| fields::text(&u.fields, "username") == username)
        else {
            return false;
        };
        let Some(app) = s.app(app_slug) else {
            return false;
        };
        user.password.as_deref() == Some(password)
            && fields::flag(&user.fields, "is_active")
            && fields::int(&app.fields, "provider").is_some()
            && s.check_access(app, user).0
    }

    /// Creates a group that is NOT ours (for "never adopt what isn't ours" tests) and returns
    /// its uuid. If the name is taken (names are unique), returns the existing group's uuid.
    pub fn seed_group(&self, name: &str, attributes: Value) -> String {
        let mut s = self.shared.store();
        if let Some(g) = s
            .groups
            .iter()
            .find(|g| fields::text(&g.fields, "name") == name)
        {
            return g.uuid.to_string();
        }
        let mut fields = fields::group_defaults();
        fields.insert("name".into(), Value::from(name));
        fields.insert("attributes".into(), attributes);
        let uuid = Uuid::new_v4();
        let num_pk = s.next_group_num();
        s.groups.push(Group {
            uuid,
            num_pk,
            fields,
        });
        uuid.to_string()
    }

    /// Creates a user that is NOT ours and returns its pk. If the username is taken (usernames
    /// are unique), returns the existing user's pk.
    pub fn seed_user(&self, username: &str, attributes: Value) -> i64 {
        let mut s = self.shared.store();
        if let Some(u) = s
            .users
            .iter()
            .find(|u| fields::text(&u.fields, "username") == username)
        {
            return u.pk;
        }
        let mut fields = fields::user_defaults();
        fields.insert("username".into(), Value::from(username));
        fields.insert("name".into(), Value::from(username));
        fields.insert("attributes".into(), attributes);
        let pk = s.next_user_pk();
        let now = Utc::now();
        s.users.push(User {
            pk,
            uuid: Uuid::new_v4(),
            fields,
            password: None,
            date_joined: now,
            password_change_date: now,
            last_updated: now,
        });
        pk
    }

    /// Stops serving and waits for the server task to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeAuthentik {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
