//! What every Tenantry service shares: command-line/env configuration pieces, telemetry
//! (tracing, JSON logs, OTLP traces), the admin HTTP server (`/healthz`, `/readyz`,
//! `/metrics`) and graceful shutdown.

pub mod admin;
pub mod args;
pub mod auth;
pub mod consumers;
#[cfg(feature = "devca")]
pub mod devca;
pub mod gate;
pub mod grpc;
pub mod metrics;
pub mod observe;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use admin::{Admin, AdminHandle, AdminServer, Readiness, ReadinessPart};
pub use args::{AdminArgs, DatabaseArgs, NatsArgs, NatsConfigError, TelemetryArgs};
pub use auth::{Operator, OperatorArgs, OperatorAuth, Role};
pub use gate::Gate;
pub use grpc::GrpcServerArgs;
pub use metrics::Metrics;
pub use shutdown::Shutdown;
pub use tls::{ClientTls, ClientTlsArgs, ServerTlsArgs, TlsError};
