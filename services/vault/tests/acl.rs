//! The ACL over every caller × operation × kind, kind immutability, and shred's rule (a grant
//! covering every kind the tenant holds), through the real service.

mod common;

use std::time::Duration;

use common::{audit_rows, code, secret};
use futures::StreamExt as _;
use secrecy::SecretString;
use testkit::{CALLERS, TestVault};
use tonic::Code;
use vault::{AclConfig, Op};
use vault_client::VaultClient;

const KINDS: [&str; 7] = [
    "sso_owner_password",
    "owner_password",
    "site_admin_password",
    "api_credentials",
    "db_root_password",
    "oauth_client_secret",
    "payment_key",
];
const OPS: [Op; 7] = [
    Op::Put,
    Op::Get,
    Op::Revoke,
    Op::PutOneTime,
    Op::TakeOneTime,
    Op::MoveOneTime,
    Op::Shred,
];

/// A custom caller (`payments`, one kind with every per-secret right) and a setup caller
/// (`root`, everything) laid over the default policy.
fn acl_toml() -> String {
    let hash = |t: &str| vault::acl::token_sha256(&SecretString::from(t.to_owned()));
    format!(
        r#"[callers.payments]
token_sha256 = "{}"
allow = [{{ kind = "payment_key", ops = ["put", "get", "revoke", "put_one_time", "take_one_time", "move_one_time", "shred"] }}]
[callers.root]
token_sha256 = "{}"
allow = [{{ kind = "*", ops = ["put", "get", "revoke", "put_one_time", "take_one_time", "move_one_time", "shred", "audit", "rotate"] }}]
"#,
        hash("payments-token"),
        hash("root-token")
    )
}

fn client(vault: &TestVault, caller: &str) -> VaultClient {
    match caller {
        "payments" | "root" => VaultClient::connect(
            vault.endpoint(),
            &SecretString::from(format!("{caller}-token")),
        )
        .unwrap(),
        c => vault.client(c),
    }
}

/// The oracle: what the configured grants say, computed independently of `vault::acl::Caller`.
fn expected(cfg: &AclConfig, caller: &str, op: Op, kind: &str) -> bool {
    cfg.callers[caller]
        .allow
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|g| (g.kind == "*" || g.kind == kind) && g.ops.contains(&op))
}

/// Runs `op` as `caller` on a fresh tenant holding one secret (or one-time secret) of `kind`.
/// Returns the outcome: Ok, or the error code.
async fn attempt(
    vault: &TestVault,
    root: &VaultClient,
    caller: &str,
    op: Op,
    kind: &str,
    tenant: &str,
) -> Result<(), Code> {
    let c = client(vault, caller);
    let ttl = Duration::from_secs(600);
    let one_time = match op {
        Op::TakeOneTime | Op::MoveOneTime => Some(
            root.put_one_time(tenant, kind, &secret("v1"), ttl, "setup")
                .await
                .unwrap()
                .reference,
        ),
        Op::PutOneTime => None,
        _ => {
            root.put(tenant, "s", kind, &secret("v1"), "setup")
                .await
                .unwrap();
            None
        }
    };
    let reference = format!("vault://tenant/{tenant}/s");
    let r = match op {
        Op::Put => c.put(tenant, "s", kind, &secret("v2"), "").await.map(drop),
        Op::Get => c.get(&reference, "").await.map(drop),
        Op::Revoke => c.revoke(&reference, "").await,
        Op::PutOneTime => c
            .put_one_time(tenant, kind, &secret("v"), ttl, "")
            .await
            .map(drop),
        Op::TakeOneTime => c
            .take_one_time(one_time.as_deref().unwrap(), "")
            .await
            .map(drop),
        Op::MoveOneTime => c
            .move_one_time(one_time.as_deref().unwrap(), "moved", "")
            .await
            .map(drop),
        Op::Shred => c.shred_tenant(tenant, "").await.map(drop),
        Op::Rotate | Op::Audit => unreachable!(),
    };
    r.map_err(|e| e.code().expect("a status"))
}

