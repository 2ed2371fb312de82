//! Whether the read model still holds what its consumer acknowledged.
//!
//! The checkpoint is committed before each ack, so in a healthy projection the active
//! generation's checkpoint is never below the durable consumer's ack floor. Below it means the
//! database lost what was applied — recreated empty, or restored from an older backup. The
//! durable only delivers what follows its floor, so that hole would never fill and every read
//! would be quietly wrong ("0 of 0 tenants"). The projection then stays unready, saying which
//! command rebuilds it, until a rebuild (blue/green, `tenantctl replay --projection tenants`)
//! makes a new generation from the whole log.

use std::sync::{Arc, Mutex, PoisonError};
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

/// Closed while the read model is behind the log: queries are refused (FAILED_PRECONDITION,
/// saying which command rebuilds it) rather than answered from a model with a hole in it.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Mutex<Option<Behind>>>);

impl Gate {
    fn with<R>(&self, f: impl FnOnce(&mut Option<Behind>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Refuses queries, with `behind` as the reason.
    pub fn close(&self, behind: Behind) {
        self.with(|g| *g = Some(behind));
    }

    /// Answers queries again.
    pub fn open(&self) {
        self.with(|g| *g = None);
    }

    /// `Err(LostEvents)` while closed.
    pub fn check(&self) -> Result<(), Error> {
        self.with(|g| g.map_or(Ok(()), |b| Err(Error::LostEvents(b))))
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

/// Checks once; when behind, logs why, closes `gate` now, and holds `readiness` back until a
/// rebuild (in the background). `Ok(())` means checked (behind or not).
pub async fn check_and_hold(
    store: &Store,
    events: &EventStore,
    durable: &str,
    readiness: &Readiness,
    gate: &Gate,
    shutdown: &Shutdown,
) -> Result<(), Error> {
    if let Some(b) = check(store, events, durable).await? {
        tracing::error!(
            generation = b.generation,
            checkpoint = b.checkpoint,
            ack_floor = b.ack_floor,
            "{b}"
        );
        gate.close(b);
        tokio::spawn(hold_until_rebuilt(
            store.clone(),
            b,
            readiness.part("read model holds the log"),
            gate.clone(),
            Duration::from_secs(2),
            shutdown.clone(),
        ));
    }
    Ok(())
}

/// Holds `part` unready and `gate` closed until a rebuild has made another generation active
/// whose checkpoint is not behind the floor found, checking every `every`.
pub async fn hold_until_rebuilt(
    store: Store,
    behind: Behind,
    part: ReadinessPart,
    gate: Gate,
    every: Duration,
    shutdown: Shutdown,
) {
    part.set(false);
    gate.close(behind);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let rebuilt = async {
            let g = store.active().await?;
            if g.number == behind.generation {
                return Ok::<_, Error>(false);
            }
            Ok(store.checkpoint_of(&g).await? >= behind.ack_floor)
        };
        match rebuilt.await {
            Ok(true) => {
                tracing::info!(
                    generation = behind.generation,
                    "a rebuild replaced the read model that was behind the log; ready"
                );
                gate.open();
                part.set(true);
                return;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot check whether the read model was rebuilt"),
        }
    }
}
