//! What every gRPC server of Tenantry shares: TLS, a request timeout and concurrency limits,
//! reflection of only what a port serves ([`reflection()`]) and clear answers to requests tonic
//! cannot decode ([`RequestErrorsLayer`]).

mod errors;
mod reflection;

pub use errors::{RequestErrors, RequestErrorsLayer};
pub use reflection::{
    HEALTH_SERVICE, REFLECTION_V1, REFLECTION_V1ALPHA, Reflection, ReflectionError, reflection,
};
/// The gRPC health service (`grpc.health.v1.Health`) every port serves, for a service crate
/// that does not depend on tonic-health itself.
pub use tonic_health::server::{HealthReporter, health_reporter};

use std::time::Duration;

use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::tls::{ServerTlsArgs, TlsError};

/// Flags of a gRPC listener.
#[derive(Debug, Clone, clap::Args)]
pub struct GrpcServerArgs {
    /// Certificate, key and client CA.
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    /// Requests handled at once across all connections; more wait for a slot.
    #[arg(
        id = "grpc-max-concurrent",
        long = "grpc-max-concurrent",
        env = "TENANTRY_GRPC_MAX_CONCURRENT",
        default_value_t = 256
    )]
    pub max_concurrent: usize,
    /// Requests handled at once on one connection (one client cannot take every slot).
    #[arg(
        id = "grpc-max-per-connection",
        long = "grpc-max-per-connection",
        env = "TENANTRY_GRPC_MAX_PER_CONNECTION",
        default_value_t = 64
    )]
    pub max_per_connection: usize,
    /// Longest a unary call may run (streams are bounded by their own limits), in seconds.
    #[arg(
        id = "grpc-timeout-secs",
        long = "grpc-timeout-secs",
        env = "TENANTRY_GRPC_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub timeout_secs: u64,
}

impl Default for GrpcServerArgs {
    fn default() -> Self {
        Self {
            tls: ServerTlsArgs::default(),
            max_concurrent: 256,
            max_per_connection: 64,
            timeout_secs: 30,
        }
    }
}

impl GrpcServerArgs {
    /// A server builder with TLS (when configured), the timeout and the per-connection limit;
    /// add [`GrpcServerArgs::limit`] as a layer for the global one.
    pub fn builder(&self, name: &str) -> Result<Server, TlsError> {
        let mut server = Server::builder()
            .timeout(Duration::from_secs(self.timeout_secs.max(1)))
            .concurrency_limit_per_connection(self.max_per_connection.max(1))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)));
        if let Some(tls) = self.tls.load()? {
            server = server.tls_config(tls).map_err(|e| TlsError::Invalid {
                endpoint: name.to_owned(),
                reason: e.to_string(),
            })?;
        }
        Ok(server)
    }

    /// The limit on requests in flight across every connection of one listener.
    pub fn limit(&self) -> GlobalConcurrencyLimitLayer {
        GlobalConcurrencyLimitLayer::new(self.max_concurrent.max(1))
    }
}

/// The accepted connections of a gRPC listener, with Nagle's algorithm off. A gRPC answer is
/// several small writes (headers, message, trailers); with Nagle on, the later ones wait for
/// the client's delayed ACK — about 40 ms added to a fraction of calls, which is what the
/// provisioner measured from the vault before this.
pub fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
