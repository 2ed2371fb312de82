//! In-process sliding-window rate limits (per client address, per email).
//!
//! Each key keeps the instants of its last `limit` accepted requests; a request is accepted when
//! fewer than `limit` of them fall inside the window. That is exact ("at most N in any window"),
//! and memory per key is bounded by the limit. The budget lives in this process: with several
//! gateway instances behind a balancer each one enforces the limit on its own, so the effective
//! limit is N × instances; a shared budget (NATS KV counters) can replace this later without
//! changing callers.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many checks pass between sweeps of idle keys.
const SWEEP_EVERY: u64 = 1024;

/// A sliding-window limiter over string keys. `limit == 0` disables it.
#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    // A plain mutex: the critical section is a few deque operations, never held across an await.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    hits: HashMap<String, VecDeque<Instant>>,
    checks: u64,
}

impl RateLimiter {
    /// At most `limit` requests per key in any `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit as usize,
            window,
            state: Mutex::new(State::default()),
        }
    }

    /// Records a request for `key` at `now`; `Err(retry_after)` when the key is over its limit
    /// (a refused request does not use up budget).
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.limit == 0 {
            return Ok(());
        }
        // A poisoned lock only means another request panicked mid-update; the counters are
        // still usable, and refusing every signup would be worse.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.checks += 1;
        if state.checks.is_multiple_of(SWEEP_EVERY) {
            let window = self.window;
            state.hits.retain(|_, q| {
                q.back()
                    .is_some_and(|last| now.saturating_duration_since(*last) < window)
            });
        }
        let hits = state.hits.entry(key.to_owned()).or_default();
        while hits
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            hits.pop_front();
        }
        if hits.len() >= self.limit {
            let oldest = hits.front().copied().unwrap_or(now);
            let retry_after = self
                .window
                .saturating_sub(now.saturating_duration_since(oldest));
            return Err(retry_after);
        }
        hits.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_plus_one_is_refused_until_the_window_slides() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(limiter.check("a", t0 + Duration::from_secs(i)).is_ok());
        }
        let retry = limiter
            .check("a", t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(retry, Duration::from_secs(50));
        // Other keys have their own budget.
        assert!(limiter.check("b", t0 + Duration::from_secs(10)).is_ok());
        // The first hit leaves the window at t0 + 60 s.
        assert!(limiter.check("a", t0 + Duration::from_secs(60)).is_ok());
        assert!(limiter.check("a", t0 + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn zero_disables_and_idle_keys_are_swept() {
        let off = RateLimiter::new(0, Duration::from_secs(1));
        let t0 = Instant::now();
        assert!((0..100).all(|_| off.check("a", t0).is_ok()));

        let limiter = RateLimiter::new(1, Duration::from_secs(1));
        for i in 0..SWEEP_EVERY {
            let _ = limiter.check(&format!("k{i}"), t0);
        }
        let later = t0 + Duration::from_secs(5);
        for i in 0..SWEEP_EVERY {
            let _ = limiter.check("same", later + Duration::from_secs(i));
        }
        let keys = limiter.state.lock().unwrap().hits.len();
        assert!(keys < 10, "{keys} keys kept");
    }
}
