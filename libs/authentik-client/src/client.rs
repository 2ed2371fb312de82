//! The HTTP side: bearer auth, status mapping, pagination, and one method per call.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::error::AuthentikError;
use crate::model::{
    Application, Binding, Group, NewApplication, NewBinding, NewGroup, NewProvider, NewUser, Page,
    Provider, SetupUrls, User,
};
use crate::version::Version;

/// Where Authentik is and how to authenticate. `Debug` never prints the token.
#[derive(Debug, Clone)]
pub struct AuthentikConfig {
    /// `https://auth.example` (the API is under `/api/v3/`).
    pub base_url: String,
    /// An API token (intent `api`).
    pub token: SecretString,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Extra CA certificates (PEM) to trust, for an Authentik behind a private CA.
    pub ca_pem: Option<Vec<u8>>,
    /// Page size asked for on list calls (Authentik clamps it to its maximum).
    pub page_size: u32,
}

impl AuthentikConfig {
    /// Defaults for `base_url` and `token`.
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            token,
            timeout: Duration::from_secs(15),
            ca_pem: None,
            page_size: 100,
        }
    }
}

/// A client of one Authentik instance. Cheap to clone.
#[derive(Clone)]
pub struct Authentik {
    http: reqwest::Client,
    api: Url,
    token: SecretString,
    page_size: u32,
}

impl std::fmt::Debug for Authentik {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authentik")
            .field("api", &self.api.as_str())
            .finish_non_exhaustive()
    }
}

/// A list filter: `(name, value)` pairs; a name may repeat (`managed=a&managed=b`).
type Query<'a> = &'a [(&'a str, &'a str)];

