//! In-process rate limits over string keys (client address, email), on `governor`'s GCRA.
//!
//! A key may spend `limit` requests at once and then earns one back every `window / limit`:
//! "`limit` per window" without the bursts at window edges that fixed windows allow. The budget
//! lives in this process: with several gateway instances behind a balancer each enforces it on
//! its own, so the effective limit is N × instances; a shared budget (NATS KV counters) can
//! replace this without changing callers.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Gcra};

/// How many checks pass between sweeps of keys whose budget is full again.
const SWEEP_EVERY: u64 = 1024;

/// governor's keyed limiter over `C`.
type Keyed<C> =
    Gcra<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A keyed limiter. `limit == 0` disables it.
pub struct RateLimiter<C: Clock + Clone = DefaultClock> {
    // `None` when disabled.
    inner: Option<Keyed<C>>,
    clock: C,
    checks: std::sync::atomic::AtomicU64,
}

impl<C: Clock + Clone> std::fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// At most `limit` requests per key per `window` (sustained), `limit` at once.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self::with_clock(limit, window, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// [`RateLimiter::new`] on another clock (tests use a fake one).
    pub fn with_clock(limit: u32, window: Duration, clock: C) -> Self {
        let inner = NonZeroU32::new(limit).and_then(|burst| {
            let period = (window / burst.get()).max(Duration::from_nanos(1));
            Quota::with_period(period)
                .map(|q| Gcra::dashmap_with_clock(q.allow_burst(burst), clock.clone()))
        });
        Self {
            inner,
            clock,
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Spends one request of `key`'s budget; `Err(retry_after)` when it has none left (a
    /// refused request does not spend budget).
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Keys whose budget has refilled hold no information: drop them so memory follows
            // the number of recently active clients, not every client ever seen.
            limiter.retain_recent();
        }
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Keys currently tracked (for tests of the sweep).
    pub fn tracked_keys(&self) -> usize {
        self.inner.as_ref().map_or(0, Gcra::len)
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn the_limit_plus_one_is_refused_until_budget_is_earned_back() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(3, Duration::from_secs(60), clock.clone());
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let retry = limiter.check("a").unwrap_err();
        // One request is earned back every 20 s.
        assert_eq!(retry, Duration::from_secs(20));
        // Other keys have their own budget.
        assert!(limiter.check("b").is_ok());
        clock.advance(Duration::from_secs(20));
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_err());
    }

    #[test]
    fn zero_disables_and_idle_keys_are_swept() {
        let off = RateLimiter::new(0, Duration::from_secs(1));
        assert!((0..100).all(|_| off.check("a").is_ok()));

        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(1, Duration::from_secs(1), clock.clone());
        for i in 0..SWEEP_EVERY {
            let _ = limiter.check(&format!("k{i}"));
        }
        clock.advance(Duration::from_secs(5));
        for _ in 0..SWEEP_EVERY {
            let _ = limiter.check("same");
        }
        assert!(
            limiter.tracked_keys() < 10,
            "{} keys kept",
            limiter.tracked_keys()
        );
    }
}

/// At most `limit` successes per key per `window`, counted only when they happen: a budget of
/// outcomes, not of attempts, so a client retrying through an outage (each attempt failing
/// cleanly) does not lock its own email out. Two requests racing past [`SuccessBudget::check`]
/// may both succeed: the overshoot is bounded by the concurrency of one key.
#[derive(Debug)]
pub struct SuccessBudget {
    limit: usize,
    window: Duration,
    // A plain mutex: a few deque operations per call, never held across an await.
    seen: std::sync::Mutex<
        std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>,
    >,
}

impl SuccessBudget {
    /// `limit` successes per `window`; 0 disables it.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            window,
            seen: std::sync::Mutex::default(),
        }
    }

    /// `Err(retry_after)` when `key` already had `limit` successes within the window.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        if self.limit == 0 {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = seen.get_mut(key) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.is_empty() {
            seen.remove(key);
            return Ok(());
        }
        if times.len() >= self.limit {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        Ok(())
    }

    /// Counts a success of `key`.
    pub fn record(&self, key: &str) {
        if self.limit == 0 {
            return;
        }
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Keys with nothing in the window hold no information.
        if seen.len() > 10_000 {
            let window = self.window;
            seen.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        seen.entry(key.to_owned()).or_default().push_back(now);
    }
}

#[cfg(test)]
mod success_budget_tests {
    use super::*;

    #[test]
    fn only_recorded_successes_count() {
        let budget = SuccessBudget::new(2, Duration::from_secs(3600));
        // Attempts that never succeed spend nothing.
        for _ in 0..10 {
            assert!(budget.check("a@x.io").is_ok());
        }
        budget.record("a@x.io");
        budget.record("a@x.io");
        let wait = budget.check("a@x.io").unwrap_err();
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
        assert!(budget.check("b@x.io").is_ok(), "budgets are per key");
        assert!(
            SuccessBudget::new(0, Duration::from_secs(1))
                .check("a")
                .is_ok()
        );
    }
}
