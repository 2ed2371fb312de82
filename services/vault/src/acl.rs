//! Caller authentication (per-service bearer tokens, stored as SHA-256 hashes) and the ACL that
//! maps each service to the (secret kind, operation) pairs it may use.

use std::collections::BTreeMap;

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// An operation of the `Vault` API, as the ACL names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Store a secret (new version).
    Put,
    /// Read a secret.
    Get,
    /// Re-wrap every data key under the active KEK.
    Rotate,
    /// Delete a secret.
    Revoke,
    /// Store a one-time secret.
    PutOneTime,
    /// Take (read and delete) a one-time secret.
    TakeOneTime,
    /// Move a one-time secret into a named secret of its tenant (same kind).
    MoveOneTime,
    /// Crypto-shred a tenant.
    Shred,
    /// Query the audit log.
    Audit,
}

impl Op {
    /// The name used in the ACL and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Rotate => "rotate",
            Op::Revoke => "revoke",
            Op::PutOneTime => "put_one_time",
            Op::TakeOneTime => "take_one_time",
            Op::MoveOneTime => "move_one_time",
            Op::Shred => "shred",
            Op::Audit => "audit",
        }
    }
}

/// Any kind: used for operations that are not about one secret (rotate, shred, audit).
pub const ANY_KIND: &str = "*";

/// One ACL entry: these operations on secrets of this kind (`*` = any kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Secret kind, or `*`.
    pub kind: String,
    /// Allowed operations.
    pub ops: Vec<Op>,
}

impl Grant {
    fn new(kind: &str, ops: &[Op]) -> Self {
        Self {
            kind: kind.to_owned(),
            ops: ops.to_vec(),
        }
    }
}

/// One caller's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    /// Lower-case hex SHA-256 of the caller's bearer token. A caller without one cannot
    /// authenticate. A hash is not a secret, but is still not worth printing.
    pub token_sha256: Option<String>,
    /// The caller's grants; `None` keeps the default policy's grants for a known service name.
    pub allow: Option<Vec<Grant>>,
}

/// The `[callers.<service>]` tables of the ACL file (or `TENANTRY_VAULT_CALLERS`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// Service name → configuration.
    #[serde(default)]
    pub callers: BTreeMap<String, CallerConfig>,
}

/// Errors in the ACL configuration.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// Not valid TOML of the expected shape.
    #[error("ACL config is not valid TOML: {0}")]
    Parse(String),
    /// A token hash that is not 64 hex characters.
    #[error("caller `{0}`: token_sha256 must be 64 hex characters (sha256 of the token)")]
    BadHash(String),
    /// A kind that is neither `*` nor a valid kind name.
    #[error("caller `{caller}`: kind `{kind}` must be `*` or a-z 0-9 _")]
    BadKind {
        /// The caller.
        caller: String,
        /// The kind.
        kind: String,
    },
}

