//! CreateOwner: the owner as System Manager with the password chosen at signup, taken from the
//! one-time vault secret only when the user does not exist yet.

use frappe::{RestError, UserEmail, UserId};
use proto::v1::{self as pb, event::Body};
use tokio::time::Instant;

use super::{Placed, ms};
use crate::context::{Ctx, Fence};
use crate::driver::Request;
use crate::error::{StepError, rest_error};
use crate::site_rest::ensure_user;

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
    let admin = ctx
        .admin_session(tenant, placed.bench_cfg, &placed.site)
        .await?;
    let exists = match admin.get_doc("User", email.as_str()).await {
        Ok(_) => true,
        Err(RestError::NotFound(_)) => false,
        Err(e) => return Err(rest_error("looking up the owner", e)),
    };
    if !exists {
        fence.check().await?;
        let pw = ctx.owner_password(tenant, &req.body.password_ref).await?;
        let name = req.body.owner_name.trim();
        let (first, last) = name.split_once(' ').unwrap_or((name, ""));
        let first = if first.is_empty() {
            email.as_str()
        } else {
            first
        };
        fence.check().await?;
        ensure_user(&admin, &email, first, last.trim(), Some(&pw)).await?;
        ctx.crash_at("owner");
    } else if let Some(pw) = ctx.pending_owner_password(tenant).await? {
        // The user exists but this step was not recorded: an interrupted earlier attempt.
        // Setting the password again is harmless and heals a server that stored the user
        // without it.
        fence.check().await?;
        admin
            .set_user_password(&UserId::Email(email.clone()), &pw)
            .await
            .map_err(|e| rest_error("setting the owner's password", e))?;
    }
    Ok(vec![Body::OwnerUserCreated(pb::OwnerUserCreated {
        tenant_id: tenant.to_owned(),
        site: placed.site.to_string(),
        email: email.to_string(),
        roles: vec!["System Manager".to_owned()],
        duration_ms: ms(started.elapsed()),
    })])
}