#[tokio::test]
async fn every_caller_operation_and_kind_is_allowed_exactly_as_granted_and_refusals_are_audited() {
    let vault = testkit::spawn_vault_with_acl(&testkit::unique_namespace(), &acl_toml()).await;
    let cfg = AclConfig::parse_toml(&acl_toml()).unwrap();
    let root = client(&vault, "root");
    let mut cases = Vec::new();
    for caller in CALLERS.iter().copied().chain(["payments"]) {
        for (i, op) in OPS.iter().copied().enumerate() {
            for kind in KINDS {
                cases.push((caller, i, op, kind));
            }
        }
    }
    assert_eq!(cases.len(), (CALLERS.len() + 1) * OPS.len() * KINDS.len());
    let outcomes: Vec<_> = futures::stream::iter(cases)
        .map(|(caller, i, op, kind)| {
            let (vault, root) = (&vault, &root);
            async move {
                let tenant = format!("{caller}-{i}-{kind}");
                let got = attempt(vault, root, caller, op, kind, &tenant).await;
                (caller, op, kind, tenant, got)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut allowed = 0;
    for (caller, op, kind, tenant, got) in outcomes {
        let want = expected(&cfg, caller, op, kind);
        let case = format!("{caller} {} {kind}", op.as_str());
        let rows = audit_rows(&vault.pool, &tenant).await;
        let own: Vec<_> = rows
            .iter()
            .filter(|(c, o, _)| c == caller && o == op.as_str())
            .collect();
        assert_eq!(own.len(), 1, "{case}: one audit row, got {rows:?}");
        if want {
            assert_eq!(got, Ok(()), "{case} should be allowed");
            assert_eq!(own[0].2, "allowed", "{case}");
            allowed += 1;
        } else {
            assert_eq!(got, Err(Code::PermissionDenied), "{case} should be denied");
            assert_eq!(own[0].2, "denied", "{case}");
        }
    }
    // The table is not trivially one-sided.
    assert!(allowed > 20 && allowed < 200, "{allowed} allowed");
}

#[tokio::test]
async fn a_stored_secret_keeps_its_kind() {
    let vault = testkit::spawn_vault_with_acl(&testkit::unique_namespace(), &acl_toml()).await;
    let p = vault.client("provisioner");
    p.put("acme", "db", "api_credentials", &secret("one"), "")
        .await
        .unwrap();
    // Allowed both kinds: refused as a precondition, naming both.
    let (c, msg) = code(
        p.put("acme", "db", "db_root_password", &secret("two"), "")
            .await,
    );
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("api_credentials") && msg.contains("db_root_password"),
        "{msg}"
    );
    // Allowed its own kind only: may not touch a secret of another kind at all.
    let (c, msg) = code(
        vault
            .client("identity")
            .put("acme", "db", "oauth_client_secret", &secret("x"), "")
            .await,
    );
    assert_eq!(c, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("api_credentials"), "{msg}");
    // A move into a name of another kind is refused the same way, and consumes nothing.
    let root = client(&vault, "root");
    let ot = root
        .put_one_time(
            "acme",
            "owner_password",
            &secret("pw"),
            Duration::from_secs(60),
            "",
        )
        .await
        .unwrap();
    let (c, _) = code(p.move_one_time(&ot.reference, "db", "").await);
    assert_eq!(c, Code::PermissionDenied);
    let (c, msg) = code(root.move_one_time(&ot.reference, "db", "").await);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    root.take_one_time(&ot.reference, "still there")
        .await
        .unwrap();
    let v = p.get_by_name("acme", "db", "").await.unwrap();
    assert_eq!((v.version, v.kind.as_str()), (1, "api_credentials"));
    let outcomes: Vec<String> = audit_rows(&vault.pool, "acme")
        .await
        .into_iter()
        .map(|(_, op, outcome)| format!("{op}:{outcome}"))
        .collect();
    assert_eq!(
        outcomes,
        [
            "put:allowed",
            "put:error",
            "put:denied",
            "put_one_time:allowed",
            "move_one_time:denied",
            "move_one_time:error",
            "take_one_time:allowed",
            "get:allowed"
        ]
    );
}

#[tokio::test]
async fn shred_needs_a_grant_covering_every_kind_the_tenant_holds() {
    let vault = testkit::spawn_vault_with_acl(&testkit::unique_namespace(), &acl_toml()).await;
    let root = client(&vault, "root");
    let payments = client(&vault, "payments");
    root.put("mixed", "pay", "payment_key", &secret("p"), "")
        .await
        .unwrap();
    root.put_one_time(
        "mixed",
        "api_credentials",
        &secret("a"),
        Duration::from_secs(60),
        "",
    )
    .await
    .unwrap();
    let (c, msg) = code(payments.shred_tenant("mixed", "").await);
    assert_eq!(c, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("api_credentials"), "{msg}");
    // Nothing was destroyed.
    assert!(root.get_by_name("mixed", "pay", "").await.is_ok());
    let keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM vault.data_keys WHERE tenant_id = 'mixed'")
            .fetch_one(&vault.pool)
            .await
            .unwrap();
    assert_eq!(keys, 2);
    // Only its own kind: allowed.
    root.put("own", "pay", "payment_key", &secret("p"), "")
        .await
        .unwrap();
    assert_eq!(payments.shred_tenant("own", "").await.unwrap(), 1);
    // The operator's `*` grant covers every kind.
    assert_eq!(
        vault
            .client("operator")
            .shred_tenant("mixed", "")
            .await
            .unwrap(),
        1
    );
}
