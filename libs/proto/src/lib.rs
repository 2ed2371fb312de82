//! Generated Rust for the `tenantry.v1` contract in `proto/`.
//!
//! Everything Tenantry services exchange — events on JetStream and gRPC APIs — is defined
//! there; this crate only compiles it and adds small conveniences.

#![allow(clippy::all, missing_docs)]

/// The `tenantry.v1` package.
pub mod v1 {
    tonic::include_proto!("tenantry.v1");
}

/// Encoded `FileDescriptorSet` of every Tenantry proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tenantry_descriptor.bin"));

mod event_type;
mod redacted;
pub use event_type::EventContext;

/// gRPC metadata keys that are part of the contract between Tenantry services.
pub mod metadata {
    /// The caller's correlation id (the signup's id, kept across a saga), written to audit rows.
    pub const CORRELATION_ID: &str = "x-correlation-id";
}