impl Authentik {
    /// A client for `config`. Fails only on a malformed URL or CA.
    pub fn new(config: &AuthentikConfig) -> Result<Self, AuthentikError> {
        let mut base = Url::parse(config.base_url.trim_end_matches('/')).map_err(|e| {
            AuthentikError::Setup(format!(
                "Authentik base URL {:?} is not a URL: {e}",
                config.base_url
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(AuthentikError::Setup(format!(
                "Authentik base URL {:?} must be http:// or https://",
                config.base_url
            )));
        }
        let path = format!("{}/api/v3/", base.path().trim_end_matches('/'));
        base.set_path(&path);
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5));
        if let Some(pem) = &config.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| AuthentikError::Setup(format!("Authentik CA bundle: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| AuthentikError::Setup(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            api: base,
            token: config.token.clone(),
            page_size: config.page_size.clamp(1, 100),
        })
    }

    /// The API root, `…/api/v3/`.
    pub fn api_url(&self) -> &str {
        self.api.as_str()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: Query<'_>,
        body: Option<Value>,
    ) -> Result<Option<Value>, AuthentikError> {
        let mut url = self
            .api
            .join(path)
            .map_err(|e| AuthentikError::Unexpected(format!("bad path {path}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(self.token.expose_secret());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let span = tracing::info_span!(
            "authentik",
            otel.name = %format!("authentik {method} {path}"),
            otel.kind = "client",
            http.request.method = %method,
            url.path = %path,
            http.response.status_code = tracing::field::Empty,
        );
        let (status, text) = async {
            let resp = req.send().await.map_err(|e| {
                AuthentikError::Unavailable(format!("{method} {path}: {}", without_url(e)))
            })?;
            let status = resp.status();
            tracing::Span::current().record("http.response.status_code", status.as_u16());
            let text = resp.text().await.map_err(|e| {
                AuthentikError::Unavailable(format!("{method} {path}: {}", without_url(e)))
            })?;
            Ok::<_, AuthentikError>((status, text))
        }
        .instrument(span)
        .await?;
        let parsed = || serde_json::from_str::<Value>(&text).ok();
        match status {
            s if s.is_success() => {
                if text.trim().is_empty() {
                    Ok(None)
                } else {
                    parsed().map(Some).ok_or_else(|| {
                        AuthentikError::Unexpected(format!(
                            "{method} {path}: answer is not JSON ({} bytes)",
                            text.len()
                        ))
                    })
                }
            }
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                Err(AuthentikError::Forbidden(detail(parsed(), status)))
            }
            StatusCode::NOT_FOUND => Err(AuthentikError::NotFound(format!(
                "{method} {path}: {}",
                detail(parsed(), status)
            ))),
            StatusCode::BAD_REQUEST => Err(AuthentikError::Invalid(fields(parsed()))),
            s if s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT =>
            {
                Err(AuthentikError::Unavailable(format!(
                    "{method} {path} answered {s}"
                )))
            }
            s => Err(AuthentikError::Unexpected(format!(
                "{method} {path} answered {s}: {}",
                detail(parsed(), status)
            ))),
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: Query<'_>,
    ) -> Result<T, AuthentikError> {
        let v = self.send(Method::GET, path, query, None).await?;
        decode(path, v.unwrap_or(Value::Null))
    }

    async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, AuthentikError> {
        let body = serde_json::to_value(body)
            .map_err(|e| AuthentikError::Unexpected(format!("encoding {path}: {e}")))?;
        let v = self.send(method, path, &[], Some(body)).await?;
        decode(path, v.unwrap_or(Value::Null))
    }

    /// Every result of a list endpoint, following `pagination.next` until it is 0.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        filters: Query<'_>,
    ) -> Result<Vec<T>, AuthentikError> {
        let mut all = Vec::new();
        let mut page = 1u64;
        let page_size = self.page_size.to_string();
        // A server that keeps answering "next" forever must not hang the service.
        for _ in 0..10_000 {
            let page_text = page.to_string();
            let mut query: Vec<(&str, &str)> = filters.to_vec();
            query.push(("page", &page_text));
            query.push(("page_size", &page_size));
            let p: Page<T> = match self.get_json(path, &query).await {
                Ok(p) => p,
                // The list shrank while we paged: what we have is all there is.
                Err(e) if e.is_not_found() && page > 1 => return Ok(all),
                Err(e) => return Err(e),
            };
            all.extend(p.results);
            if p.pagination.next == 0 || p.pagination.next <= page {
                return Ok(all);
            }
            page = p.pagination.next;
        }
        Err(AuthentikError::Unexpected(format!(
            "{path}: more than 10000 pages"
        )))
    }

    async fn delete(&self, path: &str) -> Result<(), AuthentikError> {
        self.send(Method::DELETE, path, &[], None).await.map(|_| ())
    }

    /// `GET /admin/version/` → `version_current`.
    pub async fn version(&self) -> Result<Version, AuthentikError> {
        let v: Value = self.get_json("admin/version/", &[]).await?;
        let text = v
            .get("version_current")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Version::parse(text).ok_or_else(|| {
            AuthentikError::Unexpected(format!("version_current {text:?} is not a version"))
        })
    }

    // ---------------------------------------------------------------- groups

    /// Groups named exactly `name` (0 or 1).
    pub async fn groups_named(&self, name: &str) -> Result<Vec<Group>, AuthentikError> {
        self.list(
            "core/groups/",
            &[("name", name), ("include_users", "false")],
        )
        .await
    }

    /// Creates a group.
    pub async fn create_group(&self, group: &NewGroup) -> Result<Group, AuthentikError> {
        self.write(Method::POST, "core/groups/", group).await
    }

    /// Deletes a group (its bindings and memberships go with it; its users stay).
    pub async fn delete_group(&self, pk: &str) -> Result<(), AuthentikError> {
        self.delete(&format!("core/groups/{}/", seg(pk)?)).await
    }

    /// Adds a user to a group (repeating it is harmless).
    pub async fn add_user_to_group(&self, group: &str, user: i64) -> Result<(), AuthentikError> {
        self.send(
            Method::POST,
            &format!("core/groups/{}/add_user/", seg(group)?),
            &[],
            Some(json!({ "pk": user })),
        )
        .await
        .map(|_| ())
    }

    // ---------------------------------------------------------------- users

    /// Users with exactly this username (0 or 1).
    pub async fn users_named(&self, username: &str) -> Result<Vec<User>, AuthentikError> {
        self.list("core/users/", &[("username", username)]).await
    }

    /// Users whose attributes contain `attributes` (e.g. `{"tenant_id": "…"}`).
    pub async fn users_with_attributes(
        &self,
        attributes: &Value,
    ) -> Result<Vec<User>, AuthentikError> {
        let filter = attributes.to_string();
        self.list("core/users/", &[("attributes", &filter)]).await
    }

    /// Creates a user (with an unusable password).
    pub async fn create_user(&self, user: &NewUser) -> Result<User, AuthentikError> {
        self.write(Method::POST, "core/users/", user).await
    }

    /// Sets `is_active`.
    pub async fn set_user_active(&self, pk: i64, active: bool) -> Result<User, AuthentikError> {
        self.write(
            Method::PATCH,
            &format!("core/users/{pk}/"),
            &json!({ "is_active": active }),
        )
        .await
    }

    /// Sets a user's password. A password-policy failure is `Invalid` with no fields.
    pub async fn set_password(
        &self,
        pk: i64,
        password: &SecretString,
    ) -> Result<(), AuthentikError> {
        self.send(
            Method::POST,
            &format!("core/users/{pk}/set_password/"),
            &[],
            Some(json!({ "password": password.expose_secret() })),
        )
        .await
        .map(|_| ())
    }

    /// Replaces a user's attributes.
    pub async fn set_user_attributes(
        &self,
        pk: i64,
        attributes: &Value,
    ) -> Result<User, AuthentikError> {
        self.write(
            Method::PATCH,
            &format!("core/users/{pk}/"),
            &json!({ "attributes": attributes }),
        )
        .await
    }

    /// Deletes a user.
    pub async fn delete_user(&self, pk: i64) -> Result<(), AuthentikError> {
        self.delete(&format!("core/users/{pk}/")).await
    }

    // ---------------------------------------------------------------- providers

    /// OAuth2 providers named exactly `name` (0 or 1).
    pub async fn providers_named(&self, name: &str) -> Result<Vec<Provider>, AuthentikError> {
        self.list("providers/oauth2/", &[("name", name)]).await
    }

    /// OAuth2 providers with exactly this client id (0 or 1).
    pub async fn providers_with_client_id(
        &self,
        client_id: &str,
    ) -> Result<Vec<Provider>, AuthentikError> {
        self.list("providers/oauth2/", &[("client_id", client_id)])
            .await
    }

    /// Creates an OAuth2 provider.
    pub async fn create_provider(&self, p: &NewProvider) -> Result<Provider, AuthentikError> {
        self.write(Method::POST, "providers/oauth2/", p).await
    }

    /// Deletes an OAuth2 provider (its application keeps existing, without a provider).
    pub async fn delete_provider(&self, pk: i64) -> Result<(), AuthentikError> {
        self.delete(&format!("providers/oauth2/{pk}/")).await
    }

    /// The provider's OpenID endpoints (404 until an application is bound).
    pub async fn setup_urls(&self, pk: i64) -> Result<SetupUrls, AuthentikError> {
        self.get_json(&format!("providers/oauth2/{pk}/setup_urls/"), &[])
            .await
    }

    // ---------------------------------------------------------------- applications

    /// The application with this slug, if any.
    pub async fn application(&self, slug: &str) -> Result<Option<Application>, AuthentikError> {
        match self
            .get_json(&format!("core/applications/{}/", seg(slug)?), &[])
            .await
        {
            Ok(a) => Ok(Some(a)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates an application.
    pub async fn create_application(
        &self,
        app: &NewApplication,
    ) -> Result<Application, AuthentikError> {
        self.write(Method::POST, "core/applications/", app).await
    }

    /// Binds an application to a provider, or unbinds it (`None`: no OIDC endpoints, so
    /// nobody can sign in through it).
    pub async fn set_application_provider(
        &self,
        slug: &str,
        provider: Option<i64>,
    ) -> Result<Application, AuthentikError> {
        self.write(
            Method::PATCH,
            &format!("core/applications/{}/", seg(slug)?),
            &json!({ "provider": provider }),
        )
        .await
    }

    /// Deletes an application (its bindings go with it).
    pub async fn delete_application(&self, slug: &str) -> Result<(), AuthentikError> {
        self.delete(&format!("core/applications/{}/", seg(slug)?))
            .await
    }

    /// `check_access` for a user: whether the application's policies let them in.
    pub async fn check_access(&self, slug: &str, user: i64) -> Result<bool, AuthentikError> {
        let user = user.to_string();
        let v: Value = self
            .get_json(
                &format!("core/applications/{}/check_access/", seg(slug)?),
                &[("for_user", &user)],
            )
            .await?;
        Ok(v.get("passing").and_then(Value::as_bool).unwrap_or(false))
    }

    // ---------------------------------------------------------------- bindings

    /// Every binding on `target` (an application's `pbm_uuid`).
    pub async fn bindings_of(&self, target: &str) -> Result<Vec<Binding>, AuthentikError> {
        self.list("policies/bindings/", &[("target", target)]).await
    }

    /// Creates a binding. Authentik does not reject duplicates: list first.
    pub async fn create_binding(&self, b: &NewBinding) -> Result<Binding, AuthentikError> {
        self.write(Method::POST, "policies/bindings/", b).await
    }

    /// Deletes a binding.
    pub async fn delete_binding(&self, pk: &str) -> Result<(), AuthentikError> {
        self.delete(&format!("policies/bindings/{}/", seg(pk)?))
            .await
    }

    // ---------------------------------------------------------------- lookups

    /// Flows with this slug (`results[].pk`).
    pub(crate) async fn flow_pks(&self, slug: &str) -> Result<Vec<String>, AuthentikError> {
        pks(self
            .list::<Value>("flows/instances/", &[("slug", slug)])
            .await?)
    }

    /// Scope mappings with these `managed` names: `(managed, pk)`.
    pub(crate) async fn scope_mappings(
        &self,
        managed: &[&str],
    ) -> Result<Vec<(String, String)>, AuthentikError> {
        let query: Vec<(&str, &str)> = managed.iter().map(|m| ("managed", *m)).collect();
        let found: Vec<Value> = self
            .list("propertymappings/provider/scope/", &query)
            .await?;
        Ok(found
            .iter()
            .filter_map(|m| {
                Some((
                    m.get("managed")?.as_str()?.to_owned(),
                    m.get("pk")?.as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    /// Certificate key pairs with this name and a private key.
    pub(crate) async fn keypair_pks(&self, name: &str) -> Result<Vec<String>, AuthentikError> {
        pks(self
            .list::<Value>(
                "crypto/certificatekeypairs/",
                &[("name", name), ("has_key", "true")],
            )
            .await?)
    }
}

fn pks(items: Vec<Value>) -> Result<Vec<String>, AuthentikError> {
    Ok(items
        .iter()
        .filter_map(|v| v.get("pk").and_then(Value::as_str).map(str::to_owned))
        .collect())
}

/// A path segment we put in a URL: ids, uuids and slugs only, so nothing can walk the path.
fn seg(s: &str) -> Result<&str, AuthentikError> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(s)
    } else {
        Err(AuthentikError::Unexpected(format!(
            "{s:?} is not an Authentik id or slug"
        )))
    }
}

fn decode<T: DeserializeOwned>(path: &str, v: Value) -> Result<T, AuthentikError> {
    serde_json::from_value(v)
        .map_err(|e| AuthentikError::Unexpected(format!("{path}: unexpected shape: {e}")))
}

/// `detail` of a GenericError, else the status.
fn detail(v: Option<Value>, status: StatusCode) -> String {
    v.as_ref()
        .and_then(|v| v.get("detail"))
        .and_then(Value::as_str)
        .map_or_else(|| status.to_string(), str::to_owned)
}

/// The field-keyed map of a DRF ValidationError; strings become one-item lists (the recovery
/// endpoint answers `{"non_field_errors": "…"}`), an empty body an empty map.
fn fields(v: Option<Value>) -> BTreeMap<String, Vec<String>> {
    let Some(Value::Object(map)) = v else {
        return BTreeMap::new();
    };
    map.into_iter()
        .filter(|(k, _)| k != "code")
        .map(|(k, v)| {
            let msgs = match v {
                Value::Array(items) => items
                    .into_iter()
                    .map(|m| match m {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect(),
                Value::String(s) => vec![s],
                other => vec![other.to_string()],
            };
            (k, msgs)
        })
        .collect()
}

/// A reqwest error's text without its URL (which holds nothing secret here, but is long).
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{kind} ({})", e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_are_keyed_by_field() {
        let m = fields(Some(
            json!({"name": ["This field must be unique."], "code": "unique"}),
        ));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["name"]);
        let m = fields(Some(json!({"non_field_errors": "No recovery flow set."})));
        assert_eq!(m["non_field_errors"], ["No recovery flow set."]);
        assert!(fields(None).is_empty());
    }

    #[test]
    fn path_segments_cannot_escape() {
        assert!(seg("tenant-acme_1").is_ok());
        assert!(seg("../users").is_err());
        assert!(seg("a/b").is_err());
        assert!(seg("").is_err());
    }

    #[test]
    fn the_api_root_keeps_a_base_path() {
        let c = Authentik::new(&AuthentikConfig::new(
            "https://example.org/auth/",
            SecretString::from("t".to_owned()),
        ))
        .expect("client");
        assert_eq!(c.api_url(), "https://example.org/auth/api/v3/");
        let bad = Authentik::new(&AuthentikConfig::new(
            "ftp://x",
            SecretString::from("t".to_owned()),
        ));
        assert!(matches!(bad, Err(AuthentikError::Setup(_))));
    }
}
