//! Background jobs, as a real bench's RQ workers see them: a REST insert of a User enqueues
//! `create_contact` and `update_gravatar` keyed by the site's name *at enqueue time*; a worker
//! runs them a moment later and fails any whose site no longer exists under that name (what
//! happens to a standby's jobs when a claim renames it first; tests/fixtures/frappe/README.md).
//!
//! State lives in `<bench>/sim-jobs.json` (queued and failed jobs) under a file lock, so the
//! `serve` process (which enqueues and runs jobs) and `execute get_jobs` (a separate CLI
//! process) share it.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::sim::{Profile, Settings};

/// One job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Job {
    /// The site's name when it was enqueued.
    pub site: String,
    /// `job_name` (the dotted method).
    pub job_name: String,
    /// Unix ms when enqueued.
    pub enqueued_ms: i64,
    /// Why it failed (failed jobs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Jobs {
    queued: Vec<Job>,
    failed: Vec<Job>,
}

/// What a User insert enqueues.
pub const USER_INSERT_JOBS: [&str; 2] = [
    "frappe.core.doctype.user.user.create_contact",
    "frappe.core.doctype.user.user.update_gravatar",
];

fn with_jobs<R>(bench: &Path, f: impl FnOnce(&mut Jobs) -> R) -> std::io::Result<R> {
    crate::sim::with_locked_json(bench, "sim-jobs", f)
}

/// Enqueues `names` for `site`.
pub fn enqueue(bench: &Path, site: &str, names: &[&str]) {
    let now = chrono::Utc::now().timestamp_millis();
    let _ = with_jobs(bench, |j| {
        j.queued.extend(names.iter().map(|n| Job {
            site: site.to_owned(),
            job_name: (*n).to_owned(),
            enqueued_ms: now,
            error: None,
        }));
    });
}

/// `frappe.utils.background_jobs.get_jobs(site, queue, key)`: queued (and running) jobs per
/// site, optionally of one site.
pub fn get_jobs(bench: &Path, site: Option<&str>) -> Value {
    let queued = with_jobs(bench, |j| j.queued.clone()).unwrap_or_default();
    let mut out = Map::new();
    for job in queued
        .into_iter()
        .filter(|j| site.is_none_or(|s| s == j.site))
    {
        if let Value::Array(list) = out.entry(job.site.clone()).or_insert_with(|| json!([])) {
            list.push(json!(job.job_name));
        }
    }
    Value::Object(out)
}

/// Jobs that failed (tests outside read `sim-jobs.json`).
#[cfg(test)]
fn failed(bench: &Path) -> Vec<Job> {
    with_jobs(bench, |j| j.failed.clone()).unwrap_or_default()
}

/// How long a job waits in the queue before a worker runs it.
fn pickup(settings: &Settings) -> Duration {
    match settings.profile {
        Profile::Realistic => Duration::from_millis(400).mul_f64(settings.scale),
        Profile::Instant => Duration::from_millis(300),
    }
}

/// Runs due jobs once: a job whose site directory is gone fails as RQ's does.
pub fn run_due(bench: &Path, settings: &Settings) {
    let due_before = chrono::Utc::now().timestamp_millis()
        - i64::try_from(pickup(settings).as_millis()).unwrap_or(0);
    let _ = with_jobs(bench, |j| {
        let (due, later): (Vec<Job>, Vec<Job>) = std::mem::take(&mut j.queued)
            .into_iter()
            .partition(|job| job.enqueued_ms <= due_before);
        j.queued = later;
        for mut job in due {
            let config = bench.join("sites").join(&job.site).join("site_config.json");
            if !config.exists() {
                job.error = Some(format!(
                    "frappe.exceptions.IncorrectSitePath: 404 Not Found: {} does not exist",
                    job.site
                ));
                j.failed.push(job);
            }
        }
    });
}

/// The worker loop of `serve`.
pub async fn worker(bench: std::path::PathBuf, settings: Settings) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        run_due(&bench, &settings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_of_a_renamed_site_fails_and_one_of_a_present_site_runs() {
        let dir = tempfile::tempdir().unwrap();
        let bench = dir.path();
        std::fs::create_dir_all(bench.join("sites/a.localhost")).unwrap();
        std::fs::write(bench.join("sites/a.localhost/site_config.json"), "{}").unwrap();
        enqueue(bench, "a.localhost", &USER_INSERT_JOBS);
        enqueue(bench, "standby-1.localhost", &USER_INSERT_JOBS[..1]);
        let all = get_jobs(bench, None);
        assert_eq!(all["a.localhost"].as_array().unwrap().len(), 2);
        assert_eq!(
            get_jobs(bench, Some("standby-1.localhost")),
            json!({"standby-1.localhost": [USER_INSERT_JOBS[0]]})
        );
        std::thread::sleep(Duration::from_millis(350));
        run_due(bench, &Settings::default());
        assert_eq!(get_jobs(bench, None), json!({}));
        let failed = failed(bench);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].site, "standby-1.localhost");
        assert!(
            failed[0]
                .error
                .as_deref()
                .unwrap()
                .contains("does not exist")
        );
    }
}