impl AclConfig {
    /// The documented default policy (no tokens: each caller is disabled until given one).
    ///
    /// | service | grants |
    /// |---|---|
    /// | signup | put_one_time(owner_password, sso_owner_password) |
    /// | provisioner | put/get/revoke(site_admin_password, api_credentials, db_root_password), take_one_time/move_one_time/get/revoke(owner_password) |
    /// | identity | put/get/revoke(oauth_client_secret), take_one_time/move_one_time/get/revoke(sso_owner_password), get(api_credentials) |
    /// | billing | get(api_credentials) |
    /// | operator | audit, rotate, shred |
    /// | projection | nothing |
    pub fn default_policy() -> Self {
        use Op::*;
        let mut callers = BTreeMap::new();
        let mut add = |name: &str, allow: Vec<Grant>| {
            callers.insert(
                name.to_owned(),
                CallerConfig {
                    token_sha256: None,
                    allow: Some(allow),
                },
            );
        };
        // Two copies of the owner's password, one per consumer (the site's owner user and the
        // Authentik user): each consumer can take only its own, and each copy is gone once used.
        add(
            "signup",
            vec![
                Grant::new("owner_password", &[PutOneTime]),
                Grant::new("sso_owner_password", &[PutOneTime]),
                // The signup page's handoff: a provisioner makes the key, the gateway hands it
                // to the browser that signed up.
                Grant::new("login_key", &[TakeOneTime]),
            ],
        );
        add(
            "provisioner",
            vec![
                Grant::new("site_admin_password", &[Put, Get, Revoke]),
                Grant::new("api_credentials", &[Put, Get, Revoke]),
                Grant::new("db_root_password", &[Put, Get, Revoke]),
                // The owner's password: moved out of its one-time secret into a named one the
                // moment it is needed, read until the owner exists, then revoked.
                Grant::new("owner_password", &[TakeOneTime, MoveOneTime, Get, Revoke]),
                // A one-time login key for the owner's first visit (signup handoff).
                Grant::new("login_key", &[PutOneTime]),
                // Deleting a tenant ends with destroying all its keys, whoever stored them
                // (identity's OAuth secret too), once the site's retention has passed.
                Grant::new(ANY_KIND, &[Shred]),
            ],
        );
        add(
            "identity",
            vec![
                Grant::new("oauth_client_secret", &[Put, Get, Revoke]),
                Grant::new(
                    "sso_owner_password",
                    &[TakeOneTime, MoveOneTime, Get, Revoke],
                ),
                // The site's API key, to write its Social Login Key.
                Grant::new("api_credentials", &[Get]),
            ],
        );
        // The site's API key, to count the tenant's users (read only).
        add("billing", vec![Grant::new("api_credentials", &[Get])]);
        add(
            "operator",
            vec![Grant::new(ANY_KIND, &[Audit, Rotate, Shred])],
        );
        add("projection", vec![]);
        Self { callers }
    }

    /// Parses the TOML form and lays it over the default policy.
    pub fn parse_toml(text: &str) -> Result<Self, AclError> {
        let parsed: AclConfig =
            toml::from_str(text).map_err(|e| AclError::Parse(e.message().to_owned()))?;
        Ok(Self::default_policy().merged(parsed))
    }

    /// Lays `other` over `self`: a caller's token and (when given) grants replace the existing ones.
    pub fn merged(mut self, other: AclConfig) -> Self {
        for (name, cfg) in other.callers {
            let entry = self.callers.entry(name).or_default();
            if cfg.token_sha256.is_some() {
                entry.token_sha256 = cfg.token_sha256;
            }
            if cfg.allow.is_some() {
                entry.allow = cfg.allow;
            }
        }
        self
    }

    /// Sets a caller's token (hashing it), keeping its grants.
    pub fn with_token(mut self, caller: &str, token: &SecretString) -> Self {
        self.callers
            .entry(caller.to_owned())
            .or_default()
            .token_sha256 = Some(token_sha256(token));
        self
    }

    /// Sets a caller's grants.
    pub fn with_grants(mut self, caller: &str, allow: Vec<Grant>) -> Self {
        self.callers.entry(caller.to_owned()).or_default().allow = Some(allow);
        self
    }
}

/// Lower-case hex SHA-256 of a token: the form the ACL stores.
pub fn token_sha256(token: &SecretString) -> String {
    hex::encode(Sha256::digest(token.expose_secret().as_bytes()))
}

/// A new random bearer token (256 bits, base64url).
pub fn generate_token() -> SecretString {
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(raw.as_mut());
    SecretString::from(URL_SAFE_NO_PAD.encode(raw.as_ref()))
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Service name, e.g. `provisioner`.
    pub name: String,
    grants: Vec<Grant>,
}

impl Caller {
    /// Whether the caller may run `op` on a secret of `kind`.
    pub fn may(&self, op: Op, kind: &str) -> bool {
        self.grants
            .iter()
            .any(|g| (g.kind == ANY_KIND || g.kind == kind) && g.ops.contains(&op))
    }

    /// Whether the caller may run `op` on at least one kind (checked before a secret is loaded,
    /// so a caller with no such right learns nothing about which secrets exist).
    pub fn may_any(&self, op: Op) -> bool {
        self.grants.iter().any(|g| g.ops.contains(&op))
    }
}

