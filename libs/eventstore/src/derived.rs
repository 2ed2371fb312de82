//! KV buckets whose content follows from the log (subdomain claims, placements, bench counters,
//! pool entries, idempotency answers), and what rebuilding one from the log shares.
//!
//! A rebuild is create-only: a key the bucket does not know is written with what the log says; a
//! key it knows — also one it deleted, which is the live system moving ahead of the log — is
//! compared and, when it differs, reported and left alone for an operator to judge. Each bucket
//! carries a marker under [`RECOVERY_KEY`]: `in-progress` while a rebuild runs (services stay
//! closed, since a key not restored yet must not be handed out), `done` once one finished — which
//! also makes a rebuilt bucket non-empty, so "empty while the log holds events" stays an exact
//! sign that a bucket was lost.

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use bytes::Bytes;
use serde::Serialize;

use crate::StoreError;

/// The marker's key; `_` is in no subdomain, tenant id, bench name or hash, so it never
/// collides with a real key.
pub const RECOVERY_KEY: &str = "_recovery";

/// A bucket's recovery marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A rebuild is running, or was cut short.
    InProgress,
    /// A rebuild finished.
    Done,
}

impl Marker {
    fn bytes(self) -> &'static [u8] {
        match self {
            Marker::InProgress => b"in-progress",
            Marker::Done => b"done",
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The marker `kv` holds, if any (anything but `done` reads as in progress).
pub async fn marker(kv: &kv::Store) -> Result<Option<Marker>, StoreError> {
    Ok(kv.get(RECOVERY_KEY).await.map_err(unavailable)?.map(|v| {
        if v.as_ref() == Marker::Done.bytes() {
            Marker::Done
        } else {
            Marker::InProgress
        }
    }))
}

/// Writes the marker.
pub async fn set_marker(kv: &kv::Store, m: Marker) -> Result<(), StoreError> {
    kv.put(RECOVERY_KEY, Bytes::from_static(m.bytes()))
        .await
        .map(drop)
        .map_err(unavailable)
}

/// Whether `kv` holds nothing at all — no key, no deletion, no marker: it was lost (or never
/// written). Asked of the server each time: `kv::Store::status` answers what the stream held
/// when the handle was opened, which a long-running service would read as "still empty"
/// forever.
pub async fn is_empty(kv: &kv::Store) -> Result<bool, StoreError> {
    let mut stream = kv.stream.clone();
    Ok(stream.info().await.map_err(unavailable)?.state.messages == 0)
}

/// Every key `kv` holds but the marker.
pub async fn keys(kv: &kv::Store) -> Result<Vec<String>, StoreError> {
    use futures::TryStreamExt;
    let keys: Vec<String> = kv
        .keys()
        .await
        .map_err(unavailable)?
        .try_collect()
        .await
        .map_err(unavailable)?;
    Ok(keys.into_iter().filter(|k| k != RECOVERY_KEY).collect())
}

/// What a service's recovery read and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// Events read.
    pub events: u64,
    /// One report per bucket.
    pub buckets: Vec<BucketReport>,
}

/// What rebuilding one bucket found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BucketReport {
    /// The bucket (without namespace).
    pub bucket: String,
    /// Keys the log and the bucket agree on.
    pub matching: u64,
    /// Keys written (or, in a dry run, that would be), as `key` or `key: what`.
    pub restored: Vec<String>,
    /// Keys whose value differs from the log's: left alone.
    pub differing: Vec<Differing>,
}

impl BucketReport {
    /// An empty report for `bucket`.
    pub fn new(bucket: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            ..Self::default()
        }
    }
}

/// A key a rebuild left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Differing {
    /// The key.
    pub key: String,
    /// What the log says it should hold.
    pub in_log: String,
    /// What the bucket holds instead.
    pub in_bucket: String,
}

/// Restores one key create-only (see the module docs). `held` describes a value the bucket
/// holds, `None` when it equals the log's (`wanted`, described as `in_log`).
pub async fn restore_key(
    kv: &kv::Store,
    key: &str,
    wanted: Bytes,
    in_log: &str,
    held: impl FnOnce(&[u8]) -> Option<String>,
    dry_run: bool,
    report: &mut BucketReport,
) -> Result<(), StoreError> {
    let differ = |report: &mut BucketReport, in_bucket: String| {
        report.differing.push(Differing {
            key: key.to_owned(),
            in_log: in_log.to_owned(),
            in_bucket,
        });
    };
    match kv.entry(key).await.map_err(unavailable)? {
        Some(e) if e.operation == Operation::Put => match held(&e.value) {
            None => report.matching += 1,
            Some(other) => differ(report, other),
        },
        Some(_) => differ(report, "deleted".to_owned()),
        None if dry_run => report.restored.push(key.to_owned()),
        None => match kv.create(key, wanted).await {
            Ok(_) => report.restored.push(key.to_owned()),
            // Written meanwhile (work in flight): that value stands.
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                differ(report, "written during the recovery".to_owned());
            }
            Err(e) => return Err(unavailable(e)),
        },
    }
    Ok(())
}
