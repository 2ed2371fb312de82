//! The admin ports follow their dependencies: on a private NATS server, the signup gateway's and
//! the vault's `/readyz` turn 503 naming `nats` when NATS dies and 200 again once it is back (same
//! port and store); signup's names `vault` when the vault goes away. `/healthz` stays 200
//! throughout and `/metrics` is OpenMetrics text.
//!
//! The bounds below are how long the test waits before giving up (the probes re-check NATS every
//! second, the vault every five), not timing assertions.

use std::future::Future;
use std::time::{Duration, Instant};

use testkit::{NatsServer, TestSignup, TestVault};

/// How long a `/readyz` may take to follow a change before the test gives up.
const FOLLOW_WITHIN: Duration = Duration::from_secs(15);
/// How often `/readyz` is polled.
const POLL: Duration = Duration::from_millis(100);

/// What `/metrics` must say it is (Prometheus picks its parser by it).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The services whose admin ports are watched; `vault` is `None` once it is stopped.
struct Watched<'a> {
    signup: &'a TestSignup,
    vault: Option<&'a TestVault>,
}

impl Watched<'_> {
    /// `/healthz` is 200 `ok` on every running service, whatever its readiness.
    async fn assert_alive(&self) {
        let signup = self.signup.admin_get("/healthz").await;
        assert_eq!(
            (signup.status, signup.body.as_str()),
            (200, "ok\n"),
            "signup /healthz"
        );
        if let Some(vault) = self.vault {
            let vault = vault.admin_get("/healthz").await;
            assert_eq!(
                (vault.status, vault.body.as_str()),
                (200, "ok\n"),
                "vault /healthz"
            );
        }
    }

    /// Polls `readyz` every [`POLL`] (checking `/healthz` on each round) until `done` holds
    /// for its answer, for at most `within`. Returns how long it took and the body.
    async fn wait_for<R, F>(
        &self,
        what: &str,
        within: Duration,
        mut readyz: R,
        done: impl Fn(u16, &str) -> bool,
    ) -> (Duration, String)
    where
        R: FnMut() -> F,
        F: Future<Output = (u16, String)>,
    {
        let start = Instant::now();
        loop {
            let (status, body) = readyz().await;
            if done(status, &body) {
                return (start.elapsed(), body);
            }
            assert!(
                start.elapsed() < within,
                "{what}: not within {within:?}; last /readyz answer: {status} {body:?}"
            );
            self.assert_alive().await;
            tokio::time::sleep(POLL).await;
        }
    }
}

fn ready(status: u16, _body: &str) -> bool {
    status == 200
}

/// A 503 whose `not ready: a (why), b (why)` list names `part`.
fn names(part: &'static str) -> impl Fn(u16, &str) -> bool {
    move |status, body| {
        status == 503
            && body
                .trim_end()
                .strip_prefix("not ready: ")
                .is_some_and(|parts| {
                    parts
                        .split(", ")
                        .any(|p| p == part || p.starts_with(&format!("{part} (")))
                })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_nats_and_the_vault() {
    let mut nats = NatsServer::start().await;
    let namespace = testkit::unique_namespace();
    let vault = testkit::spawn_vault_on(&nats.url(), &namespace).await;
    let signup = testkit::spawn_signup(&vault, |_| {}).await;
    let watched = Watched {
        signup: &signup,
        vault: Some(&vault),
    };

    let (t, _) = watched
        .wait_for(
            "signup ready after start",
            Duration::from_secs(30),
            || signup.readyz(),
            ready,
        )
        .await;
    eprintln!("signup ready {t:?} after start");
    watched
        .wait_for(
            "vault ready after start",
            FOLLOW_WITHIN,
            || vault.readyz(),
            ready,
        )
        .await;
    for (name, metrics) in [
        ("signup", signup.admin_get("/metrics").await),
        ("vault", vault.admin_get("/metrics").await),
    ] {
        assert_eq!(metrics.status, 200, "{name} /metrics: {}", metrics.body);
        assert_eq!(
            metrics.content_type, OPENMETRICS,
            "{name} /metrics content type"
        );
        assert!(
            metrics.body.ends_with("# EOF\n"),
            "{name} /metrics is OpenMetrics text: {}",
            metrics.body
        );
    }

    // NATS dies: both say so, naming it.
    nats.kill();
    let down = Instant::now();
    let (t, body) = watched
        .wait_for(
            "signup /readyz names nats",
            FOLLOW_WITHIN,
            || signup.readyz(),
            names("nats"),
        )
        .await;
    eprintln!("signup not ready {t:?} after NATS died: {body:?}");
    let (_, body) = watched
        .wait_for(
            "vault /readyz names nats",
            FOLLOW_WITHIN,
            || vault.readyz(),
            names("nats"),
        )
        .await;
    eprintln!(
        "vault not ready {:?} after NATS died: {body:?}",
        down.elapsed()
    );

    // NATS is back on the same port and store: both are ready again.
    nats.restart().await;
    let back = Instant::now();
    let (t, _) = watched
        .wait_for(
            "signup ready after NATS returned",
            FOLLOW_WITHIN,
            || signup.readyz(),
            ready,
        )
        .await;
    eprintln!("signup ready {t:?} after NATS returned");
    watched
        .wait_for(
            "vault ready after NATS returned",
            FOLLOW_WITHIN,
            || vault.readyz(),
            ready,
        )
        .await;
    eprintln!("vault ready {:?} after NATS returned", back.elapsed());

    // The vault goes away: signup says so (it checks the vault every five seconds).
    vault.stop().await;
    let watched = Watched {
        signup: &signup,
        vault: None,
    };
    let (t, body) = watched
        .wait_for(
            "signup /readyz names vault",
            FOLLOW_WITHIN,
            || signup.readyz(),
            names("vault"),
        )
        .await;
    eprintln!("signup not ready {t:?} after the vault stopped: {body:?}");
    assert!(
        !names("nats")(503, &body),
        "NATS is up, only the vault is gone: {body:?}"
    );
}
