//! `identity`: flags → config → telemetry → consume until SIGINT/SIGTERM.

use clap::Parser;
use identity::IdentityArgs;
use svc::{Shutdown, TelemetryArgs};

#[derive(Parser)]
#[command(
    name = "identity",
    about = "Tenantry identity: single sign-on through Authentik for every tenant"
)]
struct Cli {
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Config errors are printed before tracing exists, so no log filter can swallow them.
    let config = match cli.identity.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("identity: {e}");
            std::process::exit(2);
        }
    };
    let _telemetry = svc::telemetry::init("identity", &cli.telemetry)?;
    let app = identity::Application::build(config).await?;
    tracing::info!(admin = %app.admin_addr(), "identity started");
    app.run_until_stopped(Shutdown::from_signals()).await?;
    Ok(())
}
