//! Setting a tenant up in Authentik: group → owner (in the group, with the password chosen at
//! signup) → OAuth2 provider → client secret into the vault → application → binding that
//! admits only the group → the site's Social Login Key.
//!
//! Every object is looked up by its derived name before it is made, and adopted only if it
//! carries this tenant's marker; a create that loses a race (400 on the unique field) looks
//! again. So a redelivery, a crash between any two calls, or a second instance never makes a
//! second object, and never takes one that is not ours.

use authentik_client::{
    Application, AuthentikError, Binding, Group, NewApplication, NewBinding, NewGroup, NewProvider,
    NewUser, Provider, RedirectUri, User, Version,
};
use proto::v1 as pb;

use crate::context::{Ctx, Fence};
use crate::error::{StepError, authentik};
use crate::names::Names;
use crate::tenant::Tenant;

/// A failed step: which one, and why.
#[derive(Debug)]
pub struct Failed {
    /// `group`, `owner_user`, `owner_password`, `provider`, `client_secret`, `application`,
    /// `binding`, `social_login_key`.
    pub step: &'static str,
    /// Why.
    pub error: StepError,
}

trait At<T> {
    fn at(self, step: &'static str) -> Result<T, Failed>;
}

impl<T> At<T> for Result<T, StepError> {
    fn at(self, step: &'static str) -> Result<T, Failed> {
        self.map_err(|error| Failed { step, error })
    }
}

/// Creates or adopts every object and returns the fact to record. `active`: whether the
/// owner may sign in now (not while the tenant is suspended).
pub async fn configure(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &Tenant,
    active: bool,
) -> Result<pb::IdentityConfigured, Failed> {
    let (Some(requested), Some(provisioned)) = (&tenant.requested, &tenant.provisioned) else {
        return Err(Failed {
            step: "group",
            error: StepError::Permanent("the tenant has no provisioned site yet".into()),
        });
    };
    let names = Names::new(&tenant.id, &requested.subdomain, &requested.owner_email);
    let group = ensure_group(ctx, fence, &names).await.at("group")?;
    let user = ensure_user(ctx, fence, &names, requested, &group, active)
        .await
        .at("owner_user")?;
    ensure_password(ctx, fence, &names, &tenant.id, requested, &user)
        .await
        .at("owner_password")?;
    let provider = ensure_provider(ctx, fence, &names, &provisioned.url)
        .await
        .at("provider")?;
    let secret_ref = ctx
        .store_client_secret(&tenant.id, &provider.client_secret)
        .await
        .at("client_secret")?;
    ctx.crash_at("at:secret");
    let app = ensure_application(ctx, fence, &names, &provider, &provisioned.url, requested)
        .await
        .at("application")?;
    let binding = ensure_binding(ctx, fence, &app, &group)
        .await
        .at("binding")?;
    // Only now, with the group's binding in place, may the application reach its provider:
    // an application without an enabled binding admits every authenticated user.
    if app.provider != Some(provider.pk) {
        ctx.write(
            fence,
            ctx.authentik
                .set_application_provider(&app.slug, Some(provider.pk)),
        )
        .await
        .at("application")?
        .map_err(|e| authentik("binding the application to its provider", e))
        .at("application")?;
        ctx.crash_at("at:application-provider");
    }
    // A suspended site is in maintenance mode and refuses writes: its key is written when it
    // is resumed (the enable step).
    if active {
        crate::social_login::ensure(ctx, fence, tenant, provisioned, &provider)
            .await
            .at("social_login_key")?;
    }
    let public = ctx.public_auth_url.trim_end_matches('/');
    Ok(pb::IdentityConfigured {
        tenant_id: tenant.id.clone(),
        group_pk: group.pk,
        owner_user_pk: user.pk.to_string(),
        provider_pk: provider.pk.to_string(),
        application_slug: app.slug.clone(),
        client_secret_ref: secret_ref,
        client_id: provider.client_id.clone(),
        group_name: group.name,
        owner_username: user.username,
        binding_pk: binding.pk,
        issuer: format!("{public}/application/o/{}/", app.slug),
        login_url: format!("{}/login", provisioned.url.trim_end_matches('/')),
        users_inactive: !active,
    })
}

/// Sets the owner's Authentik password to the one chosen at signup, once: the user is then
/// marked (`password_set`), so a retry after a later failure never overwrites a password the
/// owner has changed since, and the vault's copy is dropped.
async fn ensure_password(
    ctx: &Ctx,
    fence: &Fence,
    names: &Names,
    tenant: &str,
    requested: &pb::TenantRequested,
    user: &User,
) -> Result<(), StepError> {
    if user
        .attributes
        .get(PASSWORD_SET)
        .and_then(serde_json::Value::as_bool)
        == Some(true)
    {
        return ctx.forget_password(tenant).await;
    }
    let password = ctx
        .owner_password(tenant, &requested.sso_password_ref)
        .await?;
    ctx.write(fence, ctx.authentik.set_password(user.pk, &password))
        .await?
        .map_err(|e| match e {
            AuthentikError::Invalid(_) => StepError::Permanent(
                "Authentik's password policy rejected the password chosen at signup; relax the policy or send the owner a recovery link, then retry".into(),
            ),
            e => authentik("setting the owner's password", e),
        })?;
    drop(password);
    ctx.crash_at("at:password");
    let mut attributes = names.attributes();
    attributes[PASSWORD_SET] = serde_json::Value::Bool(true);
    ctx.write(
        fence,
        ctx.authentik.set_user_attributes(user.pk, &attributes),
    )
    .await?
    .map_err(|e| authentik("marking the owner's password as set", e))?;
    ctx.forget_password(tenant).await
}

/// User attribute saying the signup password was set.
const PASSWORD_SET: &str = "password_set";

/// The one object with our derived name, if it exists; an object under our name that does
/// not carry our marker is a conflict.
fn ours<T>(found: Vec<T>, owned: impl Fn(&T) -> bool, what: &str) -> Result<Option<T>, StepError> {
    let mut found = found.into_iter();
    match found.next() {
        None => Ok(None),
        Some(o) if owned(&o) => Ok(Some(o)),
        Some(_) => Err(StepError::NotOurs(format!(
            "Authentik already has {what}, and it does not belong to this tenant; rename or remove it in Authentik, then retry"
        ))),
    }
}

async fn ensure_group(ctx: &Ctx, fence: &Fence, names: &Names) -> Result<Group, StepError> {
    let what = format!("a group named {}", names.slug);
    let find = || async {
        let found = ctx
            .authentik
            .groups_named(&names.slug)
            .await
            .map_err(|e| authentik("looking up the group", e))?;
        ours(found, |g| names.owns(&g.attributes), &what)
    };
    if let Some(g) = find().await? {
        return Ok(g);
    }
    let created = ctx
        .write(
            fence,
            ctx.authentik.create_group(&NewGroup {
                name: names.slug.clone(),
                is_superuser: false,
                attributes: names.attributes(),
            }),
        )
        .await?;
    ctx.crash_at("at:group");
    match created {
        Ok(g) => Ok(g),
        // Another attempt made it between our look and our create: look again.
        Err(e) if e.field("name") => find().await?.ok_or_else(|| {
            StepError::Transient(format!("{what} was reported taken but is not listed"))
        }),
        Err(e) => Err(authentik("creating the group", e)),
    }
}

async fn ensure_user(
    ctx: &Ctx,
    fence: &Fence,
    names: &Names,
    requested: &pb::TenantRequested,
    group: &Group,
    active: bool,
) -> Result<User, StepError> {
    let what = format!("a user named {}", names.username);
    let find = || async {
        let found = ctx
            .authentik
            .users_named(&names.username)
            .await
            .map_err(|e| authentik("looking up the owner", e))?;
        ours(found, |u| names.owns(&u.attributes), &what)
    };
    let user = match find().await? {
        Some(u) => u,
        None => {
            let created = ctx
                .write(
                    fence,
                    ctx.authentik.create_user(&NewUser {
                        username: names.username.clone(),
                        name: requested.owner_name.clone(),
                        email: requested.owner_email.clone(),
                        is_active: active,
                        groups: vec![group.pk.clone()],
                        path: names.user_path.clone(),
                        user_type: "internal".into(),
                        attributes: names.attributes(),
                    }),
                )
                .await?;
            ctx.crash_at("at:user");
            match created {
                Ok(u) => u,
                Err(e) if e.field("username") => find().await?.ok_or_else(|| {
                    StepError::Transient(format!("{what} was reported taken but is not listed"))
                })?,
                Err(e) => return Err(authentik("creating the owner", e)),
            }
        }
    };
    if !user.groups.contains(&group.pk) {
        ctx.write(fence, ctx.authentik.add_user_to_group(&group.pk, user.pk))
            .await?
            .map_err(|e| authentik("adding the owner to the group", e))?;
        ctx.crash_at("at:membership");
    }
    if user.is_active != active {
        return ctx
            .write(fence, ctx.authentik.set_user_active(user.pk, active))
            .await?
            .map_err(|e| authentik("setting the owner's active flag", e));
    }
    Ok(user)
}

async fn ensure_provider(
    ctx: &Ctx,
    fence: &Fence,
    names: &Names,
    site_url: &str,
) -> Result<Provider, StepError> {
    // The provider's name carries the tenant id: finding it by that name is the proof.
    let find = || async {
        ctx.authentik
            .providers_named(&names.provider)
            .await
            .map(|v| v.into_iter().next())
            .map_err(|e| authentik("looking up the OAuth2 provider", e))
    };
    if let Some(p) = find().await? {
        return check_provider(p, names);
    }
    let dir = &ctx.directory;
    let new = NewProvider {
        name: names.provider.clone(),
        authorization_flow: dir.authorization_flow.clone(),
        invalidation_flow: dir.invalidation_flow.clone(),
        client_type: "confidential".into(),
        client_id: names.slug.clone(),
        redirect_uris: vec![RedirectUri {
            matching_mode: "strict".into(),
            url: Names::redirect_uri(site_url),
        }],
        property_mappings: dir.scope_mappings.clone(),
        signing_key: dir.signing_key.clone(),
        sub_mode: "hashed_user_id".into(),
        issuer_mode: "per_provider".into(),
        include_claims_in_id_token: true,
        access_token_validity: "hours=1".into(),
        access_code_validity: "minutes=1".into(),
        grant_types: (dir.version >= Version::GRANT_TYPES)
            .then(|| vec!["authorization_code".into(), "refresh_token".into()]),
    };
    let created = ctx
        .write(fence, ctx.authentik.create_provider(&new))
        .await?;
    ctx.crash_at("at:provider");
    match created {
        Ok(p) => Ok(p),
        Err(e) if e.field("name") => match find().await? {
            Some(p) => check_provider(p, names),
            None => Err(StepError::Transient(
                "the provider was reported taken but is not listed".into(),
            )),
        },
        Err(e) if e.field("client_id") => Err(StepError::NotOurs(format!(
            "Authentik already has an OAuth2 provider with client id {} that is not this tenant's; remove it in Authentik, then retry",
            names.slug
        ))),
        Err(e) => Err(authentik("creating the OAuth2 provider", e)),
    }
}

fn check_provider(p: Provider, names: &Names) -> Result<Provider, StepError> {
    if p.client_id == names.slug {
        Ok(p)
    } else {
        Err(StepError::NotOurs(format!(
            "the OAuth2 provider {} has client id {:?}, not {}; it was changed by hand: fix or remove it in Authentik, then retry",
            names.provider, p.client_id, names.slug
        )))
    }
}

async fn ensure_application(
    ctx: &Ctx,
    fence: &Fence,
    names: &Names,
    provider: &Provider,
    site_url: &str,
    requested: &pb::TenantRequested,
) -> Result<Application, StepError> {
    let adopt = |app: Application| {
        if app.meta_description != names.app_marker {
            return Err(StepError::NotOurs(format!(
                "Authentik already has an application with slug {} that is not this tenant's; remove or rename it in Authentik, then retry",
                names.slug
            )));
        }
        // Unbound (made by an attempt that died before binding it) or bound to ours.
        if app.provider.is_some_and(|p| p != provider.pk) {
            return Err(StepError::NotOurs(format!(
                "the application {} is bound to provider {:?}, not this tenant's provider {}; fix it in Authentik, then retry",
                names.slug, app.provider, provider.pk
            )));
        }
        Ok(app)
    };
    let find = || async {
        ctx.authentik
            .application(&names.slug)
            .await
            .map_err(|e| authentik("looking up the application", e))
    };
    if let Some(app) = find().await? {
        return adopt(app);
    }
    // Made without its provider: nobody can sign in through it until the group's binding
    // exists and the provider is attached.
    let new = NewApplication {
        name: requested.organisation.clone(),
        slug: names.slug.clone(),
        provider: None,
        meta_launch_url: format!("{}/", site_url.trim_end_matches('/')),
        meta_description: names.app_marker.clone(),
        meta_publisher: "Tenantry".into(),
        policy_engine_mode: "any".into(),
        open_in_new_tab: false,
    };
    let created = ctx
        .write(fence, ctx.authentik.create_application(&new))
        .await?;
    ctx.crash_at("at:application");
    match created {
        Ok(app) => Ok(app),
        Err(e) if e.field("slug") => match find().await? {
            Some(app) => adopt(app),
            None => Err(StepError::Transient(
                "the application slug was reported taken but is not found".into(),
            )),
        },
        Err(e) => Err(authentik("creating the application", e)),
    }
}

/// Exactly one enabled binding of the tenant's group to the application. Authentik accepts
/// duplicates, so the list comes first; extra copies of our own binding (same target, same
/// group) are removed.
async fn ensure_binding(
    ctx: &Ctx,
    fence: &Fence,
    app: &Application,
    group: &Group,
) -> Result<Binding, StepError> {
    let mut ours: Vec<Binding> = ctx
        .authentik
        .bindings_of(&app.pbm_uuid)
        .await
        .map_err(|e| authentik("listing the application's bindings", e))?
        .into_iter()
        .filter(|b| b.group.as_deref() == Some(group.pk.as_str()) && b.policy.is_none())
        .collect();
    if ours.is_empty() {
        let b = ctx
            .write(
                fence,
                ctx.authentik.create_binding(&NewBinding {
                    target: app.pbm_uuid.clone(),
                    group: group.pk.clone(),
                    order: 0,
                    enabled: true,
                    negate: false,
                    timeout: 30,
                    failure_result: false,
                }),
            )
            .await?
            .map_err(|e| authentik("binding the application to the group", e))?;
        ctx.crash_at("at:binding");
        return Ok(b);
    }
    // Keep an enabled one; never delete the last enabled binding, and leave disabled ones
    // (someone's deliberate change) alone.
    ours.sort_by(|a, b| b.enabled.cmp(&a.enabled).then_with(|| a.pk.cmp(&b.pk)));
    let keep = ours.remove(0);
    if !keep.enabled {
        return Err(StepError::NotOurs(format!(
            "the binding {} of the application to the tenant's group was disabled by hand; an application without an enabled binding admits every user, so enable or remove it in Authentik, then retry",
            keep.pk
        )));
    }
    for extra in ours.into_iter().filter(|b| b.enabled) {
        match ctx
            .write(fence, ctx.authentik.delete_binding(&extra.pk))
            .await?
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(authentik("removing a duplicate binding", e)),
        }
    }
    Ok(keep)
}
