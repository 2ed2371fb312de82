//! `tenantry`: every Tenantry service in one binary. See `tenantry --help`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tenantry::main(tenantry::Cli::parse()).await
}
