//! `billing`: flags → config → telemetry → bill until SIGINT/SIGTERM.

use clap::Parser;
use svc::{Shutdown, TelemetryArgs};

#[derive(Parser)]
#[command(
    name = "billing",
    about = "Tenantry billing: subscriptions, invoices, dunning"
)]
struct Cli {
    #[command(flatten)]
    billing: billing::BillingArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let clock_file = cli.billing.clock_file.clone();
    let config = match cli.billing.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("billing: {e}");
            std::process::exit(2);
        }
    };
    let _telemetry = svc::telemetry::init("billing", &cli.telemetry)?;
    billing::run(config, clock_file, Shutdown::from_signals()).await?;
    Ok(())
}
