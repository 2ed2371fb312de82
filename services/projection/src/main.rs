//! `projection`: the tenant read model and `TenantDirectory` API. Flags → config → telemetry →
//! serve until SIGINT/SIGTERM.

use clap::Parser;
use svc::{Shutdown, TelemetryArgs};

#[derive(Parser)]
#[command(
    name = "projection",
    about = "Tenantry tenant read model and TenantDirectory API"
)]
struct Cli {
    #[command(flatten)]
    config: projection::Config,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    dump_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.dump_config {
        println!("{:#?}", cli.config);
        return Ok(());
    }
    let _telemetry = svc::telemetry::init("projection", &cli.telemetry)?;
    let app = projection::Application::build(cli.config).await?;
    tracing::info!(grpc = %app.local_addr(), admin = ?app.admin_addr(), "projection listening");
    app.run_until_stopped(Shutdown::from_signals().into_future())
        .await?;
    Ok(())
}
