//! One binary hosting every Tenantry service — the same library code either way:
//! `tenantry dev` runs them all in one process (with frappe-sim as the bench unless a fleet file
//! names real benches), `tenantry <service>` runs one, and `tenantry demo` signs up a sample
//! tenant through the public gRPC API and shows its progress.

pub mod demo;
pub mod dev;
pub mod dev_secrets;
pub mod probe;
pub mod sim;
pub mod web;

use std::future::IntoFuture as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use svc::{Shutdown, TelemetryArgs};

/// Command line of the `tenantry` binary.
#[derive(Debug, Parser)]
#[command(
    name = "tenantry",
    version,
    about = "Tenantry control plane: every service in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every service in this process, with frappe-sim as the bench (local development, demo).
    Dev(dev::DevArgs),
    /// Sign up a sample tenant against a running stack and show its progress.
    Demo(demo::DemoArgs),
    /// The credential vault.
    Vault(VaultCmd),
    /// The public signup gateway.
    Signup(SignupCmd),
    /// The provisioner (process manager driving the benches).
    Provisioner(ProvisionerCmd),
    /// The tenant read model and TenantDirectory API.
    Projection(ProjectionCmd),
    /// Single sign-on through Authentik for every tenant.
    Identity(IdentityCmd),
    /// Subscriptions, invoices and dunning.
    Billing(BillingCmd),
    /// Ask a service's admin port (e.g. `http://127.0.0.1:9464/readyz`): exit 0 on 2xx — the
    /// container health check, with no curl in the image.
    Probe(probe::ProbeArgs),
}

/// `tenantry billing`.
#[derive(Debug, clap::Args)]
pub struct BillingCmd {
    #[command(flatten)]
    pub billing: billing::BillingArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// `tenantry identity`.
#[derive(Debug, clap::Args)]
pub struct IdentityCmd {
    #[command(flatten)]
    pub identity: identity::IdentityArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// `tenantry vault`.
#[derive(Debug, clap::Args)]
pub struct VaultCmd {
    #[command(flatten)]
    pub vault: vault::cli::VaultArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// `tenantry signup`.
#[derive(Debug, clap::Args)]
pub struct SignupCmd {
    #[command(flatten)]
    pub signup: signup::Config,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// `tenantry provisioner`.
#[derive(Debug, clap::Args)]
pub struct ProvisionerCmd {
    #[command(flatten)]
    pub provisioner: provisioner::ProvisionerArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// `tenantry projection`.
#[derive(Debug, clap::Args)]
pub struct ProjectionCmd {
    #[command(flatten)]
    pub projection: projection::Config,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Runs the command; the exit code says how it went.
pub async fn main(cli: Cli) -> ExitCode {
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // The whole cause chain, once, at the edge.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo::run(args).await,
        Command::Probe(args) => probe::run(args).await,
        Command::Vault(cmd) => {
            // Config errors are printed before tracing exists, so no filter can hide them.
            let config = cmd.vault.into_config()?;
            let _guard = svc::telemetry::init("vault", &cmd.telemetry)?;
            vault::run(config, Shutdown::from_signals().into_future()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Signup(cmd) => {
            let _guard = svc::telemetry::init("signup", &cmd.telemetry)?;
            signup::run(cmd.signup, Shutdown::from_signals()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Provisioner(cmd) => {
            let config = cmd.provisioner.into_config()?;
            let _guard = svc::telemetry::init("provisioner", &cmd.telemetry)?;
            provisioner::run(config, Shutdown::from_signals()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Billing(cmd) => {
            let clock_file = cmd.billing.clock_file.clone();
            let config = cmd.billing.into_config()?;
            let _guard = svc::telemetry::init("billing", &cmd.telemetry)?;
            billing::run(config, clock_file, Shutdown::from_signals()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Identity(cmd) => {
            let config = cmd.identity.into_config()?;
            let _guard = svc::telemetry::init("identity", &cmd.telemetry)?;
            identity::run(config, Shutdown::from_signals()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Projection(cmd) => {
            let _guard = svc::telemetry::init("projection", &cmd.telemetry)?;
            projection::run(cmd.projection, Shutdown::from_signals().into_future()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Flattened flag groups (TLS, NATS, operators) must not reuse an argument id; clap only
    /// notices at parse time, so a clash would kill a service at start.
    #[test]
    fn every_subcommand_has_unique_flags() {
        super::Cli::command().debug_assert();
    }
}
