//! CreateOwner: the owner as System Manager with the password chosen at signup (moved from the
//! one-time vault secret into a pending copy kept until Finish), in one REST insert — made with
//! the automation user's key when it is vaulted, so a standby claim needs no login.

use frappe::{RestError, UserEmail, UserId};
use proto::v1::{self as pb, event::Body};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::{Placed, ms};
use crate::context::{Ctx, Fence};
use crate::driver::Request;
use crate::error::{StepError, rest_error};
use crate::site_rest::insert_user;

/// Makes sure the owner exists with their password; returns OwnerUserCreated.
pub async fn run(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    placed: &Placed<'_>,
    started: Instant,
) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    let email = UserEmail::parse(&req.body.owner_email).map_err(|e| {
        StepError::Permanent(format!("owner email: {e}; the signup must be repeated"))
    })?;
    // The automation user's key when it is vaulted already (always, for a standby claim): no
    // Administrator login on the way to the owner.
    let (creds, password) = tokio::join!(
        ctx.stored_credentials(tenant),
        ctx.owner_password(tenant, &req.body.password_ref)
    );
    let client = match creds? {
        Some(creds) => ctx
            .client(placed.bench_cfg, &placed.site)?
            .with_token(&creds),
        None => {
            ctx.admin_session(tenant, placed.bench_cfg, &placed.site)
                .await?
        }
    };
    let pw = match password {
        Ok(pw) => pw,
        // Made by an attempt whose password is gone since: nothing left to do.
        Err(e @ StepError::Permanent(_)) => {
            return match client.get_doc("User", email.as_str()).await {
                Ok(_) => Ok(done(tenant, placed, &email, started)),
                Err(RestError::NotFound(_)) => Err(e),
                Err(re) => Err(rest_error("looking up the owner", re)),
            };
        }
        Err(e) => return Err(e),
    };
    let name = req.body.owner_name.trim();
    let (first, last) = name.split_once(' ').unwrap_or((name, ""));
    let first = if first.is_empty() {
        email.as_str()
    } else {
        first
    };
    fence.check().await?;
    // One insert carries the password, so the owner never exists without it.
    let created = insert_user(
        &client,
        &email,
        first,
        last.trim(),
        &[("new_password", pw.expose_secret())],
    )
    .await?;
    ctx.crash_at("owner");
    if !created {
        // The user exists but this step was not recorded: an interrupted earlier attempt.
        // Setting the password again is harmless and heals a server that stored the user
        // without it.
        fence.check().await?;
        client
            .set_user_password(&UserId::Email(email.clone()), &pw)
            .await
            .map_err(|e| rest_error("setting the owner's password", e))?;
    }
    Ok(done(tenant, placed, &email, started))
}

fn done(tenant: &str, placed: &Placed<'_>, email: &UserEmail, started: Instant) -> Vec<Body> {
    vec![Body::OwnerUserCreated(pb::OwnerUserCreated {
        tenant_id: tenant.to_owned(),
        site: placed.site.to_string(),
        email: email.to_string(),
        roles: vec!["System Manager".to_owned()],
        duration_ms: ms(started.elapsed()),
    })]
}
