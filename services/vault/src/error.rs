//! The vault's one error type. Messages name tenants, secrets and keys by id — never a value.

use chrono::{DateTime, Utc};

use crate::acl::Op;
use crate::crypto::CryptoError;

/// Everything a vault operation can fail with; mapped to a gRPC status in `grpc` (one place).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No, or an unknown, bearer token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is authenticated but the ACL does not allow this.
    #[error("caller `{caller}` may not {} {what}", op.as_str())]
    PermissionDenied {
        /// Service name.
        caller: String,
        /// Operation tried.
        op: Op,
        /// What it was tried on, e.g. "secrets of kind `api_credentials`".
        what: String,
    },
    /// Malformed input; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such secret (or it was revoked, taken or expired).
    #[error("{0}")]
    NotFound(String),
    /// The tenant's keys were destroyed.
    #[error(
        "tenant {tenant} was crypto-shredded at {at}; its secrets can no longer be read or stored"
    )]
    Shredded {
        /// The tenant.
        tenant: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A put or move names a stored secret of another kind. A secret's kind never changes: the
    /// ACL decided who may read it by that kind when it was first stored.
    #[error(
        "secret {tenant}/{name} is of kind `{stored}`; it cannot be replaced by a secret of kind `{requested}` (revoke it and use another name)"
    )]
    KindMismatch {
        /// The tenant.
        tenant: String,
        /// The secret name.
        name: String,
        /// The stored kind.
        stored: String,
        /// The kind the call gave.
        requested: String,
    },
    /// AEAD authentication failed: the stored row was changed, swapped or corrupted.
    #[error(
        "secret {tenant}/{name} failed its integrity check; it may have been tampered with — restore from backup or re-issue it"
    )]
    Integrity {
        /// The tenant.
        tenant: String,
        /// The secret name (or `one-time/<id>`).
        name: String,
    },
    /// The secret's data key is wrapped by a KEK this instance does not have.
    #[error("secret {tenant}/{name}: {source}")]
    KeyUnavailable {
        /// The tenant.
        tenant: String,
        /// The secret name.
        name: String,
        /// Which KEK is missing.
        source: CryptoError,
    },
    /// PostgreSQL failed.
    #[error("vault database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The event could not be appended (the secret change itself is committed).
    #[error("the change was stored but its event could not be published: {0}")]
    Events(String),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl VaultError {
    /// Maps a crypto failure on secret `tenant/name` to the error a caller can act on.
    pub fn from_crypto(tenant: &str, name: &str, err: CryptoError) -> Self {
        match err {
            CryptoError::UnknownKek(_) => VaultError::KeyUnavailable {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
                source: err,
            },
            CryptoError::Integrity | CryptoError::KeyIntegrity => VaultError::Integrity {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
            },
            CryptoError::Seal => VaultError::Unexpected(anyhow::Error::new(err)),
        }
    }

    /// The audit outcome this error records.
    pub fn outcome(&self) -> &'static str {
        match self {
            VaultError::Unauthenticated(_) => "unauthenticated",
            VaultError::PermissionDenied { .. } => "denied",
            VaultError::NotFound(_) => "not_found",
            _ => "error",
        }
    }
}

impl From<crate::names::NameError> for VaultError {
    fn from(e: crate::names::NameError) -> Self {
        VaultError::InvalidArgument(e.0)
    }
}
