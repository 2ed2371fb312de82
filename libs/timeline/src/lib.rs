//! Where a unit of work spends its time. A caller scopes its work with a [`Timeline`]; inside
//! the scope (in the same task, parallel lanes included):
//! - [`outside`] marks time spent outside the control plane — bench commands, REST calls,
//!   waits for a bench's capacity. [`Timeline::external`] is the union of those intervals, and
//!   wall time minus it is what the control plane itself cost.
//! - [`within`] marks time the control plane spent in one of its own dependencies (the vault,
//!   the event store), by kind: [`Timeline::own`] says where that cost went.
//!
//! Outside a scope both are pass-throughs, so libraries can mark their calls unconditionally.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

tokio::task_local! {
    static CURRENT: Timeline;
}

#[derive(Default)]
struct Marks {
    external: Vec<(Instant, Instant)>,
    own: BTreeMap<&'static str, Duration>,
}

/// The marked intervals of one unit of work. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Timeline(Arc<Mutex<Marks>>);

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `work` with this timeline receiving its marks.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        CURRENT.scope(self.clone(), work).await
    }

    fn with<R>(&self, f: impl FnOnce(&mut Marks) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The time covered by at least one external interval (overlaps counted once).
    pub fn external(&self) -> Duration {
        let mut spans = self.with(|m| m.external.clone());
        spans.sort_by_key(|s| s.0);
        let mut total = Duration::ZERO;
        let mut current: Option<(Instant, Instant)> = None;
        for (start, end) in spans {
            match &mut current {
                Some((_, e)) if start <= *e => *e = (*e).max(end),
                _ => {
                    if let Some((s, e)) = current.replace((start, end)) {
                        total += e - s;
                    }
                }
            }
        }
        if let Some((s, e)) = current {
            total += e - s;
        }
        total
    }

    /// Time spent in each kind of the control plane's own dependencies, summed per kind (calls
    /// in parallel lanes each count).
    pub fn own(&self) -> BTreeMap<&'static str, Duration> {
        self.with(|m| m.own.clone())
    }

    /// Time spent in one kind of dependency (zero when none was marked).
    pub fn own_of(&self, kind: &str) -> Duration {
        self.with(|m| m.own.get(kind).copied().unwrap_or_default())
    }
}

/// Runs `f`, counting its time as external to the current timeline (if any).
pub async fn outside<F: Future>(f: F) -> F::Output {
    let start = Instant::now();
    let out = Box::pin(f).await;
    let end = Instant::now();
    let _ = CURRENT.try_with(|t| t.with(|m| m.external.push((start, end))));
    out
}

/// Runs `f`, counting its time as the control plane's own, spent in a dependency of `kind`.
pub async fn within<F: Future>(kind: &'static str, f: F) -> F::Output {
    let start = Instant::now();
    // Boxed: the wrapped futures (a step's placement, a vault call with its retries) are large,
    // and inline in a step loop they overflow a debug build's worker stack.
    let out = Box::pin(f).await;
    let took = start.elapsed();
    let _ = CURRENT.try_with(|t| t.with(|m| *m.own.entry(kind).or_default() += took));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overlapping_lanes_count_once_and_gaps_not_at_all() {
        let t = Timeline::new();
        let started = Instant::now();
        t.scope(async {
            let sleep = |ms| outside(tokio::time::sleep(Duration::from_millis(ms)));
            // Two lanes side by side (60 ms union), a 40 ms gap of our own, then 30 ms more.
            tokio::join!(sleep(60), sleep(40));
            tokio::time::sleep(Duration::from_millis(40)).await;
            sleep(30).await;
        })
        .await;
        let wall = started.elapsed();
        let ext = t.external();
        assert!(ext >= Duration::from_millis(90), "{ext:?}");
        assert!(wall - ext >= Duration::from_millis(40), "{wall:?} {ext:?}");
        // Outside a scope nothing is recorded and nothing fails.
        outside(async {}).await;
        assert!(Timeline::new().external().is_zero());
    }

    #[tokio::test]
    async fn own_time_is_summed_by_kind_and_is_not_external() {
        let t = Timeline::new();
        t.scope(async {
            let vault = || within("vault", tokio::time::sleep(Duration::from_millis(20)));
            tokio::join!(vault(), vault());
            within("events", tokio::time::sleep(Duration::from_millis(10))).await;
        })
        .await;
        assert!(
            t.own_of("vault") >= Duration::from_millis(40),
            "{:?}",
            t.own()
        );
        assert!(t.own_of("events") >= Duration::from_millis(10));
        assert!(t.own_of("kv").is_zero());
        assert!(t.external().is_zero());
        within("vault", async {}).await;
    }
}
