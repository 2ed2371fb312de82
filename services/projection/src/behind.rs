//! Whether the read model still holds what its consumer acknowledged.
//!
//! The checkpoint is committed before each ack, so in a healthy projection the active
//! generation's checkpoint is never below the durable consumer's ack floor. Below it means the
//! database lost what was applied — recreated empty, or restored from an older backup. The
//! durable only delivers what follows its floor, so that hole would never fill and every read
//! would be quietly wrong ("0 of 0 tenants"). The projection then stays unready, saying which
//! command rebuilds it, until a rebuild (blue/green, `tenantctl replay --projection tenants`)
//! makes a new generation from the whole log.

use std::time::Duration;

use eventstore::EventStore;
use svc::{Readiness, ReadinessPart, Shutdown};

use crate::error::Error;
use crate::store::Store;

/// What the check found: the active generation is behind the consumer's ack floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    /// The active generation at the check.
    pub generation: i32,
    /// Its checkpoint.
    pub checkpoint: u64,
    /// Every event up to this stream sequence was acknowledged by the durable.
    pub ack_floor: u64,
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the read model (generation {}) is at stream sequence {} but its consumer acknowledged \
             up to {}: the database lost events it had applied; run `tenantctl replay --projection \
             tenants` to rebuild it from the log",
            self.generation, self.checkpoint, self.ack_floor
        )
    }
}

/// Closed while the active generation is marked behind: queries are refused
/// (FAILED_PRECONDITION, saying which command rebuilds it) rather than answered from a model with
/// a hole in it.
#[derive(Debug, Clone, Default)]
pub struct Gate(svc::Gate);

impl Gate {
    /// `Err(LostEvents)` while closed.
    pub fn check(&self) -> Result<(), Error> {
        self.0
            .reason()
            .map_or(Ok(()), |m| Err(Error::LostEvents(m)))
    }
}

/// Compares the active generation's checkpoint with the ack floor of `durable` (`None`: no
/// such consumer yet, or not behind).
pub async fn check(
    store: &Store,
    events: &EventStore,
    durable: &str,
) -> Result<Option<Behind>, Error> {
    let Some(consumer) = events.consumer(durable).await? else {
        return Ok(None);
    };
    let generation = store.active().await?;
    let checkpoint = store.checkpoint_of(&generation).await?;
    Ok((checkpoint < consumer.ack_floor).then_some(Behind {
        generation: generation.number,
        checkpoint,
        ack_floor: consumer.ack_floor,
    }))
}

/// Checks once, before this instance applies anything; when behind, logs why, marks the
/// generation in the database (so every instance, now and after restarts, refuses it — the
/// checkpoint soon passes the floor and a later comparison would no longer see the hole) and
/// closes `gate` at once.
pub async fn check_and_mark(
    store: &Store,
    events: &EventStore,
    durable: &str,
    gate: &Gate,
) -> Result<(), Error> {
    if let Some(b) = check(store, events, durable).await? {
        tracing::error!(
            generation = b.generation,
            checkpoint = b.checkpoint,
            ack_floor = b.ack_floor,
            "{b}"
        );
        store.mark_behind(b.generation).await?;
        gate.0.set(Some(b.to_string()));
    }
    Ok(())
}

/// Keeps `gate` and a readiness part in line with the database's mark: once now, then every
/// `every` until `shutdown`. A failed read keeps the last answer.
pub async fn watch(
    store: Store,
    gate: Gate,
    readiness: &Readiness,
    every: Duration,
    shutdown: Shutdown,
) {
    let part = readiness.part("read model holds the log");
    refresh(&store, &gate, &part).await;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(every) => {}
            }
            refresh(&store, &gate, &part).await;
        }
    });
}

/// One look at the database's mark.
async fn refresh(store: &Store, gate: &Gate, part: &ReadinessPart) {
    match store.active_behind().await {
        Ok(Some(generation)) => {
            gate.0.close(format!(
                "the read model (generation {generation}) lost events its consumer had \
                 acknowledged; run `tenantctl replay --projection tenants` to rebuild it from the \
                 log"
            ));
            part.set(false);
        }
        Ok(None) => {
            if gate.0.open() {
                tracing::info!(
                    "a rebuild replaced the read model that was behind the log; serving"
                );
            }
            part.set(true);
        }
        Err(e) => tracing::warn!(error = %e, "cannot read whether the read model is behind"),
    }
}
