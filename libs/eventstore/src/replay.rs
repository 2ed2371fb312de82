//! Ordered reads of the log: rebuilding read models and loading one subject.

use std::time::Duration;

use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull},
    stream::Stream,
};
use futures::StreamExt;

use crate::{DecodeError, RecordedEvent, StoreError};

/// One stored message, as JetStream holds it.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its subject.
    pub subject: String,
    /// Every header it was stored with.
    pub headers: async_nats::HeaderMap,
    /// The payload bytes.
    pub payload: bytes::Bytes,
    /// When JetStream stored it.
    pub stored_at: chrono::DateTime<chrono::Utc>,
}

impl RawMessage {
    /// Decodes the message as a Tenantry event (see [`RecordedEvent::decode`]), moving its
    /// headers into the event instead of copying them.
    pub fn into_event(self) -> Result<RecordedEvent, DecodeError> {
        RecordedEvent::from_parts(
            self.subject,
            self.sequence,
            self.headers,
            &self.payload,
            self.stored_at,
        )
    }
}

/// Silence after which a replay asks the stream whether anything is left. The `pending` count
/// on deliveries (our end-of-replay signal) can stay above zero on the last message (seen with
/// nats-server 2.9 on filtered consumers), so the stream's last sequence has the final word.
const QUIET: Duration = Duration::from_millis(200);
/// Silence after which a replay that knows more is coming restarts its consumer: a healthy
/// ordered consumer delivers continuously, so this means it stalled (a lost flow-control reply,
/// a server restart). A replay never hangs while its caller holds a lock.
const STALL: Duration = Duration::from_secs(5);
/// Restarts in a row without progress before the replay gives up with an error.
const MAX_RESTARTS: u32 = 3;

/// An ordered, ephemeral read of the stream that ends once it has caught up.
pub struct Replay {
    stream: Stream,
    filter: String,
    /// The filter covers the whole stream: the consumer goes without it.
    whole_stream: bool,
    messages: Option<pull::Ordered>,
    /// The stream sequence to read from next.
    next_from: u64,
    restarts: u32,
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
        // A filter that covers the whole stream leaves nothing out, but nats-server 2.9 counts a
        // filtered consumer's pending messages by scanning the stream (seconds for a million
        // events): such a replay reads the stream unfiltered.
        let whole_stream = stream.cached_info().config.subjects == [filter];
        let mut replay = Self {
            stream: stream.clone(),
            filter: filter.to_owned(),
            whole_stream,
            messages: None,
            next_from: from_sequence.max(1),
            restarts: 0,
            total: 0,
            seen: 0,
        };
        replay.total = replay.open().await?;
        Ok(replay)
    }

    /// Opens an ordered consumer at `next_from`; answers how many matching events it holds.
    async fn open(&mut self) -> Result<u64, StoreError> {
        let deliver_policy = if self.next_from <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: self.next_from,
            }
        };
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: if self.whole_stream {
                    String::new()
                } else {
                    self.filter.clone()
                },
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(StoreError::unavailable)?;
        let pending = consumer.cached_info().num_pending;
        self.messages = if pending == 0 {
            None
        } else {
            Some(consumer.messages().await.map_err(StoreError::unavailable)?)
        };
        Ok(pending)
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
        Some(match self.next_raw().await? {
            Ok(raw) => raw.into_event().map_err(StoreError::from),
            Err(e) => Err(e),
        })
    }

    /// The next message in stream order as stored (subject, headers, payload), undecoded:
    /// for exports, which must carry every message whatever it holds. `None` once caught up.
    pub async fn next_raw(&mut self) -> Option<Result<RawMessage, StoreError>> {
        loop {
            let messages = self.messages.as_mut()?;
            let message = match tokio::time::timeout(QUIET, messages.next()).await {
                Ok(next) => Ok(next),
                Err(_) => match self.caught_up().await {
                    Ok(true) => {
                        self.messages = None;
                        return None;
                    }
                    Ok(false) => {
                        let messages = self.messages.as_mut()?;
                        tokio::time::timeout(STALL - QUIET, messages.next()).await
                    }
                    Err(e) => {
                        self.messages = None;
                        return Some(Err(e));
                    }
                },
            };
            let mut message = match message {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => {
                    self.messages = None;
                    return Some(Err(StoreError::unavailable(e)));
                }
                Ok(None) => {
                    self.messages = None;
                    return None;
                }
                Err(_) => match self.restart().await {
                    Ok(()) => continue,
                    Err(e) => {
                        self.messages = None;
                        return Some(Err(e));
                    }
                },
            };
            let (sequence, pending, published) = match message.info() {
                Ok(i) => (i.stream_sequence, i.pending, i.published),
                Err(e) => {
                    return Some(Err(StoreError::Unavailable(format!(
                        "malformed delivery: {e}"
                    ))));
                }
            };
            self.seen += 1;
            self.restarts = 0;
            self.next_from = sequence + 1;
            // pending counts what is left for this consumer right now: 0 means caught up (events
            // appended during the replay are included, so the end is "caught up", not "the start").
            if pending == 0 {
                self.messages = None;
            }
            // The delivery is ours: its headers and payload move out rather than being copied.
            let message = &mut message.message;
            return Some(Ok(RawMessage {
                sequence,
                subject: message.subject.to_string(),
                headers: message.headers.take().unwrap_or_default(),
                payload: std::mem::take(&mut message.payload),
                stored_at: published,
            }));
        }
    }

    /// Whether the replay has read up to the stream's last sequence.
    async fn caught_up(&mut self) -> Result<bool, StoreError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(info.state.last_sequence < self.next_from)
    }

    /// After a stall: ends the replay if nothing matching is left, else reopens where it was.
    async fn restart(&mut self) -> Result<(), StoreError> {
        self.restarts += 1;
        if self.restarts > MAX_RESTARTS {
            return Err(StoreError::Unavailable(format!(
                "replay of {} stalled at sequence {} after {MAX_RESTARTS} restarts; check the \
                 NATS server and retry",
                self.filter, self.next_from
            )));
        }
        tracing::warn!(filter = %self.filter, from = self.next_from, "replay stalled; reopening it");
        self.messages = None;
        self.open().await.map(|_| ())
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
