//! `provisioner`: flags → config → telemetry → consume until SIGINT/SIGTERM.

use clap::Parser;
use provisioner::ProvisionerArgs;
use svc::{Shutdown, TelemetryArgs};

#[derive(Parser)]
#[command(
    name = "provisioner",
    about = "Tenantry provisioner: builds and runs Frappe sites"
)]
struct Cli {
    #[command(flatten)]
    provisioner: ProvisionerArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    dump_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Config errors are printed before tracing exists, so no log filter can swallow them.
    let config = match cli.provisioner.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("provisioner: {e}");
            std::process::exit(2);
        }
    };
    if cli.dump_config {
        println!("{config:#?}");
        return Ok(());
    }
    let _telemetry = svc::telemetry::init("provisioner", &cli.telemetry)?;
    let shutdown = Shutdown::from_signals();
    let app = provisioner::Application::build(config).await?;
    tracing::info!(admin = %app.admin_addr(), "provisioner started");
    app.run_until_stopped(shutdown).await?;
    Ok(())
}
