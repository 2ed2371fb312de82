//! The durable consumers of the event stream, as an operator sees them: how far behind each
//! one is, what it holds unacknowledged, how often it had to be redelivered, when it last
//! moved. Read from JetStream's consumer info; nothing here changes a consumer.

use async_nats::jetstream::consumer;
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::{EventStore, StoreError};

/// One durable consumer's progress on the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerStatus {
    /// Durable name (shared by every instance of the service).
    pub name: String,
    /// The subjects it reads (empty: the whole stream).
    pub filter: String,
    /// Events matching its filter not yet delivered to any instance.
    pub pending: u64,
    /// Delivered and not yet acknowledged (in an instance's hands, or about to be redelivered).
    pub ack_pending: u64,
    /// Of those, how many have been delivered more than once.
    pub redelivered: u64,
    /// Pull requests waiting for events: instances connected and idle.
    pub waiting: u64,
    /// The stream sequence last delivered.
    pub delivered_sequence: u64,
    /// Every event at or below this stream sequence is acknowledged.
    pub ack_floor: u64,
    /// When it last delivered an event (none yet: never).
    pub last_active: Option<DateTime<Utc>>,
}

impl EventStore {
    /// Every durable consumer of this store's stream, by name. Ephemeral consumers (replays,
    /// tails) are left out: they come and go with one reader.
    pub async fn consumers(&self) -> Result<Vec<ConsumerStatus>, StoreError> {
        let stream = self
            .jetstream()
            .get_stream(self.stream_name())
            .await
            .map_err(StoreError::unavailable)?;
        let mut infos = stream.consumers();
        let mut out = Vec::new();
        while let Some(info) = infos.next().await {
            let info = info.map_err(StoreError::unavailable)?;
            if info.config.durable_name.is_none() {
                continue;
            }
            out.push(ConsumerStatus::from(info));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One consumer's progress; `None` when the stream has no consumer of that name.
    pub async fn consumer(&self, name: &str) -> Result<Option<ConsumerStatus>, StoreError> {
        let stream = self
            .jetstream()
            .get_stream(self.stream_name())
            .await
            .map_err(StoreError::unavailable)?;
        match stream.consumer_info(name).await {
            Ok(info) => Ok(Some(ConsumerStatus::from(info))),
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }
}

impl From<consumer::Info> for ConsumerStatus {
    fn from(info: consumer::Info) -> Self {
        Self {
            name: info.name,
            filter: info.config.filter_subject,
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
            waiting: info.num_waiting as u64,
            delivered_sequence: info.delivered.stream_sequence,
            ack_floor: info.ack_floor.stream_sequence,
            last_active: info.delivered.last_active,
        }
    }
}
