//! `signup`: the public signup gateway. Flags → config → telemetry → serve until SIGINT/SIGTERM.

use clap::Parser;
use svc::{AdminArgs, AdminServer, Metrics, Readiness, Shutdown, TelemetryArgs};

#[derive(Parser)]
#[command(name = "signup", about = "Tenantry signup gateway")]
struct Cli {
    #[command(flatten)]
    config: signup::Config,
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
    let _telemetry = svc::telemetry::init("signup", &cli.telemetry)?;
    let shutdown = Shutdown::from_signals();
    let readiness = Readiness::default();
    // Both listeners are bound before serving, so a port conflict fails at once.
    let admin = AdminServer::bind(cli.admin.admin_addr, readiness.clone(), Metrics::new()).await?;
    let app = signup::Application::build(cli.config).await?;
    tracing::info!(grpc = %app.local_addr(), admin = %admin.local_addr()?, "signup listening");
    let admin_task = tokio::spawn(admin.serve(shutdown.clone()));
    readiness.set(true);
    let stop = shutdown.clone();
    app.run_until_stopped(async move { stop.wait().await })
        .await?;
    admin_task.await??;
    Ok(())
}
