//! Dead letters: events a subscription could not handle within `max_deliver` attempts.
//!
//! Nothing is dropped: the record says which consumer gave up on which stream sequence and
//! why; the event itself stays in the (limits-retention) log. `retry` sends the sequence back
//! to that consumer through a small work-queue stream, where its subscription picks it up.

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{EventStore, RecordedEvent, StoreError};

/// One event a consumer gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Durable consumer name.
    pub consumer: String,
    pub stream_sequence: u64,
    pub subject: String,
    pub event_id: String,
    pub event_type: String,
    pub tenant_id: String,
    /// The last error (secret-free: handlers report reasons, not payloads).
    pub error: String,
    pub deliveries: u64,
    pub recorded_at: DateTime<Utc>,
    /// An operator asked for a retry and it has not been acknowledged yet; the record goes
    /// only once the retried delivery is acked (a failed retry replaces it).
    #[serde(default)]
    pub retrying: bool,
}

/// The dead-letter records and the retry channel of one namespace.
#[derive(Clone)]
pub struct DeadLetters {
    kv: kv::Store,
    js: jetstream::Context,
    retry_root: String,
    retry_stream: String,
}

impl DeadLetters {
    pub(crate) async fn open(store: &EventStore) -> Result<Self, StoreError> {
        let js = store.jetstream().clone();
        let kv = store
            .key_value(
                "TENANTRY_DLQ",
                5,
                "Tenantry dead letters: <consumer>.<stream sequence>",
            )
            .await?;
        let retry_root = store.namespaced_subject("tenantry-retry");
        let retry_stream = store.bucket_name("TENANTRY_RETRIES");
        if js.get_stream(&retry_stream).await.is_err() {
            let created = js
                .create_stream(stream::Config {
                    name: retry_stream.clone(),
                    subjects: vec![format!("{retry_root}.>")],
                    retention: stream::RetentionPolicy::WorkQueue,
                    storage: stream::StorageType::File,
                    num_replicas: store.config().replicas,
                    ..Default::default()
                })
                .await;
            if let Err(e) = created
                && js.get_stream(&retry_stream).await.is_err()
            {
                return Err(StoreError::Config(format!(
                    "cannot create retry stream {retry_stream}: {e}"
                )));
            }
        }
        Ok(Self {
            kv,
            js,
            retry_root,
            retry_stream,
        })
    }

    fn key(consumer: &str, sequence: u64) -> String {
        format!("{consumer}.{sequence}")
    }

    pub(crate) fn retry_subject(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.retry_root)
    }

    pub(crate) fn retry_stream_name(&self) -> &str {
        &self.retry_stream
    }

    /// Builds the record for `event`.
    pub fn letter(
        consumer: &str,
        event: &RecordedEvent,
        error: &str,
        deliveries: u64,
    ) -> DeadLetter {
        DeadLetter {
            consumer: consumer.to_owned(),
            stream_sequence: event.sequence,
            subject: event.subject.clone(),
            event_id: event.event_id.to_string(),
            event_type: event.event_type.clone(),
            tenant_id: event.tenant_id.clone(),
            error: error.to_owned(),
            deliveries,
            recorded_at: Utc::now(),
            retrying: false,
        }
    }

    /// Records (or replaces) a dead letter.
    pub async fn record(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let value = serde_json::to_vec(letter).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.kv
            .put(
                Self::key(&letter.consumer, letter.stream_sequence),
                Bytes::from(value),
            )
            .await
            .map_err(StoreError::unavailable)?;
        if letter.retrying {
            tracing::info!(consumer = %letter.consumer, sequence = letter.stream_sequence, "dead letter sent back to its consumer");
        } else {
            tracing::warn!(
                consumer = %letter.consumer, sequence = letter.stream_sequence, event_type = %letter.event_type,
                tenant_id = %letter.tenant_id, error = %letter.error, "event dead-lettered"
            );
        }
        Ok(())
    }

    /// Records a dead letter unless one exists for that consumer and sequence.
    pub(crate) async fn record_if_absent(&self, letter: &DeadLetter) -> Result<bool, StoreError> {
        if self
            .get(&letter.consumer, letter.stream_sequence)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        self.record(letter).await?;
        Ok(true)
    }

    /// One record.
    pub async fn get(
        &self,
        consumer: &str,
        sequence: u64,
    ) -> Result<Option<DeadLetter>, StoreError> {
        let value = self
            .kv
            .get(Self::key(consumer, sequence))
            .await
            .map_err(StoreError::unavailable)?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// How many records consumer `consumer` has (what its dead-letter gauge shows).
    pub async fn count(&self, consumer: &str) -> Result<u64, StoreError> {
        let mut keys = self.kv.keys().await.map_err(StoreError::unavailable)?;
        let prefix = format!("{consumer}.");
        let mut n = 0;
        while let Some(k) = keys.next().await {
            if k.map_err(StoreError::unavailable)?.starts_with(&prefix) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Every record, by consumer then sequence.
    pub async fn list(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut keys = match self.kv.keys().await {
            Ok(k) => k,
            Err(e) => return Err(StoreError::unavailable(e)),
        };
        let mut names = Vec::new();
        while let Some(k) = keys.next().await {
            names.push(k.map_err(StoreError::unavailable)?);
        }
        let mut out = Vec::with_capacity(names.len());
        for k in names {
            if let Some(v) = self.kv.get(&k).await.map_err(StoreError::unavailable)?
                && let Ok(letter) = serde_json::from_slice::<DeadLetter>(&v)
            {
                out.push(letter);
            }
        }
        out.sort_by(|a, b| (&a.consumer, a.stream_sequence).cmp(&(&b.consumer, b.stream_sequence)));
        Ok(out)
    }

    /// Sends the event back to its consumer, whose running subscription delivers it again like
    /// a new delivery. The record stays (marked `retrying`) until that delivery is acked, so a
    /// retry that fails — or never arrives — loses nothing.
    pub async fn retry(&self, consumer: &str, sequence: u64) -> Result<(), StoreError> {
        let Some(mut letter) = self.get(consumer, sequence).await? else {
            return Err(StoreError::Invalid(format!(
                "no dead letter for consumer {consumer} at sequence {sequence}"
            )));
        };
        letter.retrying = true;
        self.record(&letter).await?;
        let ack = self
            .js
            .publish(
                self.retry_subject(&letter.consumer),
                Bytes::from(sequence.to_string()),
            )
            .await
            .map_err(StoreError::unavailable)?;
        ack.await.map_err(StoreError::unavailable)?;
        Ok(())
    }

    /// Removes a record: its retried delivery was handled.
    pub(crate) async fn forget(&self, consumer: &str, sequence: u64) -> Result<(), StoreError> {
        self.kv
            .delete(Self::key(consumer, sequence))
            .await
            .map_err(StoreError::unavailable)
    }
}
