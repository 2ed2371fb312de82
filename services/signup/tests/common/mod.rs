#![allow(dead_code)] // shared by several test binaries and the bench; each uses a part
//! `spawn_stack()`: the real vault (fresh PostgreSQL database) and the real signup gateway, both
//! on 127.0.0.1:0 in one isolated NATS namespace, plus clients and an event-store handle.

use std::net::SocketAddr;
use std::time::Duration;

use eventstore::{EventContext, EventStore, NewEvent, RecordedEvent, StoreConfig};
use proto::v1::SignupRequest;
use proto::v1::event::Body;
use proto::v1::signup_service_client::SignupServiceClient;
use proto::v1::tenant_admin_client::TenantAdminClient;
use secrecy::SecretString;
use signup::Config;
use svc::{NatsArgs, Shutdown};
use tonic::transport::Channel;
use tonic::{Code, Status};
use vault::crypto::KEY_LEN;
use vault::{AclConfig, KeyRing};
use zeroize::Zeroizing;

/// The admin token every test stack accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A password that passes the policy for [`request`]'s fields.
pub const PASSWORD: &str = "violet tractor 19 spoons";

/// A running vault + signup gateway.
pub struct TestStack {
    /// Signup gRPC address.
    pub addr: SocketAddr,
    /// Vault gRPC address.
    pub vault_addr: SocketAddr,
    /// The namespace both use.
    pub namespace: String,
    /// The event store of that namespace.
    pub store: EventStore,
    signup_stop: Shutdown,
    vault_stop: Shutdown,
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.signup_stop.trigger();
        self.vault_stop.trigger();
    }
}

impl TestStack {
    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A typed signup client.
    pub async fn client(&self) -> SignupServiceClient<Channel> {
        SignupServiceClient::connect(self.endpoint())
            .await
            .expect("signup reachable")
    }

    /// A typed admin client (requests need [`authorized`]).
    pub async fn admin(&self) -> TenantAdminClient<Channel> {
        TenantAdminClient::connect(self.endpoint())
            .await
            .expect("signup reachable")
    }

    /// Every event of the namespace, in order.
    pub async fn events(&self) -> Vec<RecordedEvent> {
        self.store
            .replay(&self.store.all_filter(), 1)
            .await
            .expect("replay")
            .collect()
            .await
            .expect("events")
    }

    /// Appends provisioning events for `tenant` as the provisioner would.
    pub async fn provision(&self, tenant: &str, bodies: Vec<Body>) -> Vec<u64> {
        let subject = self.store.subject(EventContext::Provisioning, tenant);
        let version = self.store.version(&subject).await.expect("version");
        self.store
            .append(
                &subject,
                version,
                bodies.into_iter().map(NewEvent::new).collect(),
            )
            .await
            .expect("append provisioning events")
    }

    /// Stops both services.
    pub fn stop(&self) {
        self.signup_stop.trigger();
        self.vault_stop.trigger();
    }
}

/// Wraps a message with the admin bearer token.
pub fn authorized<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().expect("ascii"),
    );
    r
}

/// A valid signup request, unique by `tag` (subdomain `acme-<tag>`, email `jane.<tag>@…`).
pub fn request(tag: &str) -> SignupRequest {
    SignupRequest {
        email: format!("owner.{tag}@example.com"),
        password: PASSWORD.to_owned(),
        full_name: "Jane Doe".to_owned(),
        organisation: "Acme Widgets".to_owned(),
        subdomain: format!("acme-{tag}"),
        plan: "starter".to_owned(),
        region: String::new(),
        idempotency_key: String::new(),
    }
}

/// A short unique tag (hex; never a word the password policy would object to).
pub fn tag() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("k{}", &id[id.len() - 10..])
}

/// The field names of a status's BadRequest violations.
pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Asserts the call failed with `code`.
pub fn expect_code<T: std::fmt::Debug>(r: Result<T, Status>, code: Code) -> Status {
    match r {
        Err(s) if s.code() == code => s,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// The default stack: default limits, the admin token, CORS for `https://app.example.com`.
pub async fn spawn_stack() -> TestStack {
    spawn_stack_with(|_| {}).await
}

/// A stack whose signup config `tweak` adjusts.
pub async fn spawn_stack_with(tweak: impl FnOnce(&mut Config)) -> TestStack {
    spawn_stack_pooled(tweak, 5).await
}

/// A stack with a vault pool of `max_connections` (the bench wants more).
pub async fn spawn_stack_pooled(
    tweak: impl FnOnce(&mut Config),
    max_connections: u32,
) -> TestStack {
    testkit::init_logging();
    let namespace = testkit::unique_namespace();
    let (vault_addr, token, vault_stop) = spawn_vault(&namespace, max_connections).await;
    let mut config = Config::new(
        NatsArgs {
            nats_url: testkit::nats_url(),
            namespace: namespace.clone(),
        },
        format!("http://{vault_addr}"),
        token,
    );
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin_tokens = vec![SecretString::from(ADMIN_TOKEN)];
    config.cors_origins = vec!["https://app.example.com".to_owned()];
    tweak(&mut config);
    let app = signup::Application::build(config)
        .await
        .expect("signup builds");
    let addr = app.local_addr();
    let signup_stop = Shutdown::new();
    let stop = signup_stop.clone();
    tokio::spawn(async move {
        if let Err(e) = app
            .run_until_stopped(async move { stop.wait().await })
            .await
        {
            eprintln!("signup stopped with an error: {e}");
        }
    });
    let store = EventStore::connect(
        &StoreConfig::new(testkit::nats_url()).with_namespace(namespace.clone()),
    )
    .await
    .expect("event store");
    TestStack {
        addr,
        vault_addr,
        namespace,
        store,
        signup_stop,
        vault_stop,
    }
}

/// The real vault on a fresh database, in `namespace`; returns its address, the `signup`
/// caller's token and its stop signal.
pub async fn spawn_vault(
    namespace: &str,
    max_connections: u32,
) -> (SocketAddr, SecretString, Shutdown) {
    let (database_url, _pool) = testkit::fresh_database().await.expect("fresh database");
    let token = SecretString::from(format!("signup-token-{namespace}"));
    let acl = AclConfig::default_policy().with_token("signup", &token);
    let keyring =
        KeyRing::new("k1", [("k1".to_owned(), Zeroizing::new([7u8; KEY_LEN]))]).expect("key ring");
    let mut config = vault::Config::new(
        SecretString::from(database_url),
        testkit::nats_url(),
        keyring,
        acl,
    );
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.namespace = namespace.to_owned();
    config.database_max_connections = max_connections;
    let app = vault::Application::build(config)
        .await
        .expect("vault builds");
    let addr = app.local_addr();
    let stop = Shutdown::new();
    let wait = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = app
            .run_until_stopped(async move { wait.wait().await })
            .await
        {
            eprintln!("vault stopped with an error: {e}");
        }
    });
    (addr, token, stop)
}

/// Polls `f` until it returns `Some`, for at most ~10 s (for eventually-visible state).
pub async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached");
}