/// The compiled ACL: token hashes and grants.
#[derive(Clone)]
pub struct Acl {
    callers: Vec<(String, Option<[u8; 32]>, Vec<Grant>)>,
}

impl std::fmt::Debug for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (name, hash, grants) in &self.callers {
            m.entry(
                name,
                &(
                    if hash.is_some() {
                        "token set"
                    } else {
                        "no token"
                    },
                    grants,
                ),
            );
        }
        m.finish()
    }
}

impl Acl {
    /// Compiles and checks a config.
    pub fn from_config(cfg: &AclConfig) -> Result<Self, AclError> {
        let mut callers = Vec::new();
        for (name, c) in &cfg.callers {
            let hash = match &c.token_sha256 {
                None => None,
                Some(h) => {
                    let bytes =
                        hex::decode(h.trim()).map_err(|_| AclError::BadHash(name.clone()))?;
                    Some(
                        <[u8; 32]>::try_from(bytes.as_slice())
                            .map_err(|_| AclError::BadHash(name.clone()))?,
                    )
                }
            };
            let grants = c.allow.clone().unwrap_or_default();
            for g in &grants {
                if g.kind != ANY_KIND && crate::names::SecretKind::parse(&g.kind).is_err() {
                    return Err(AclError::BadKind {
                        caller: name.clone(),
                        kind: g.kind.clone(),
                    });
                }
            }
            callers.push((name.clone(), hash, grants));
        }
        Ok(Self { callers })
    }

    /// The caller whose token this is, if any. Compares against every caller's hash in constant
    /// time and without stopping early, so timing tells nothing about which caller nearly matched.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, hash, grants) in &self.callers {
            if let Some(hash) = hash
                && bool::from(hash.ct_eq(&presented))
            {
                found = Some(Caller {
                    name: name.clone(),
                    grants: grants.clone(),
                });
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticates_by_token_and_applies_default_grants() {
        let token = generate_token();
        let acl = Acl::from_config(&AclConfig::default_policy().with_token("provisioner", &token))
            .unwrap();
        let caller = acl.authenticate(token.expose_secret()).unwrap();
        assert_eq!(caller.name, "provisioner");
        assert!(caller.may(Op::Get, "api_credentials"));
        assert!(caller.may(Op::TakeOneTime, "owner_password"));
        assert!(caller.may(Op::MoveOneTime, "owner_password"));
        assert!(!caller.may(Op::Put, "owner_password"));
        assert!(!caller.may(Op::MoveOneTime, "api_credentials"));
        // Deletion ends with a shred of every kind.
        assert!(caller.may(Op::Shred, ANY_KIND));
        assert!(!caller.may(Op::Rotate, ANY_KIND));
        assert!(acl.authenticate("wrong").is_none());
        assert!(acl.authenticate("").is_none());
    }

    #[test]
    fn file_overrides_tokens_and_grants() {
        let token = SecretString::from("t0k3n");
        let text = format!(
            "[callers.provisioner]\ntoken_sha256 = \"{}\"\n[callers.billing]\ntoken_sha256 = \"{}\"\nallow = [{{ kind = \"payment_key\", ops = [\"get\"] }}]\n",
            token_sha256(&token),
            token_sha256(&SecretString::from("other"))
        );
        let cfg = AclConfig::parse_toml(&text).unwrap();
        let acl = Acl::from_config(&cfg).unwrap();
        assert!(
            acl.authenticate("t0k3n")
                .unwrap()
                .may(Op::Put, "db_root_password")
        );
        let billing = acl.authenticate("other").unwrap();
        assert!(billing.may(Op::Get, "payment_key") && !billing.may(Op::Put, "payment_key"));
        assert!(
            AclConfig::parse_toml("[callers.x]\nallow = [{ kind = \"k\", ops = [\"fly\"] }]")
                .is_err()
        );
        let bad = AclConfig::default().with_grants("x", vec![Grant::new("Bad-Kind", &[Op::Get])]);
        assert!(Acl::from_config(&bad).is_err());
    }
}
