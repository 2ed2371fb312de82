//! `WatchSignup`: one tenant's progress, from its first event to provisioned or failed.
//!
//! One JetStream ordered consumer, filtered on `tenantry.*.<tenant>` and delivering from the
//! first event, serves both history and live updates: there is no gap or overlap to reconcile
//! between a replay and a separate subscription, and the ordered consumer recreates itself at
//! the right sequence if a message goes missing. The stream ends once the latest progress is
//! "done" or "failed" and the consumer has caught up (a failure followed by an operator retry
//! keeps going). Dropping the response stream (the client went away) drops the consumer; the
//! server's shutdown signal ends every stream.

use std::pin::Pin;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use eventstore::{EventContext, EventStore, RecordedEvent};
use futures::{Stream, StreamExt};
use proto::v1::SignupProgress;
use svc::Shutdown;
use tenancy::TenantId;
use tonic::Status;

use crate::error::SignupError;

/// The response stream type of `WatchSignup`.
pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<SignupProgress, Status>> + Send>>;

struct Cursor {
    messages: pull::Ordered,
    tenant: String,
    /// The latest progress said done or failed.
    terminal: bool,
    /// Single sign-on is part of the signup (a step after the site).
    sso: bool,
    /// Nothing more will be yielded.
    finished: bool,
    /// The highest percentage shown so far: the bar never moves backwards, not on a retried
    /// step nor on an operator's retry after a failure.
    shown: u32,
}

/// Starts watching `tenant`. NOT_FOUND when it never signed up.
pub async fn watch(
    store: &EventStore,
    tenant: &TenantId,
    sso: bool,
    shutdown: Shutdown,
) -> Result<ProgressStream, SignupError> {
    let tenant = tenant.to_string();
    let requested = store
        .version(&store.subject(EventContext::Signup, &tenant))
        .await
        .map_err(|e| SignupError::Unavailable(e.to_string()))?;
    if requested == 0 {
        return Err(SignupError::TenantNotFound(tenant));
    }
    let stream = store
        .jetstream()
        .get_stream(store.stream_name())
        .await
        .map_err(|e| SignupError::Unavailable(format!("cannot open the event stream: {e}")))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: store.tenant_filter(&tenant),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| SignupError::Unavailable(format!("cannot watch the tenant's events: {e}")))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| SignupError::Unavailable(format!("cannot watch the tenant's events: {e}")))?;
    let cursor = Cursor {
        messages,
        tenant,
        terminal: false,
        sso,
        finished: false,
        shown: 0,
    };
    let updates = futures::stream::unfold(cursor, next_update).take_until(shutdown.into_future());
    Ok(Box::pin(updates))
}

/// The next progress update, skipping events a person watching their signup need not see.
async fn next_update(mut cursor: Cursor) -> Option<(Result<SignupProgress, Status>, Cursor)> {
    loop {
        if cursor.finished {
            return None;
        }
        let message = match cursor.messages.next().await? {
            Ok(m) => m,
            Err(e) => {
                cursor.finished = true;
                let status = Status::unavailable(format!(
                    "lost the tenant's event feed ({e}); watch again to resume"
                ));
                return Some((Err(status), cursor));
            }
        };
        let Ok(info) = message.info() else {
            continue;
        };
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let event = match RecordedEvent::decode(
            &message.subject,
            sequence,
            message.headers.as_ref(),
            &message.payload,
            info.published,
        ) {
            Ok(e) => e,
            Err(e) => {
                // Not ours to judge: a newer writer's event type. Skip it rather than end the watch.
                tracing::warn!(sequence, error = %e, "skipping undecodable event");
                continue;
            }
        };
        let caught_up = pending == 0;
        let p = if cursor.sso {
            tenancy::progress_with_sso(&event.body)
        } else {
            tenancy::progress(&event.body)
        };
        let Some(p) = p else {
            if cursor.terminal && caught_up {
                return None;
            }
            continue;
        };
        cursor.terminal = p.done || p.failed;
        cursor.finished = cursor.terminal && caught_up;
        cursor.shown = cursor.shown.max(p.percent);
        // A failure names the tenant, which is what support looks it up by; the full reason
        // is in the events, for operators.
        let reason = if p.failed {
            format!("{} Support reference: {}.", p.reason, cursor.tenant)
        } else {
            p.reason
        };
        let update = SignupProgress {
            tenant_id: cursor.tenant.clone(),
            step: p.step.to_owned(),
            label: p.label.to_owned(),
            percent: cursor.shown,
            done: p.done,
            failed: p.failed,
            reason,
            sequence,
            url: p.url,
        };
        return Some((Ok(update), cursor));
    }
}
