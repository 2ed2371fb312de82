//! What every Tenantry service shares: command-line/env configuration pieces, telemetry
//! (tracing, JSON logs, OTLP traces), the admin HTTP server (`/healthz`, `/readyz`,
//! `/metrics`) and graceful shutdown.

pub mod admin;
pub mod args;
pub mod auth;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;

pub use admin::{AdminServer, Readiness, ReadinessPart};
pub use args::{AdminArgs, DatabaseArgs, NatsArgs, TelemetryArgs};
pub use auth::TokenAuth;
pub use metrics::Metrics;
pub use shutdown::Shutdown;
