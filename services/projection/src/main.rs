//! `projection`: the tenant read model and `TenantDirectory` API. Flags → config → telemetry →
//! serve until SIGINT/SIGTERM.

use clap::Parser;
use svc::{AdminArgs, AdminServer, Metrics, Shutdown, TelemetryArgs};

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
    #[command(flatten)]
    admin: AdminArgs,
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
    let shutdown = Shutdown::from_signals();
    let app = projection::Application::build(cli.config).await?;
    let admin = AdminServer::bind(cli.admin.admin_addr, app.readiness(), Metrics::new()).await?;
    tracing::info!(grpc = %app.local_addr(), admin = %admin.local_addr()?, "projection listening");
    let admin_task = tokio::spawn(admin.serve(shutdown.clone()));
    let stop = shutdown.clone();
    app.run_until_stopped(async move { stop.wait().await })
        .await?;
    admin_task.await??;
    Ok(())
}
