//! Where a unit of work spends its time outside the control plane: in bench commands, REST
//! calls and waits for a bench's capacity. A caller scopes its work with a [`Timeline`]; every
//! bench command and REST call made inside the scope (in the same task, parallel lanes
//! included) records its interval, and [`Timeline::external`] is their union. Wall time minus
//! that is what the control plane itself cost.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

tokio::task_local! {
    static CURRENT: Timeline;
}

/// The external intervals of one unit of work. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Timeline(Arc<Mutex<Vec<(Instant, Instant)>>>);

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `work` with this timeline receiving its external intervals.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        CURRENT.scope(self.clone(), work).await
    }

    /// The time covered by at least one external interval (overlaps counted once).
    pub fn external(&self) -> Duration {
        let mut spans = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
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
}

/// Runs `f`, counting its time as external to the current timeline (if any).
pub async fn outside<F: Future>(f: F) -> F::Output {
    let start = Instant::now();
    let out = f.await;
    let end = Instant::now();
    let _ = CURRENT.try_with(|t| {
        t.0.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((start, end));
    });
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
}
