//! What every tenant's objects refer to, looked up once at start-up: the flows, the scope
//! mappings, the signing key and the version. A missing one stops the service with an error
//! that names it and says where to create it.

use crate::client::Authentik;
use crate::error::AuthentikError;
use crate::version::Version;

/// The names looked up (defaults are Authentik's blueprint defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryNames {
    /// Authorization flow slug.
    pub authorization_flow: String,
    /// Provider invalidation flow slug (not the user-logout `default-invalidation-flow`).
    pub invalidation_flow: String,
    /// `managed` names of the scope mappings (openid, email, profile): without email, Frappe
    /// rejects the login.
    pub scope_mappings: Vec<String>,
    /// Certificate key pair that signs tokens (RS256); `None` signs with the client secret.
    pub signing_key: Option<String>,
}

impl Default for DirectoryNames {
    fn default() -> Self {
        Self {
            authorization_flow: "default-provider-authorization-implicit-consent".into(),
            invalidation_flow: "default-provider-invalidation-flow".into(),
            scope_mappings: ["openid", "email", "profile"]
                .iter()
                .map(|s| format!("goauthentik.io/providers/oauth2/scope-{s}"))
                .collect(),
            signing_key: Some("authentik Self-signed Certificate".into()),
        }
    }
}

/// The looked-up ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    /// The server's version.
    pub version: Version,
    /// Authorization flow uuid.
    pub authorization_flow: String,
    /// Invalidation flow uuid.
    pub invalidation_flow: String,
    /// Scope mapping uuids, in the order of the names.
    pub scope_mappings: Vec<String>,
    /// Signing key uuid, if one was asked for.
    pub signing_key: Option<String>,
}

impl Directory {
    /// Looks everything up; the error names what the Authentik instance lacks.
    pub async fn load(client: &Authentik, names: &DirectoryNames) -> Result<Self, AuthentikError> {
        let version = client.version().await?;
        if version < Version::MINIMUM {
            return Err(AuthentikError::Setup(format!(
                "Authentik {version} is too old: Tenantry needs {} or later (list-shaped redirect_uris and a provider invalidation flow); upgrade Authentik",
                Version::MINIMUM
            )));
        }
        let flow = |slug: String, what: &'static str| async move {
            client
                .flow_pks(&slug)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    AuthentikError::Setup(format!(
                        "Authentik has no flow with slug {slug:?} ({what}); create it (Flows and Stages → Flows) or name another with --authentik-{}-flow",
                        if what.starts_with("auth") { "authorization" } else { "invalidation" }
                    ))
                })
        };
        let authorization_flow = flow(names.authorization_flow.clone(), "authorization").await?;
        let invalidation_flow = flow(names.invalidation_flow.clone(), "invalidation").await?;
        let wanted: Vec<&str> = names.scope_mappings.iter().map(String::as_str).collect();
        let found = client.scope_mappings(&wanted).await?;
        let mut scope_mappings = Vec::with_capacity(wanted.len());
        for name in &wanted {
            match found.iter().find(|(m, _)| m == name) {
                Some((_, pk)) => scope_mappings.push(pk.clone()),
                None => {
                    return Err(AuthentikError::Setup(format!(
                        "Authentik has no scope mapping managed as {name:?}; restore Authentik's default OAuth mappings (System → Blueprints → 'System - OAuth2 Provider - Scopes')"
                    )));
                }
            }
        }
        let signing_key = match &names.signing_key {
            None => None,
            Some(name) => Some(client.keypair_pks(name).await?.into_iter().next().ok_or_else(
                || {
                    AuthentikError::Setup(format!(
                        "Authentik has no certificate key pair named {name:?} with a private key; create one (System → Certificates) or pass --authentik-signing-key none"
                    ))
                },
            )?),
        };
        Ok(Self {
            version,
            authorization_flow,
            invalidation_flow,
            scope_mappings,
            signing_key,
        })
    }
}
