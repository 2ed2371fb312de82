//! `authentik-fake --listen 127.0.0.1:9000 [--page-size N] [--public-host URL]`
//!
//! Serves the fake until SIGTERM or ctrl-c. The API token comes from `AUTHENTIK_FAKE_TOKEN`
//! (required, never printed) so it does not show up in `ps`.

use std::net::SocketAddr;
use std::process::ExitCode;

use authentik_fake::{FakeAuthentik, FakeConfig};
use clap::Parser;

/// A test double of the Authentik API v3 (under /api/v3).
#[derive(Parser)]
#[command(name = "authentik-fake")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Default page size of list endpoints (small, so clients must follow `next`).
    #[arg(long, default_value_t = FakeConfig::default().page_size)]
    page_size: usize,
    /// Scheme and host used in the OIDC URLs (`setup_urls`).
    #[arg(long, default_value_t = FakeConfig::default().public_host)]
    public_host: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let token = match std::env::var("AUTHENTIK_FAKE_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => {
            eprintln!("authentik-fake: AUTHENTIK_FAKE_TOKEN must be set");
            return ExitCode::from(2);
        }
    };
    let config = FakeConfig {
        token,
        page_size: args.page_size.max(1),
        public_host: args.public_host,
        ..FakeConfig::default()
    };
    let fake = match FakeAuthentik::start_on(args.listen, config).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("authentik-fake: cannot listen on {}: {e:#}", args.listen);
            return ExitCode::from(1);
        }
    };
    println!("listening on {}", fake.base_url());
    shutdown_signal().await;
    fake.stop().await;
    ExitCode::SUCCESS
}

/// Resolves on ctrl-c or (on unix) SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
