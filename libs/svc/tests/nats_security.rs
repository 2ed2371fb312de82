//! NATS credentials and TLS, from the flags every service shares, against a private
//! nats-server that requires them.

use std::time::Duration;

use eventstore::{EventStore, NewEvent};
use proto::v1::event::Body;
use svc::NatsArgs;

fn args(server: &testkit::NatsServer) -> NatsArgs {
    NatsArgs::local(server.url(), testkit::unique_namespace())
}

fn secret_file(dir: &tempfile::TempDir, name: &str, value: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

/// Connects and proves the connection works by appending one event.
async fn connect_and_append(args: &NatsArgs) -> Result<(), String> {
    let mut config = args.store_config().map_err(|e| e.to_string())?;
    // Refusals are expected here: no need to wait the default 10 s for each.
    config.connect_timeout = Duration::from_secs(3);
    let store = tokio::time::timeout(Duration::from_secs(30), EventStore::connect(&config))
        .await
        .map_err(|_| "connect did not return".to_owned())?
        .map_err(|e| e.to_string())?;
    let tenant = tenancy::TenantId::new().to_string();
    let subject = store.subject(eventstore::EventContext::Signup, &tenant);
    store
        .append(
            &subject,
            0,
            vec![NewEvent::new(Body::TenantRequested(
                proto::v1::TenantRequested {
                    tenant_id: tenant.clone(),
                    ..Default::default()
                },
            ))],
        )
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn user_and_password_from_a_file_and_wrong_ones_say_so_without_the_secret() {
    let server = testkit::NatsServer::start_with(
        "authorization { user: tenantry, password: \"right-horse-battery\" }",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut good = args(&server);
    good.user = Some("tenantry".into());
    good.password_file = Some(secret_file(&dir, "pw", "right-horse-battery"));
    connect_and_append(&good).await.unwrap();

    let mut wrong = args(&server);
    wrong.user = Some("tenantry".into());
    wrong.password_file = Some(secret_file(&dir, "bad", "wrong-staple"));
    let err = connect_and_append(&wrong).await.unwrap_err();
    assert!(err.to_lowercase().contains("authorization"), "{err}");
    assert!(!err.contains("wrong-staple"), "the password leaked: {err}");
    assert!(!format!("{wrong:?}").contains("wrong-staple"));

    // No credentials at all is refused too; a user without a password is a flag error.
    assert!(connect_and_append(&args(&server)).await.is_err());
    let mut half = args(&server);
    half.user = Some("tenantry".into());
    let err = half.store_config().unwrap_err();
    assert!(err.to_string().contains("needs a password"), "{err}");
}

#[tokio::test]
async fn a_token_from_a_file() {
    let server = testkit::NatsServer::start_with("authorization { token: \"t0ken-t0ken\" }").await;
    let dir = tempfile::tempdir().unwrap();
    let mut good = args(&server);
    good.token_file = Some(secret_file(&dir, "token", "t0ken-t0ken"));
    connect_and_append(&good).await.unwrap();
    // Two credentials at once are ambiguous: refused before connecting.
    good.user = Some("someone".into());
    good.password_file = Some(secret_file(&dir, "pw", "x"));
    assert!(good.store_config().is_err());
}

#[tokio::test]
async fn tls_with_the_servers_ca_works_and_plaintext_or_a_stranger_ca_does_not() {
    let (_tls_dir, files) = testkit::tls_files();
    let server = testkit::NatsServer::start_with(&format!(
        "tls {{ cert_file: {:?}, key_file: {:?} }}",
        files.server_cert, files.server_key
    ))
    .await;
    let mut trusted = args(&server);
    trusted.ca = Some(files.ca.clone());
    connect_and_append(&trusted).await.unwrap();

    let plain = args(&server);
    assert!(connect_and_append(&plain).await.is_err());

    let (_other_dir, other) = testkit::tls_files();
    let mut stranger = args(&server);
    stranger.ca = Some(other.ca.clone());
    assert!(connect_and_append(&stranger).await.is_err());
}
