//! `tenantctl`: parse, run, exit with a code that means something (see `--help`).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // clap exits with 2 on usage errors by itself.
    let cli = tenantctl::Cli::parse();
    let json = cli.global.json;
    let mut stdout = std::io::stdout();
    match tenantctl::run(cli, &mut stdout).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                let body = serde_json::json!({
                    "error": { "kind": e.kind.as_str(), "code": e.kind.code(), "message": e.message }
                });
                eprintln!("{body}");
            } else {
                eprintln!("tenantctl: {e}");
            }
            e.exit_code()
        }
    }
}
