//! Ordered reads of the log: rebuilding read models and loading one subject.

use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull},
    stream::Stream,
};
use futures::StreamExt;

use crate::{RecordedEvent, StoreError};

/// An ordered, ephemeral read of the stream that ends once it has caught up.
pub struct Replay {
    messages: Option<pull::Ordered>,
    /// Events matching the filter at the start, for progress reporting.
    total: u64,
    seen: u64,
}

impl Replay {
    pub(crate) async fn start(
        stream: &Stream,
        filter: &str,
        from_sequence: u64,
    ) -> Result<Self, StoreError> {
        let deliver_policy = if from_sequence <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: from_sequence,
            }
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(StoreError::unavailable)?;
        let total = consumer.cached_info().num_pending;
        let messages = if total == 0 {
            None
        } else {
            Some(consumer.messages().await.map_err(StoreError::unavailable)?)
        };
        Ok(Self {
            messages,
            total,
            seen: 0,
        })
    }

    /// How many events the replay will yield (those present when it started).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many it has yielded so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The next event in stream order, `None` once caught up.
    pub async fn next(&mut self) -> Option<Result<RecordedEvent, StoreError>> {
        let messages = self.messages.as_mut()?;
        let message = match messages.next().await? {
            Ok(m) => m,
            Err(e) => {
                self.messages = None;
                return Some(Err(StoreError::unavailable(e)));
            }
        };
        let info = match message.info() {
            Ok(i) => (i.stream_sequence, i.pending, i.published),
            Err(e) => {
                return Some(Err(StoreError::Unavailable(format!(
                    "malformed delivery: {e}"
                ))));
            }
        };
        let (sequence, pending, published) = info;
        self.seen += 1;
        // pending counts what is left for this consumer right now: 0 means caught up (events
        // appended during the replay are included, so the end is "caught up", not "the start").
        if pending == 0 {
            self.messages = None;
        }
        Some(
            RecordedEvent::decode(
                &message.subject,
                sequence,
                message.headers.as_ref(),
                &message.payload,
                published,
            )
            .map_err(StoreError::from),
        )
    }

    /// Every remaining event.
    pub async fn collect(mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::with_capacity(self.total as usize);
        while let Some(e) = self.next().await {
            out.push(e?);
        }
        Ok(out)
    }
}
