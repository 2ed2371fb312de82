//! The tenant's `Social Login Key` named `Authentik`, written into its site over REST with the
//! site's vaulted API key: it is what puts "Login with Authentik" on the site's login page.

use authentik_client::Provider;
use frappe::{FrappeClient, RestError};
use proto::v1 as pb;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::context::{Ctx, Fence};
use crate::error::StepError;
use crate::names::{REDIRECT_PATH, SOCIAL_LOGIN_KEY, SOCIAL_LOGIN_PROVIDER};
use crate::tenant::Tenant;

const DOCTYPE: &str = "Social Login Key";

fn rest(what: &str, e: RestError) -> StepError {
    if e.is_transient() {
        StepError::Transient(format!("{what}: {e}"))
    } else {
        StepError::Permanent(format!("{what}: {e}"))
    }
}

/// Like [`rest`] for a call whose body holds the client secret: the site's message is left
/// out (a validation message may quote a field), only the kind of failure is kept.
fn rest_write(what: &str, e: RestError) -> StepError {
    let kind = match &e {
        RestError::Unauthorized(_) => "the site refused the API key (401)".to_owned(),
        RestError::Forbidden(_) => "the API key's user may not write it (403)".to_owned(),
        RestError::NotFound(_) | RestError::SiteNotFound(_) => {
            "the site or doctype does not exist (404)".to_owned()
        }
        RestError::Conflict(_) => "it exists already (409)".to_owned(),
        RestError::Validation(_) => "the site rejected the document (validation error)".to_owned(),
        RestError::RateLimited { .. } => "rate limited (429)".to_owned(),
        RestError::Unavailable(_) => "the site is unavailable (maintenance mode or 503)".to_owned(),
        RestError::Server { status, .. } => format!("server error {status}"),
        RestError::UnexpectedStatus { status, .. } => format!("unexpected HTTP status {status}"),
        RestError::Transport(_) => "no answer from the site".to_owned(),
        other => other.to_string(),
    };
    if e.is_transient() {
        StepError::Transient(format!("{what}: {kind}"))
    } else {
        StepError::Permanent(format!("{what}: {kind}"))
    }
}

/// The document's fields (the redirect path is relative: Frappe prefixes the site URL, which
/// must then equal the provider's strict redirect URI).
fn document(public_auth_url: &str, provider: &Provider) -> Value {
    let host = public_auth_url.trim_end_matches('/');
    json!({
        "provider_name": SOCIAL_LOGIN_PROVIDER,
        "social_login_provider": "Custom",
        "enable_social_login": 1,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret.expose_secret(),
        "base_url": host,
        "custom_base_url": 0,
        "authorize_url": format!("{host}/application/o/authorize/"),
        "access_token_url": format!("{host}/application/o/token/"),
        "redirect_url": REDIRECT_PATH,
        "api_endpoint": format!("{host}/application/o/userinfo/"),
        "auth_url_data": json!({"response_type": "code", "scope": "openid email profile"}).to_string(),
        "user_id_property": "sub",
    })
}

async fn site_client(
    ctx: &Ctx,
    tenant: &Tenant,
    provisioned: &pb::TenantProvisioned,
) -> Result<Option<FrappeClient>, StepError> {
    let Some(creds) = ctx.site_credentials(&tenant.id).await? else {
        return Ok(None);
    };
    let client = ctx
        .sites
        .client(&ctx.http, &provisioned.bench, &provisioned.site)
        .map_err(StepError::Permanent)?;
    Ok(Some(client.with_token(&creds)))
}

/// Inserts the key, or updates it to the provider's current values.
pub async fn ensure(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &Tenant,
    provisioned: &pb::TenantProvisioned,
    provider: &Provider,
) -> Result<(), StepError> {
    let Some(site) = site_client(ctx, tenant, provisioned).await? else {
        return Err(StepError::Permanent(
            "the site's API key is not in the vault, so the Social Login Key cannot be written; retry once the site is provisioned".into(),
        ));
    };
    let doc = document(&ctx.public_auth_url, provider);
    let exists = match site.get_doc(DOCTYPE, SOCIAL_LOGIN_KEY).await {
        Ok(_) => true,
        Err(RestError::NotFound(_)) => false,
        Err(e) => return Err(rest("reading the site's Social Login Key", e)),
    };
    let written = ctx
        .write(fence, async {
            if exists {
                site.update_doc(DOCTYPE, SOCIAL_LOGIN_KEY, &doc).await
            } else {
                match site.insert_doc(DOCTYPE, &doc).await {
                    // Inserted by an attempt whose answer was lost: update instead.
                    Err(RestError::Conflict(_)) => {
                        site.update_doc(DOCTYPE, SOCIAL_LOGIN_KEY, &doc).await
                    }
                    other => other,
                }
            }
        })
        .await?;
    written.map_err(|e| rest_write("writing the site's Social Login Key", e))?;
    ctx.crash_at("at:social-login-key");
    Ok(())
}

/// Removes the key from a site that still exists; a site or key that is gone is done.
pub async fn remove(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &Tenant,
    provisioned: &pb::TenantProvisioned,
) -> Result<(), StepError> {
    let Some(site) = site_client(ctx, tenant, provisioned).await? else {
        return Ok(());
    };
    match ctx
        .write(fence, site.delete_doc(DOCTYPE, SOCIAL_LOGIN_KEY))
        .await?
    {
        Ok(()) | Err(RestError::NotFound(_) | RestError::SiteNotFound(_)) => Ok(()),
        Err(e) => Err(rest("removing the site's Social Login Key", e)),
    }
}
