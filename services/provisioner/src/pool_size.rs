//! How many standbys to keep per (bench, app set): enough that a signup finds one with the
//! target probability, given the signup rate seen and how long a replacement takes.
//!
//! The pool is a base-stock inventory: each claim orders a replacement that is ready one lead
//! time `T` later (a refill pass, then the build). With signups arriving at rate `λ` (Poisson),
//! the replacements in flight number Poisson(`λT`), and a signup is served from the pool exactly
//! when fewer than `S` are in flight — so a pool of `S` has hit ratio `P(Poisson(λT) ≤ S − 1)`.
//! The target is the smallest `S` reaching the configured ratio, spread over the benches that
//! can hold the app set and clamped per bench to `[min, max]`.
//!
//! Demand is shared by every instance (a KV entry per app set, see `standby::demand`): counts
//! that decay with the configured window, so the rate follows the signups of the last window
//! and no instance's restart forgets it. Pure: no I/O here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The adaptive policy (`[standby]` with `target_hit_ratio`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    /// Fewest standbys per (bench, app set), whatever the demand.
    pub min: u32,
    /// Most standbys per (bench, app set).
    pub max: u32,
    /// Wanted share of pooled signups served from the pool, in (0, 1).
    pub target_hit_ratio: f64,
    /// How far back the signup rate looks (the decay's time constant).
    pub window: Duration,
    /// Lead time assumed before any standby build has been measured.
    pub initial_build: Duration,
}

/// A count whose past events fade with time constant `window` (so `value / window` is the
/// recent rate), plus when counting began, which corrects the under-count of a young series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Decaying {
    /// The count as of `at_ms`.
    pub value: f64,
    /// Unix ms of the last update.
    pub at_ms: i64,
    /// Unix ms of the first update.
    pub since_ms: i64,
}

impl Decaying {
    /// The count decayed to `now_ms`.
    pub fn at(&self, now_ms: i64, window: Duration) -> f64 {
        let dt = (now_ms - self.at_ms).max(0) as f64 / 1000.0;
        self.value * (-dt / window.as_secs_f64().max(1e-3)).exp()
    }

    /// The count with `x` more at `now_ms`.
    pub fn add(self, now_ms: i64, window: Duration, x: f64) -> Self {
        Self {
            value: self.at(now_ms, window) + x,
            at_ms: now_ms,
            since_ms: if self.since_ms == 0 {
                now_ms
            } else {
                self.since_ms
            },
        }
    }

    /// Events per second over the recent window. A series younger than the window has seen
    /// only part of it: the decayed count is scaled up by what the window would have held —
    /// counting at least a tenth of the window as seen, so one first signup reads as one per
    /// tenth of a window, not as a flood.
    pub fn rate(&self, now_ms: i64, window: Duration) -> f64 {
        if self.since_ms == 0 {
            return 0.0;
        }
        let w = window.as_secs_f64().max(1e-3);
        let age = ((now_ms - self.since_ms).max(0) as f64 / 1000.0).max(w / 10.0);
        let seen = 1.0 - (-age / w).exp();
        self.at(now_ms, window) / (w * seen)
    }
}

/// What the pool of one app set has seen, shared by every instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Demand {
    /// Placements of tenants of pooled plans.
    pub placements: Decaying,
    /// Those served from the pool.
    pub hits: Decaying,
    /// Smoothed seconds from a build's start to its standby being ready.
    pub build_secs: Option<f64>,
}

impl Demand {
    /// Counts a placement at `now_ms`, from the pool (`hit`) or not.
    pub fn placed(self, now_ms: i64, window: Duration, hit: bool) -> Self {
        Self {
            placements: self.placements.add(now_ms, window, 1.0),
            hits: self.hits.add(now_ms, window, if hit { 1.0 } else { 0.0 }),
            ..self
        }
    }

    /// Counts a finished build that took `secs` (smoothed, so one slow build moves it a third).
    pub fn built(self, secs: f64) -> Self {
        Self {
            build_secs: Some(match self.build_secs {
                Some(old) => old + (secs - old) / 3.0,
                None => secs,
            }),
            ..self
        }
    }

    /// The share of recent placements served from the pool, once there are any.
    pub fn hit_ratio(&self, now_ms: i64, window: Duration) -> Option<f64> {
        let all = self.placements.at(now_ms, window);
        (all > 1e-9).then(|| (self.hits.at(now_ms, window) / all).clamp(0.0, 1.0))
    }
}

/// `P(X ≤ k)` for `X ~ Poisson(mean)`, summed in log space (no underflow for large means).
pub fn poisson_cdf(k: u32, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 1.0;
    }
    let mut log_term = -mean;
    let mut sum = log_term.exp();
    for i in 1..=k {
        log_term += mean.ln() - f64::from(i).ln();
        sum += log_term.exp();
    }
    sum.min(1.0)
}

