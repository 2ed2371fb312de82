//! Operator authentication for the operator gRPC APIs (TenantAdmin, TenantDirectory,
//! ProjectionAdmin).
//!
//! Each operator has a name, a role and a token; the services keep only the token's SHA-256
//! (so the operators file is not itself a secret) and compare digests in constant time. The
//! name an audit trail records is the one bound to the token, never one the caller claims.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read the tenant directory.
    Reader,
    /// Everything: tenant commands, rebuilds, and reading.
    Admin,
}

impl Role {
    /// Whether this role includes `needed`.
    pub fn covers(self, needed: Role) -> bool {
        self >= needed
    }

    /// `reader` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }
}

/// The authenticated operator of a call, put in the request's extensions by
/// [`OperatorAuth::interceptor`]; handlers read it with [`operator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The name the operators file gives this token.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// A service acting on its own (billing suspending for non-payment) rather than a person;
    /// lifecycle events record it as such.
    pub service: bool,
}

/// The operator a request was authenticated as (set by the interceptor).
pub fn operator<T>(request: &Request<T>) -> Option<&Operator> {
    request.extensions().get::<Operator>()
}

/// Errors reading the operators configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file cannot be read.
    #[error("cannot read the operators file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not the expected TOML.
    #[error("the operators configuration is not valid: {0}")]
    Parse(String),
    /// A bad entry.
    #[error("operator `{name}`: {reason}")]
    Entry {
        /// The operator.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorsFile {
    #[serde(default)]
    operators: BTreeMap<String, OperatorEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorEntry {
    token_sha256: String,
    role: Role,
    #[serde(default)]
    service: bool,
}

/// Where the operators come from: `--operators-file` (TOML) or `TENANTRY_OPERATORS` (the same
/// TOML inline). Neither holds a token, only SHA-256 digests:
///
/// ```toml
/// [operators.alice]
/// token_sha256 = "<64 hex>"   # sha256sum of alice's token
/// role = "admin"              # or "reader"
///
/// [operators.billing]            # a service, recorded as such on the events it asks for
/// token_sha256 = "<64 hex>"
/// role = "admin"
/// service = true
/// ```
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OperatorArgs {
    /// TOML file naming each operator, its role and its token's SHA-256.
    #[arg(
        id = "operators-file",
        long = "operators-file",
        env = "TENANTRY_OPERATORS_FILE"
    )]
    pub operators_file: Option<PathBuf>,
}

impl OperatorArgs {
    /// Loads the operators: the file if given, else `TENANTRY_OPERATORS`, else none (every
    /// operator call is then refused).
    pub fn load(&self) -> Result<OperatorAuth, AuthError> {
        match &self.operators_file {
            Some(path) => OperatorAuth::from_file(path),
            None => match std::env::var("TENANTRY_OPERATORS") {
                Ok(toml) if !toml.trim().is_empty() => OperatorAuth::from_toml(&toml),
                _ => Ok(OperatorAuth::default()),
            },
        }
    }
}

/// The configured operators, by token digest.
#[derive(Clone, Default)]
pub struct OperatorAuth {
    operators: Arc<Vec<([u8; 32], Operator)>>,
}

