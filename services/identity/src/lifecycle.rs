//! Suspension, resume and deletion in Authentik.
//!
//! Suspension deactivates the tenant's users (their sessions and tokens stop working) and
//! leaves the binding alone: an application without an enabled binding admits every
//! authenticated user. Deletion unbinds the application from its provider (nobody can sign in
//! through it from then on), then removes binding → application → provider → users → group
//! and the site's Social Login Key, each only if it carries this tenant's marker; a 404 is
//! done.

use authentik_client::AuthentikError;

use crate::context::{Ctx, Fence};
use crate::error::{StepError, authentik};
use crate::names::Names;
use crate::secrets::{CLIENT_SECRET, PASSWORD_PENDING};
use crate::tenant::Tenant;

/// Sets every user of the tenant active or inactive; returns how many changed.
pub async fn set_users_active(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &Tenant,
    active: bool,
) -> Result<u32, StepError> {
    let names = names_of(tenant);
    let users = ctx
        .authentik
        .users_with_attributes(&serde_json::json!({ "tenant_id": tenant.id }))
        .await
        .map_err(|e| authentik("listing the tenant's users", e))?;
    let mut changed = 0;
    for u in users.into_iter().filter(|u| names.owns(&u.attributes)) {
        if u.is_active == active {
            continue;
        }
        match ctx
            .write(fence, ctx.authentik.set_user_active(u.pk, active))
            .await?
        {
            Ok(_) => changed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(authentik("changing a user's active flag", e)),
        }
    }
    ctx.crash_at(if active { "at:enable" } else { "at:disable" });
    Ok(changed)
}

/// Reactivates the tenant's users and makes sure its site has its Social Login Key (a tenant
/// set up while suspended gets it now, and a key removed by hand comes back).
pub async fn enable(ctx: &Ctx, fence: &Fence, tenant: &Tenant) -> Result<u32, StepError> {
    let changed = set_users_active(ctx, fence, tenant, true).await?;
    if let (true, Some(provisioned)) = (tenant.state.sso.configured(), &tenant.provisioned) {
        let names = names_of(tenant);
        let provider = ctx
            .authentik
            .providers_named(&names.provider)
            .await
            .map_err(|e| authentik("looking up the provider", e))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                StepError::Permanent(format!(
                    "the tenant's OAuth2 provider {} is missing in Authentik; retry single sign-on setup",
                    names.provider
                ))
            })?;
        crate::social_login::ensure(ctx, fence, tenant, provisioned, &provider).await?;
    }
    Ok(changed)
}

/// Deletes every Authentik object of the tenant, the Social Login Key and our vault secrets.
pub async fn remove(ctx: &Ctx, fence: &Fence, tenant: &Tenant) -> Result<(), StepError> {
    let names = names_of(tenant);
    let gone = |r: Result<(), AuthentikError>, what: &str| match r {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(authentik(what, e)),
    };
    let group = ctx
        .authentik
        .groups_named(&names.slug)
        .await
        .map_err(|e| authentik("looking up the group", e))?
        .into_iter()
        .find(|g| names.owns(&g.attributes));
    let app = ctx
        .authentik
        .application(&names.slug)
        .await
        .map_err(|e| authentik("looking up the application", e))?
        .filter(|a| a.meta_description == names.app_marker);
    if let Some(app) = &app {
        // Unbound first: from here on nobody can sign in through it, so removing its binding
        // next never leaves an application that admits everyone.
        if app.provider.is_some() {
            gone(
                ctx.write(
                    fence,
                    ctx.authentik.set_application_provider(&app.slug, None),
                )
                .await?
                .map(|_| ()),
                "unbinding the application from its provider",
            )?;
        }
        if let Some(group) = &group {
            for b in ctx
                .authentik
                .bindings_of(&app.pbm_uuid)
                .await
                .map_err(|e| authentik("listing the application's bindings", e))?
                .into_iter()
                .filter(|b| b.group.as_deref() == Some(group.pk.as_str()))
            {
                gone(
                    ctx.write(fence, ctx.authentik.delete_binding(&b.pk))
                        .await?,
                    "removing the binding",
                )?;
            }
        }
        gone(
            ctx.write(fence, ctx.authentik.delete_application(&app.slug))
                .await?,
            "removing the application",
        )?;
    }
    for p in ctx
        .authentik
        .providers_named(&names.provider)
        .await
        .map_err(|e| authentik("looking up the provider", e))?
    {
        gone(
            ctx.write(fence, ctx.authentik.delete_provider(p.pk))
                .await?,
            "removing the provider",
        )?;
    }
    for u in ctx
        .authentik
        .users_with_attributes(&serde_json::json!({ "tenant_id": tenant.id }))
        .await
        .map_err(|e| authentik("listing the tenant's users", e))?
        .into_iter()
        .filter(|u| names.owns(&u.attributes))
    {
        gone(
            ctx.write(fence, ctx.authentik.delete_user(u.pk)).await?,
            "removing a user",
        )?;
    }
    if let Some(group) = &group {
        gone(
            ctx.write(fence, ctx.authentik.delete_group(&group.pk))
                .await?,
            "removing the group",
        )?;
    }
    ctx.crash_at("at:remove");
    if let Some(provisioned) = &tenant.provisioned {
        crate::social_login::remove(ctx, fence, tenant, provisioned).await?;
    }
    ctx.revoke(&tenant.id, CLIENT_SECRET, "tenant deleted")
        .await?;
    ctx.revoke(&tenant.id, PASSWORD_PENDING, "tenant deleted")
        .await?;
    Ok(())
}

fn names_of(tenant: &Tenant) -> Names {
    match &tenant.requested {
        Some(r) => Names::new(&tenant.id, &r.subdomain, &r.owner_email),
        None => Names::new(&tenant.id, "", ""),
    }
}
