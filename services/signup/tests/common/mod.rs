#![allow(dead_code)] // shared by several test binaries and the bench; each uses a part
//! `spawn_stack()`: the real vault (fresh PostgreSQL database) and the real signup gateway, both
//! on 127.0.0.1:0 in one isolated NATS namespace (from `testkit`), plus what signup tests share:
//! clients, requests and assertions.

use std::net::SocketAddr;

use eventstore::{EventContext, EventStore, NewEvent, RecordedEvent};
use proto::v1::SignupRequest;
use proto::v1::event::Body;
use proto::v1::signup_service_client::SignupServiceClient;
use proto::v1::tenant_admin_client::TenantAdminClient;
use signup::Config;
use testkit::{TestSignup, TestVault};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The admin token every test stack accepts (operator `test-admin`).
pub use testkit::ADMIN_TOKEN;

/// A password that passes the policy for [`request`]'s fields.
pub const PASSWORD: &str = "violet tractor 19 spoons";

/// A running vault + signup gateway.
pub struct TestStack {
    /// Signup gRPC address.
    pub addr: SocketAddr,
    /// The namespace both use.
    pub namespace: String,
    /// The event store of that namespace.
    pub store: EventStore,
    signup: TestSignup,
    _vault: TestVault,
}

impl TestStack {
    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        self.signup.endpoint()
    }

    /// A typed signup client.
    pub async fn client(&self) -> SignupServiceClient<Channel> {
        SignupServiceClient::connect(self.endpoint())
            .await
            .expect("signup reachable")
    }

    /// `http://<operator addr>`.
    pub fn operator_endpoint(&self) -> String {
        self.signup.operator_endpoint()
    }

    /// A typed admin client on the operator port (requests need [`authorized`]).
    pub async fn admin(&self) -> TenantAdminClient<Channel> {
        TenantAdminClient::connect(self.signup.operator_endpoint())
            .await
            .expect("signup operator port reachable")
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

    /// Stops the gateway (the vault stops when the stack is dropped).
    pub fn stop(&self) {
        self.signup.stop();
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
        human_check_token: String::new(),
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

/// The status's `google.rpc.ErrorInfo`: its reason code and metadata (every error has one).
pub fn error_info(status: &Status) -> (String, std::collections::HashMap<String, String>) {
    use tonic_types::StatusExt;
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo on {status:?}"));
    assert_eq!(info.domain, signup::error::ERROR_DOMAIN);
    (info.reason, info.metadata)
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
    let vault =
        testkit::spawn_vault_pooled(testkit::ring("k1", &[("k1", 7)]), max_connections).await;
    let signup = testkit::spawn_signup(&vault, |config| {
        config.operator_auth = Some(testkit::test_operators());
        config.cors_origins = vec!["https://app.example.com".to_owned()];
        tweak(config);
    })
    .await;
    let store = testkit::event_store_in(&vault.namespace).await;
    TestStack {
        addr: signup.addr,
        namespace: vault.namespace.clone(),
        store,
        signup,
        _vault: vault,
    }
}

/// Every log line of this test process (TRACE, every crate), once [`capture_logs`] installed it.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// What has been logged so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the process's log; `None` when another subscriber was installed first (nextest
/// gives each test a process of its own, so there it always captures).
pub fn capture_logs() -> Option<Captured> {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .is_ok()
        .then_some(captured)
}
