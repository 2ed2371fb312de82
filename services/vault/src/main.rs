//! `vault`: the credential vault service. Flags → config → telemetry → serve until SIGINT/SIGTERM.

use clap::Parser;
use secrecy::ExposeSecret;
use svc::{Shutdown, TelemetryArgs};
use vault::cli::VaultArgs;

#[derive(Parser)]
#[command(name = "vault", about = "Tenantry credential vault")]
struct Cli {
    #[command(flatten)]
    vault: VaultArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    dump_config: bool,
    /// Print a new random key-encryption key (base64, 32 bytes) for the key ring and exit.
    #[arg(long)]
    generate_key: bool,
    /// Print a new random caller token and its sha256 (for the ACL) and exit.
    #[arg(long)]
    generate_token: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.generate_key {
        println!("{}", vault::crypto::generate_kek_base64().expose_secret());
        return Ok(());
    }
    if cli.generate_token {
        let token = vault::acl::generate_token();
        println!(
            "token        = {}\ntoken_sha256 = {}",
            token.expose_secret(),
            vault::acl::token_sha256(&token)
        );
        return Ok(());
    }
    let dev_keyring = cli.vault.dev_keyring
        && cli.vault.keyring_file.is_none()
        && std::env::var_os(vault::cli::KEYRING_ENV).is_none();
    // Config errors are printed before tracing exists, so no log filter can swallow them.
    let config = match cli.vault.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vault: {e}");
            std::process::exit(2);
        }
    };
    if cli.dump_config {
        println!("{config:#?}");
        return Ok(());
    }
    let _telemetry = svc::telemetry::init("vault", &cli.telemetry)?;
    if dev_keyring {
        tracing::warn!(
            "USING A THROW-AWAY DEV KEY RING: every secret stored now is unreadable after a restart. Never use --dev-keyring in production."
        );
    }
    let app = vault::Application::build(config).await?;
    tracing::info!(grpc = %app.local_addr(), admin = ?app.admin_addr(), "vault listening");
    app.run_until_stopped(Shutdown::from_signals().into_future())
        .await?;
    Ok(())
}
