//! frappe-sim: a `bench`-compatible executable and Frappe REST subset for tests.
//!
//! Run it like bench, from a bench directory: `frappe-sim new-site …`, `frappe-sim --site S
//! install-app …`, `frappe-sim serve --port N`. See the README section on frappe-sim for the knobs.

mod archive;
mod cli;
mod jobs;
mod pylit;
mod server;
mod sim;
mod social_login_key;
mod store;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("frappe-sim: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(cli::main(argv));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
