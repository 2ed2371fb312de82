//! One-time login links for the signup page's handoff: the gateway asks (NATS request/reply on
//! `tenantry-rpc.login_link`, queue group `provisioner`, so one instance answers), a
//! provisioner makes the key on the tenant's bench (Frappe's
//! `_generate_temporary_login_link`) and stores it as a one-time vault secret of kind
//! [`LOGIN_KEY_KIND`]; only the reference travels back. The gateway takes the key and hands
//! the link to the browser that signed up.
//!
//! Nothing here changes the site beyond what Frappe's own "login with email link" does (a key
//! in its cache), and nothing holds the tenant's lease: a key made while a lifecycle command
//! runs is harmless (a suspended site refuses it; the state is read first anyway). A request
//! that dies half-way leaves at most an unused key that expires.

use std::sync::Arc;
use std::time::Duration;

use frappe::{BenchOp, UserEmail};
use futures::StreamExt as _;
use prost::Message as _;
use proto::v1::login_link_refused::Reason;
use proto::v1::{
    LoginLinkIssued, LoginLinkRefused, LoginLinkReply, LoginLinkRequest, login_link_reply,
};
use svc::Shutdown;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::context::Ctx;
use crate::{driver, lifecycle, steps};

/// The request subject (namespaced by the event store).
pub const SUBJECT: &str = "tenantry-rpc.login_link";
/// The queue group every provisioner instance joins.
pub const QUEUE: &str = "provisioner";
/// The vault kind the key is stored as (the gateway may only take it).
pub const LOGIN_KEY_KIND: &str = "login_key";
/// How long a link works: long enough to open a browser tab, short enough to be worthless
/// once lost.
pub const LINK_MINUTES: u32 = 2;
/// Links made at once by one instance (each runs a bench command).
const IN_FLIGHT: usize = 4;

/// Answers login-link requests until `shutdown`.
pub async fn serve(ctx: Ctx, shutdown: Shutdown) -> anyhow::Result<()> {
    let subject = ctx.store.namespaced_subject(SUBJECT);
    let client = ctx.store.client().clone();
    let mut requests = client
        .queue_subscribe(subject.clone(), QUEUE.to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("subscribing to {subject}: {e}"))?;
    let ctx = Arc::new(ctx);
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let message = tokio::select! {
            () = shutdown.wait() => break,
            m = requests.next() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let Some(reply_to) = message.reply.clone() else {
            continue;
        };
        // A busy instance leaves the request to the gateway's timeout and retry rather than
        // queueing unboundedly.
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!("login-link requests beyond {IN_FLIGHT} at once; one dropped");
            continue;
        };
        let ctx = Arc::clone(&ctx);
        let client = client.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let reply = match LoginLinkRequest::decode(message.payload) {
                Ok(req) => {
                    let span = tracing::info_span!("login_link", tenant = %req.tenant_id);
                    answer(&ctx, &req.tenant_id).instrument(span).await
                }
                Err(e) => refused(Reason::Unspecified, format!("undecodable request: {e}")),
            };
            if let Err(e) = client.publish(reply_to, reply.encode_to_vec().into()).await {
                tracing::warn!(error = %e, "could not answer a login-link request");
            }
        });
    }
    Ok(())
}

fn refused(reason: Reason, detail: impl Into<String>) -> LoginLinkReply {
    LoginLinkReply {
        outcome: Some(login_link_reply::Outcome::Refused(LoginLinkRefused {
            reason: reason as i32,
            detail: detail.into(),
        })),
    }
}

/// The reply for one tenant: its state first, then the key on its bench, then the vault.
pub async fn answer(ctx: &Ctx, tenant: &str) -> LoginLinkReply {
    if uuid::Uuid::parse_str(tenant).is_err() {
        return refused(Reason::Unspecified, "not a tenant id");
    }
    let (state, request) = match tokio::try_join!(
        driver::load_state(ctx, tenant),
        lifecycle::load_request(ctx, tenant)
    ) {
        Ok(((_, state), request)) => (state, request),
        Err(e) => return refused(Reason::Unavailable, e.to_string()),
    };
    if state.deleted {
        return refused(Reason::Deleted, "the site was deleted");
    }
    if state.suspended {
        return refused(Reason::Suspended, "the site is suspended");
    }
    let (Some(placement), Some(request), true) = (&state.placement, request, state.provisioned)
    else {
        return refused(Reason::NotReady, "the site is not provisioned");
    };
    match issue(
        ctx,
        tenant,
        &placement.bench,
        &placement.site,
        &request.body.owner_email,
    )
    .await
    {
        Ok(issued) => LoginLinkReply {
            outcome: Some(login_link_reply::Outcome::Issued(issued)),
        },
        Err(e) => {
            tracing::warn!(tenant, error = %e, "no login link");
            refused(Reason::Unavailable, e)
        }
    }
}

async fn issue(
    ctx: &Ctx,
    tenant: &str,
    bench_name: &str,
    site: &str,
    owner: &str,
) -> Result<LoginLinkIssued, String> {
    let site = steps::parse_site(site).map_err(|e| e.to_string())?;
    let owner = UserEmail::parse(owner).map_err(|e| e.to_string())?;
    let (bench_cfg, bench) = ctx.bench(bench_name).map_err(|e| e.to_string())?;
    let slot = ctx
        .slots
        .acquire(bench_cfg, bench.command_limit(BenchOp::Other))
        .await
        .map_err(|e| e.to_string())?;
    let key = bench.login_key(&site, &owner, LINK_MINUTES).await;
    slot.release().await;
    let key = key.map_err(|e| format!("the bench could not make a login key: {e}"))?;
    let ttl = Duration::from_secs(u64::from(LINK_MINUTES) * 60);
    let stored = ctx
        .vault
        .with_correlation_id(tenant)
        .put_one_time_string(
            tenant,
            LOGIN_KEY_KIND,
            &key,
            ttl,
            "one-time login key for the owner's first visit (signup handoff)",
        )
        .await
        .map_err(|e| format!("the vault did not keep the login key: {e}"))?;
    Ok(LoginLinkIssued {
        key_ref: stored.reference,
        site_url: bench_cfg.public_url(site.as_str()),
        expires_in_seconds: LINK_MINUTES * 60,
    })
}
