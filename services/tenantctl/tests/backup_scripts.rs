//! `deploy/backup/backup.sh` and `restore.sh`, run as an operator would run them (the real
//! scripts, the real tenantctl binary, pg_dump/pg_restore): a backup, then the event stream,
//! every KV bucket and the vault's tables are lost; the restore brings back every event at its
//! sequence, the vault's secrets and the subdomain claims.

use std::path::Path;
use std::process::Command;

use eventstore::{Body, EventContext, NewEvent};
use futures::TryStreamExt;
use proto::v1 as pb;
use secrecy::{ExposeSecret, SecretString};

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/backup")
        .join(name)
}

/// Runs a script with tenantctl and the stack's settings; returns its output, failing the test
/// with it when the script fails.
fn run(name: &str, args: &[&str], namespace: &str, database_url: &str) -> String {
    let out = Command::new(script(name))
        .args(args)
        .env("TENANTCTL", env!("CARGO_BIN_EXE_tenantctl"))
        .env("NATS_URL", testkit::nats_url())
        .env("TENANTRY_NAMESPACE", namespace)
        .env("VAULT_DATABASE_URL", database_url)
        .output()
        .expect("the script runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed:\n{text}");
    text
}

#[tokio::test]
async fn backup_then_restore_brings_back_the_log_the_vault_and_the_claims() {
    testkit::init_logging();
    let namespace = testkit::unique_namespace();
    let events = testkit::event_store_in(&namespace).await;
    let vault = testkit::spawn_vault_in(&namespace).await;
    let mut tenants = Vec::new();
    for name in ["acme", "globex"] {
        let id = tenancy::TenantId::new().to_string();
        let body = Body::TenantRequested(pb::TenantRequested {
            tenant_id: id.clone(),
            subdomain: name.into(),
            plan: "starter".into(),
            ..Default::default()
        });
        events
            .append(
                &events.subject(EventContext::Signup, &id),
                0,
                vec![NewEvent::new(body)],
            )
            .await
            .unwrap();
        vault
            .client("provisioner")
            .put_string(
                &id,
                "site-admin-password",
                "site_admin_password",
                &SecretString::from(format!("secret of {name}")),
                "backup test",
            )
            .await
            .unwrap();
        tenants.push(id);
    }
    // The vault's outbox records CredentialStored in the log.
    let before = testkit::within(std::time::Duration::from_secs(20), || async {
        let last = events.last_sequence().await.ok()?;
        (last >= 4).then_some(last)
    })
    .await
    .expect("the vault's events are in the log");

    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("b");
    let backup = backup.to_str().unwrap();
    run("backup.sh", &[backup], &namespace, &vault.database_url);
    assert!(Path::new(backup).join("vault.dump").is_file());
    // A second backup into the same directory is refused, the first left as it was.
    let again = Command::new(script("backup.sh"))
        .arg(backup)
        .env("VAULT_DATABASE_URL", &vault.database_url)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));

    // The disaster: the stream and every bucket of the namespace, and the vault's secrets.
    let js = events.jetstream();
    let names: Vec<String> = js.stream_names().try_collect().await.unwrap();
    for name in names {
        if name == events.stream_name()
            || name.starts_with(&format!("KV_{}", events.bucket_name("")))
        {
            js.delete_stream(&name).await.unwrap();
        }
    }
    sqlx::query("TRUNCATE vault.secrets, vault.data_keys, vault.audit_log, vault.outbox CASCADE")
        .execute(&vault.pool)
        .await
        .unwrap();

    let out = run("restore.sh", &[backup], &namespace, &vault.database_url);
    assert!(out.contains("restore.sh --rebuild"), "{out}");
    let events = testkit::event_store_in(&namespace).await;
    assert!(events.last_sequence().await.unwrap() >= before);
    for (id, name) in tenants.iter().zip(["acme", "globex"]) {
        let value = vault
            .client("provisioner")
            .get_by_name(id, "site-admin-password", "after the restore")
            .await
            .expect("the secret is back");
        assert_eq!(
            value.to_secret_string().unwrap().expose_secret(),
            format!("secret of {name}")
        );
        let claims = events
            .key_value(signup::claims::BUCKET, 5, "")
            .await
            .unwrap();
        let claim = claims.get(name).await.unwrap().expect("the claim is back");
        assert!(String::from_utf8_lossy(&claim).contains(id.as_str()));
    }
    vault.stop().await;
}