/// Standbys to keep on each of `benches` benches for an app set with `demand`, when a refill
/// pass runs every `refill_every`.
pub fn per_bench(
    policy: &Adaptive,
    demand: &Demand,
    now_ms: i64,
    refill_every: Duration,
    benches: u32,
) -> u32 {
    if benches == 0 {
        return 0;
    }
    let rate = demand.placements.rate(now_ms, policy.window);
    let lead = demand
        .build_secs
        .unwrap_or(policy.initial_build.as_secs_f64())
        + refill_every.as_secs_f64();
    let mean = rate * lead;
    let cap = policy.max.saturating_mul(benches);
    let mut total = 0;
    while total < cap && poisson_cdf(total.saturating_sub(1), mean) < policy.target_hit_ratio {
        total += 1;
    }
    // `total == 0` has no "S − 1": a pool of zero never hits, unless nobody signs up.
    if total == 0 && mean > 0.0 {
        total = 1;
    }
    total.div_ceil(benches).clamp(policy.min, policy.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(600);

    fn policy(min: u32, max: u32) -> Adaptive {
        Adaptive {
            min,
            max,
            target_hit_ratio: 0.95,
            window: WINDOW,
            initial_build: Duration::from_secs(20),
        }
    }

    /// `rate` signups per second, steadily, for `secs` seconds.
    fn steady(rate: f64, secs: i64) -> Demand {
        let mut d = Demand::default();
        let step = (1000.0 / rate) as i64;
        let mut t = 1_000_000;
        while t < 1_000_000 + secs * 1000 {
            d = d.placed(t, WINDOW, true);
            t += step;
        }
        d
    }

    #[test]
    fn the_poisson_cdf_matches_known_values() {
        assert!((poisson_cdf(0, 1.0) - (-1.0f64).exp()).abs() < 1e-12);
        assert!((poisson_cdf(2, 2.0) - 5.0 * (-2.0f64).exp()).abs() < 1e-12);
        assert!(poisson_cdf(1000, 50.0) > 0.999_999);
        assert!(poisson_cdf(10, 2000.0) < 1e-12, "no underflow trouble");
        assert_eq!(poisson_cdf(0, 0.0), 1.0);
    }

    #[test]
    fn the_rate_follows_the_signups_seen_and_fades_without_them() {
        let d = steady(0.5, 3600);
        let end = 1_000_000 + 3600 * 1000;
        let r = d.placements.rate(end, WINDOW);
        assert!((r - 0.5).abs() < 0.05, "steady rate {r}");
        // Young series: two minutes of 1/s already read about 1/s, not a fifth of it.
        let young = steady(1.0, 120).placements.rate(1_120_000, WINDOW);
        assert!((young - 1.0).abs() < 0.15, "young rate {young}");
        // One first signup reads as one per tenth of the window.
        let first = Demand::default().placed(5_000, WINDOW, false);
        let r = first.placements.rate(5_000, WINDOW);
        assert!(
            (r * 60.0 - 1.0 / (1.0 - (-0.1f64).exp()) / 10.0).abs() < 0.01,
            "{r}"
        );
        // An hour of silence later, little is left.
        assert!(d.placements.rate(end + 3_600_000, WINDOW) < 0.01);
    }

    #[test]
    fn the_pool_grows_with_demand_and_stays_within_bounds() {
        let now = 1_000_000 + 3600 * 1000;
        let every = Duration::from_secs(5);
        let quiet = Demand::default();
        assert_eq!(per_bench(&policy(0, 10), &quiet, now, every, 2), 0);
        assert_eq!(per_bench(&policy(1, 10), &quiet, now, every, 2), 1);
        let slow = steady(0.01, 3600).built(20.0);
        let busy = steady(0.5, 3600).built(20.0);
        let (s, b) = (
            per_bench(&policy(0, 50), &slow, now, every, 1),
            per_bench(&policy(0, 50), &busy, now, every, 1),
        );
        assert!(s >= 1 && b > s, "slow {s}, busy {b}");
        // λT ≈ 0.5 × (20 + 5) = 12.5 → the smallest S with P(X ≤ S−1) ≥ 0.95, which is 20.
        let mean = busy.placements.rate(now, WINDOW) * 25.0;
        assert!(poisson_cdf(b - 1, mean) >= 0.95 && poisson_cdf(b - 2, mean) < 0.95);
        assert!((19..=21).contains(&b), "{b}");
        // Spread over benches, capped per bench.
        assert_eq!(
            per_bench(&policy(0, 50), &busy, now, every, 4),
            b.div_ceil(4)
        );
        assert_eq!(per_bench(&policy(0, 3), &busy, now, every, 4), 3);
        // Longer builds need more standbys for the same rate.
        let slower = steady(0.5, 3600).built(60.0);
        assert!(per_bench(&policy(0, 100), &slower, now, every, 1) > b);
    }

    #[test]
    fn the_hit_ratio_is_the_recent_share_served_from_the_pool() {
        let mut d = Demand::default();
        assert_eq!(d.hit_ratio(0, WINDOW), None);
        for i in 0..100 {
            d = d.placed(1_000 + i * 1000, WINDOW, i % 4 != 0);
        }
        let r = d.hit_ratio(101_000, WINDOW).unwrap();
        assert!((r - 0.75).abs() < 0.03, "{r}");
        let smoothed = Demand::default().built(10.0).built(40.0);
        assert_eq!(smoothed.build_secs, Some(20.0));
    }
}
