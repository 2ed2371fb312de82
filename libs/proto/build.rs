//! Compiles proto/ with protox (pure Rust, no system protoc) and generates tonic code.

use std::path::PathBuf;

/// Messages whose generated `Debug` would print a secret.
const REDACTED: [&str; 3] = [
    "tenantry.v1.SignupRequest",
    "tenantry.v1.SignupResponse",
    "tenantry.v1.OpenSiteResponse",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "events",
        "tenant",
        "signup",
        "directory",
        "vault",
        "billing",
        "handoff",
    ]
    .map(|f| root.join(format!("tenantry/v1/{f}.proto")));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("tenantry_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    tonic_prost_build::configure()
        // Their Debug is written by hand (src/redacted.rs): they carry a password, a handoff
        // token or a login link.
        .skip_debug(REDACTED)
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
