//! Provisioner metrics: step durations, in-flight operations per bench, failures by step.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepBenchLabels {
    step: String,
    /// The bench the step ran on (`none` before a placement).
    bench: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    /// `pool` (a standby was claimed) or `cold` (the site was built for the tenant).
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BenchLabels {
    bench: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    /// The pooled app set (`erpnext`, `frappe` for none).
    apps: String,
    /// `hit` (a standby was claimed) or `miss` (built cold).
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolSetLabels {
    apps: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolSlotLabels {
    bench: String,
    apps: String,
}

type Ratio = Gauge<f64, std::sync::atomic::AtomicU64>;

fn step_histogram() -> Histogram {
    // 50 ms … ~7 min: REST calls to new-site with large apps.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.05, 2.0, 14,
    ))
}

fn provisioned_histogram() -> Histogram {
    // 250 ms … ~34 min: a pooled signup to a cold build behind a queue.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.25, 2.0, 14,
    ))
}

/// Handles to the provisioner's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    step_seconds: Family<StepLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<BenchLabels, Gauge>,
    steps: Family<StepBenchLabels, Counter>,
    failures: Family<StepBenchLabels, Counter>,
    provisioned: Family<PathLabels, Histogram, fn() -> Histogram>,
    pool_ready: Family<PoolSlotLabels, Gauge>,
    pool: Family<PoolLabels, Counter>,
    hit_ratio: Family<PoolSetLabels, Ratio>,
    pool_target: Family<PoolSlotLabels, Gauge>,
    overhead: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            step_seconds: Family::new_with_constructor(step_histogram),
            in_flight: Family::default(),
            steps: Family::default(),
            failures: Family::default(),
            provisioned: Family::new_with_constructor(provisioned_histogram),
            pool_ready: Family::default(),
            pool: Family::default(),
            hit_ratio: Family::default(),
            pool_target: Family::default(),
            // 1 ms … ~16 s.
            overhead: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 15,
            )),
        }
    }
}

impl Metrics {
    /// New metrics registered in `registry`.
    pub fn register(registry: &svc::Metrics) -> Self {
        let m = Self::default();
        registry.register(
            "provisioner_step_duration_seconds",
            "Wall time of each provisioning step",
            m.step_seconds.clone(),
        );
        registry.register(
            "provisioner_bench_operations_in_flight",
            "Bench operations running now, per bench (this instance)",
            m.in_flight.clone(),
        );
        registry.register(
            "provisioner_steps",
            "Step attempts, failed ones included, by step and bench",
            m.steps.clone(),
        );
        registry.register(
            "provisioner_step_failures",
            "Failed step attempts, by step and bench",
            m.failures.clone(),
        );
        registry.register(
            "provisioner_time_to_provisioned_seconds",
            "From TenantRequested to TenantProvisioned, by path: pool (a standby claimed) or cold",
            m.provisioned.clone(),
        );
        registry.register(
            "provisioner_pool_ready",
            "Standbys ready to claim, per bench and app set (as the last refill pass saw them)",
            m.pool_ready.clone(),
        );
        registry.register(
            "provisioner_pool_placements",
            "Placements of tenants whose plan is pooled, by outcome: hit (a standby was claimed) \
             or miss (built cold); the hit ratio is hit / (hit + miss)",
            m.pool.clone(),
        );
        registry.register(
            "provisioner_pool_hit_ratio",
            "Share of recent pooled placements served from the pool (decaying over the demand \
             window, shared by all instances), per app set",
            m.hit_ratio.clone(),
        );
        registry.register(
            "provisioner_pool_target",
            "Standbys the pool keeps ready per bench and app set (fixed, or sized by demand)",
            m.pool_target.clone(),
        );
        registry.register(
            "provisioner_overhead_seconds",
            "Per provisioning (signup to TenantProvisioned, in one run): wall time not spent in \
             bench commands, REST calls or waits for a bench slot — the control plane's own cost",
            m.overhead.clone(),
        );
        m
    }

    /// Records one provisioning's control-plane time.
    pub fn overhead(&self, seconds: f64) {
        self.overhead.observe(seconds);
    }

    /// Sets the pool's recent hit ratio for an app set.
    pub fn pool_hit_ratio(&self, apps: &str, ratio: f64) {
        self.hit_ratio
            .get_or_create(&PoolSetLabels {
                apps: apps.to_owned(),
            })
            .set(ratio);
    }

    /// Sets how many standbys a (bench, app set) keeps.
    pub fn pool_target(&self, bench: &str, apps: &str, target: u32) {
        self.pool_target
            .get_or_create(&PoolSlotLabels {
                bench: bench.to_owned(),
                apps: apps.to_owned(),
            })
            .set(i64::from(target));
    }

    /// Counts a placement of a pooled plan's tenant: from the pool (`hit`) or cold.
    pub fn pool_placement(&self, apps: &str, hit: bool) {
        self.pool
            .get_or_create(&PoolLabels {
                apps: apps.to_owned(),
                outcome: if hit { "hit" } else { "miss" }.to_owned(),
            })
            .inc();
    }

    /// Records a successful step attempt and its duration.
    pub fn step_done(&self, step: &str, bench: &str, seconds: f64) {
        self.step_seconds
            .get_or_create(&StepLabels {
                step: step.to_owned(),
            })
            .observe(seconds);
        self.steps
            .get_or_create(&StepBenchLabels {
                step: step.to_owned(),
                bench: bench.to_owned(),
            })
            .inc();
    }

    /// Counts a failed attempt of a step.
    pub fn step_failed(&self, step: &str, bench: &str) {
        let labels = StepBenchLabels {
            step: step.to_owned(),
            bench: bench.to_owned(),
        };
        self.failures.get_or_create(&labels).inc();
        self.steps.get_or_create(&labels).inc();
    }

    /// Records how long a tenant waited from its signup to its site, by path.
    pub fn provisioned(&self, from_pool: bool, seconds: f64) {
        self.provisioned
            .get_or_create(&PathLabels {
                path: if from_pool { "pool" } else { "cold" }.to_owned(),
            })
            .observe(seconds);
    }

    /// Sets how many standbys of an app set are ready on a bench.
    pub fn pool_ready(&self, bench: &str, apps: &str, ready: u32) {
        self.pool_ready
            .get_or_create(&PoolSlotLabels {
                bench: bench.to_owned(),
                apps: apps.to_owned(),
            })
            .set(i64::from(ready));
    }

    /// Adds `delta` to the bench's in-flight gauge.
    pub fn in_flight(&self, bench: &str, delta: i64) {
        self.in_flight
            .get_or_create(&BenchLabels {
                bench: bench.to_owned(),
            })
            .inc_by(delta);
    }
}