impl std::fmt::Debug for OperatorAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorAuth")
            .field(
                "operators",
                &self
                    .operators
                    .iter()
                    .map(|(_, o)| &o.name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// An operator name: 1–64 of `a-z A-Z 0-9 . _ @ -` (it goes into events and log lines).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// SHA-256 of a token, lower-case hex (what an operators file holds).
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl OperatorAuth {
    /// Reads an operators file.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses the operators TOML.
    pub fn from_toml(text: &str) -> Result<Self, AuthError> {
        let file: OperatorsFile =
            toml::from_str(text).map_err(|e| AuthError::Parse(e.to_string()))?;
        let mut operators = Vec::new();
        for (name, entry) in file.operators {
            if !valid_name(&name) {
                return Err(AuthError::Entry {
                    name,
                    reason: "names are 1–64 of A-Z a-z 0-9 . _ @ -".into(),
                });
            }
            let digest =
                parse_hex32(&entry.token_sha256.to_ascii_lowercase()).ok_or_else(|| {
                    AuthError::Entry {
                        name: name.clone(),
                        reason: "token_sha256 must be 64 hex characters (sha256sum of the token)"
                            .into(),
                    }
                })?;
            if operators.iter().any(|(d, _)| *d == digest) {
                return Err(AuthError::Entry {
                    name,
                    reason: "shares its token with another operator; give each their own".into(),
                });
            }
            operators.push((
                digest,
                Operator {
                    name,
                    role: entry.role,
                    service: entry.service,
                },
            ));
        }
        Ok(Self {
            operators: Arc::new(operators),
        })
    }

    /// Operators given with their tokens (tests, `tenantry dev`). Empty tokens are skipped.
    pub fn from_tokens(entries: &[(&str, Role, &SecretString)]) -> Self {
        Self {
            operators: Arc::new(
                entries
                    .iter()
                    .filter(|(_, _, t)| !t.expose_secret().is_empty())
                    .map(|(name, role, token)| {
                        (
                            Sha256::digest(token.expose_secret().as_bytes()).into(),
                            Operator {
                                name: (*name).to_owned(),
                                role: *role,
                                service: false,
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// Whether no operator is configured.
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }

    /// The operator whose token `request` carries.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Option<Operator> {
        let presented = Sha256::digest(bearer_token(request)?.as_bytes());
        // Compares against every entry so the time taken does not say which one matched.
        let mut found = None;
        for (digest, operator) in self.operators.iter() {
            if bool::from(digest.ct_eq(presented.as_slice())) {
                found = Some(operator.clone());
            }
        }
        found
    }

    /// A tonic interceptor admitting operators whose role covers `needed`; the [`Operator`]
    /// goes into the request's extensions.
    pub fn interceptor(
        &self,
        needed: Role,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static
    {
        let auth = self.clone();
        move |mut request: Request<()>| {
            let Some(operator) = auth.authenticate(&request) else {
                return Err(Status::unauthenticated(
                    "a valid operator token is required: send `authorization: Bearer <token>` \
                     (tenantctl reads TENANTRY_ADMIN_TOKEN or --admin-token-file)",
                ));
            };
            if !operator.role.covers(needed) {
                return Err(Status::permission_denied(format!(
                    "operator `{}` has role `{}`; this API needs `{}`",
                    operator.name,
                    operator.role.as_str(),
                    needed.as_str()
                )));
            }
            request.extensions_mut().insert(operator);
            Ok(request)
        }
    }
}

/// The token presented in `authorization`, if it is a bearer token (the scheme is
/// case-insensitive, RFC 7235).
pub fn bearer_token<T>(request: &Request<T>) -> Option<&str> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> Request<()> {
        let mut r = Request::new(());
        r.metadata_mut()
            .insert("authorization", value.parse().unwrap());
        r
    }

    #[test]
    fn operators_are_named_by_their_token_and_roles_gate_apis() {
        let toml = format!(
            "[operators.alice]\ntoken_sha256 = \"{}\"\nrole = \"admin\"\n\
             [operators.bob]\ntoken_sha256 = \"{}\"\nrole = \"reader\"\n",
            token_sha256("alice-token"),
            token_sha256("bob-token").to_uppercase()
        );
        let auth = OperatorAuth::from_toml(&toml).unwrap();
        assert_eq!(
            auth.authenticate(&with_auth("bearer alice-token"))
                .unwrap()
                .name,
            "alice"
        );
        assert_eq!(
            auth.authenticate(&with_auth("BEARER  bob-token "))
                .unwrap()
                .role,
            Role::Reader
        );
        assert!(auth.authenticate(&with_auth("Basic alice-token")).is_none());
        assert!(auth.authenticate(&with_auth("Bearer ")).is_none());
        assert!(auth.authenticate(&Request::new(())).is_none());

        let mut admin_only = auth.interceptor(Role::Admin);
        let r = admin_only(with_auth("Bearer alice-token")).unwrap();
        assert_eq!(operator(&r).unwrap().name, "alice");
        let err = admin_only(with_auth("Bearer bob-token")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        let err = admin_only(with_auth("Bearer nope")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(!err.message().contains("nope"));
        let mut readers = auth.interceptor(Role::Reader);
        assert!(readers(with_auth("Bearer alice-token")).is_ok());
        assert!(readers(with_auth("Bearer bob-token")).is_ok());
    }

    #[test]
    fn bad_operator_files_say_what_is_wrong() {
        let err = OperatorAuth::from_toml("[operators.x]\ntoken_sha256 = \"ab\"\nrole = \"admin\"")
            .unwrap_err();
        assert!(err.to_string().contains("64 hex"), "{err}");
        let err = OperatorAuth::from_toml(&format!(
            "[operators.x]\ntoken_sha256 = \"{}\"\nrole = \"root\"",
            token_sha256("t")
        ))
        .unwrap_err();
        assert!(matches!(err, AuthError::Parse(_)), "{err}");
        let same = token_sha256("t");
        let err = OperatorAuth::from_toml(&format!(
            "[operators.a]\ntoken_sha256 = \"{same}\"\nrole = \"admin\"\n\
             [operators.b]\ntoken_sha256 = \"{same}\"\nrole = \"reader\""
        ))
        .unwrap_err();
        assert!(err.to_string().contains("another operator"), "{err}");
        let err = OperatorAuth::from_toml(&format!(
            "[operators.\"a b\"]\ntoken_sha256 = \"{same}\"\nrole = \"admin\""
        ))
        .unwrap_err();
        assert!(err.to_string().contains("names are"), "{err}");
    }
}
