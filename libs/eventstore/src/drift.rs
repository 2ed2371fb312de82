//! Streams and consumers whose configuration drifted from what this version needs (an older
//! deployment, a hand edit, a restore from backup) are compared in full and brought back — or,
//! where JetStream cannot change a setting in place, start-up is refused naming the difference.
//! Keeping a drifted config silently is not an option: the projection's order depends on
//! `max_ack_pending = 1`, the log's safety on `deny_delete` and limits retention.

use async_nats::jetstream::{self, consumer::pull, stream};

use crate::StoreError;

/// One setting that differs: its name, what exists, what is wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The setting.
    pub setting: &'static str,
    /// Its current value.
    pub existing: String,
    /// The value this version needs.
    pub wanted: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {} (wanted {})",
            self.setting, self.existing, self.wanted
        )
    }
}

fn list(diffs: &[Difference]) -> String {
    diffs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

macro_rules! compare {
    ($out:ident, $existing:expr, $wanted:expr, $($field:ident),+) => {
        $(
            if $existing.$field != $wanted.$field {
                $out.push(Difference {
                    setting: stringify!($field),
                    existing: format!("{:?}", $existing.$field),
                    wanted: format!("{:?}", $wanted.$field),
                });
            }
        )+
    };
}

/// Settings of a stream that differ (those Tenantry sets). The first list can be updated in
/// place; the second cannot.
pub fn stream_differences(
    existing: &stream::Config,
    wanted: &stream::Config,
) -> (Vec<Difference>, Vec<Difference>) {
    let mut updatable = Vec::new();
    compare!(
        updatable,
        existing,
        wanted,
        subjects,
        num_replicas,
        duplicate_window,
        allow_direct,
        discard,
        max_age,
        allow_rollup,
        deny_delete,
        description
    );
    // The server reports "no limit" as -1 whether it was sent as 0 or -1.
    let limit = |v: i64| if v <= 0 { -1 } else { v };
    for (setting, e, w) in [
        ("max_messages", existing.max_messages, wanted.max_messages),
        ("max_bytes", existing.max_bytes, wanted.max_bytes),
        (
            "max_messages_per_subject",
            existing.max_messages_per_subject,
            wanted.max_messages_per_subject,
        ),
    ] {
        if limit(e) != limit(w) {
            updatable.push(Difference {
                setting,
                existing: e.to_string(),
                wanted: w.to_string(),
            });
        }
    }
    let mut fixed = Vec::new();
    compare!(fixed, existing, wanted, storage, retention);
    (updatable, fixed)
}

/// `wanted`, keeping the existing replica count when it asks for fewer: a process started
/// without `--nats-replicas` (an operator's `tenantctl`, a forgotten env) must not shrink a
/// cluster's R3 log to one copy. Raising replicas is an update like any other.
pub fn never_fewer_replicas(
    existing: &stream::Config,
    mut wanted: stream::Config,
) -> stream::Config {
    if wanted.num_replicas < existing.num_replicas {
        tracing::warn!(
            stream = %wanted.name,
            existing = existing.num_replicas,
            asked = wanted.num_replicas,
            "keeping the stream's replicas: Tenantry never lowers them (change them with the nats CLI if you mean it)"
        );
        wanted.num_replicas = existing.num_replicas;
    }
    wanted
}

/// Brings an existing stream to `wanted`, or refuses with what differs.
pub async fn reconcile_stream(
    js: &jetstream::Context,
    existing: &stream::Config,
    wanted: stream::Config,
) -> Result<(), StoreError> {
    let wanted = never_fewer_replicas(existing, wanted);
    let (updatable, fixed) = stream_differences(existing, &wanted);
    if !fixed.is_empty() {
        return Err(StoreError::Config(format!(
            "stream {} was created with settings JetStream cannot change in place: {}; \
             back it up and recreate it (see the README's recovery section)",
            wanted.name,
            list(&fixed)
        )));
    }
    if updatable.is_empty() {
        return Ok(());
    }
    tracing::warn!(stream = %wanted.name, differences = %list(&updatable), "stream configuration drifted; updating it");
    let name = wanted.name.clone();
    js.update_stream(wanted).await.map_err(|e| {
        StoreError::Config(format!(
            "stream {name} differs from what this version needs ({}) and JetStream refused the update: {e}",
            list(&updatable)
        ))
    })?;
    Ok(())
}

/// Settings of a durable pull consumer that differ (those Tenantry sets; the start position
/// of an existing durable is never compared: it only matters at creation).
pub fn consumer_differences(existing: &pull::Config, wanted: &pull::Config) -> Vec<Difference> {
    let mut out = Vec::new();
    compare!(
        out,
        existing,
        wanted,
        filter_subject,
        ack_policy,
        ack_wait,
        max_deliver,
        backoff,
        max_ack_pending
    );
    out
}

/// Brings an existing durable consumer to `wanted` (keeping its start position), or refuses
/// with what differs.
pub async fn reconcile_consumer(
    stream: &stream::Stream,
    existing: &pull::Config,
    mut wanted: pull::Config,
) -> Result<(), StoreError> {
    let diffs = consumer_differences(existing, &wanted);
    if diffs.is_empty() {
        return Ok(());
    }
    let durable = wanted.durable_name.clone().unwrap_or_default();
    tracing::warn!(%durable, differences = %list(&diffs), "consumer configuration drifted; updating it");
    wanted.deliver_policy = existing.deliver_policy;
    stream
        .create_consumer(wanted)
        .await
        .map_err(|e| {
            StoreError::Config(format!(
                "durable consumer {durable} differs from what this version needs ({}) and \\
                 JetStream refused the update: {e}; delete the consumer so it is recreated \\
                 (`nats consumer rm`), its position is rebuilt from the log",
                list(&diffs)
            ))
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn replicas_are_raised_but_never_lowered() {
        let existing = stream::Config {
            name: "S".into(),
            num_replicas: 3,
            ..Default::default()
        };
        let one = stream::Config {
            num_replicas: 1,
            ..existing.clone()
        };
        let kept = never_fewer_replicas(&existing, one);
        assert_eq!(kept.num_replicas, 3);
        assert!(stream_differences(&existing, &kept).0.is_empty());
        let five = stream::Config {
            num_replicas: 5,
            ..existing.clone()
        };
        assert_eq!(never_fewer_replicas(&existing, five).num_replicas, 5);
    }

    #[test]
    fn names_every_setting_that_differs() {
        let wanted = pull::Config {
            durable_name: Some("d".into()),
            max_ack_pending: 1,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        };
        assert!(consumer_differences(&wanted, &wanted).is_empty());
        let drifted = pull::Config {
            max_ack_pending: 64,
            ..wanted.clone()
        };
        let diffs = consumer_differences(&drifted, &wanted);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].to_string(), "max_ack_pending is 64 (wanted 1)");

        let s = stream::Config {
            name: "S".into(),
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let mem = stream::Config {
            storage: stream::StorageType::Memory,
            duplicate_window: Duration::from_secs(1),
            ..s.clone()
        };
        let (updatable, fixed) = stream_differences(&mem, &s);
        assert_eq!(updatable.len(), 1);
        assert_eq!(fixed.len(), 1);
        assert_eq!(fixed[0].setting, "storage");
    }
}
