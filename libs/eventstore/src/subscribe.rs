//! Durable subscriptions: explicit acks, bounded redelivery, dead letters.

use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, pull},
    stream::Stream,
};
use futures::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::{DeadLetters, EventStore, RecordedEvent, StoreError};

/// How a durable subscription behaves. Defaults suit a work consumer.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// How long a delivery may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries before the event becomes a dead letter (JetStream's default is unlimited,
    /// which would retry a poison message forever).
    pub max_deliver: u64,
    /// Redelivery delays after ack timeouts (JetStream applies them to timeouts, not naks).
    pub backoff: Vec<Duration>,
    /// Unacknowledged deliveries in flight; 1 keeps strict order across redeliveries.
    pub max_ack_pending: i64,
    /// Where a new durable starts.
    pub deliver_from: DeliverFrom,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            backoff: Vec::new(),
            max_ack_pending: 64,
            deliver_from: DeliverFrom::All,
        }
    }
}

/// Where a new durable subscription starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverFrom {
    /// From the first event.
    All,
    /// Only events appended after it was created.
    New,
    /// From a stream sequence.
    Sequence(u64),
}

/// A running durable subscription. Several processes may hold the same durable name; JetStream
/// spreads the deliveries among them.
pub struct Subscription {
    durable: String,
    max_deliver: u64,
    consumer: jetstream::consumer::PullConsumer,
    // Opened on the first `next()`: a `messages()` stream pulls ahead, which `next_one` (one
    // message per free worker) must not.
    main: Option<pull::Stream>,
    retries: pull::Stream,
    store: EventStore,
    dead_letters: DeadLetters,
    /// Listens for JetStream's max-deliveries advisories: a handler that never acks (it
    /// crashed or hung) still leaves a dead letter. Aborted with the subscription.
    advisory: JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.advisory.abort();
    }
}

impl Subscription {
    pub(crate) async fn start(
        store: &EventStore,
        stream: Stream,
        durable: &str,
        filter: &str,
        options: SubscribeOptions,
    ) -> Result<Self, StoreError> {
        if durable.is_empty()
            || !durable
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StoreError::Invalid(format!(
                "durable name {durable:?} may only hold A-Z a-z 0-9 - _"
            )));
        }
        if options.max_deliver == 0 {
            return Err(StoreError::Invalid(
                "max_deliver must be at least 1".to_owned(),
            ));
        }
        if options.backoff.len() as u64 > options.max_deliver {
            return Err(StoreError::Invalid(
                "backoff may not list more delays than max_deliver".to_owned(),
            ));
        }
        let deliver_policy = match options.deliver_from {
            DeliverFrom::All => DeliverPolicy::All,
            DeliverFrom::New => DeliverPolicy::New,
            DeliverFrom::Sequence(s) => DeliverPolicy::ByStartSequence { start_sequence: s },
        };
        let config = pull::Config {
            durable_name: Some(durable.to_owned()),
            filter_subject: filter.to_owned(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: options.ack_wait,
            max_deliver: options.max_deliver as i64,
            backoff: options.backoff.clone(),
            max_ack_pending: options.max_ack_pending,
            deliver_policy,
            ..Default::default()
        };
        let consumer = open_consumer(&stream, durable, config).await?;

        let dead_letters = store.dead_letters().await?;
        let retry_stream = store
            .jetstream()
            .get_stream(dead_letters.retry_stream_name())
            .await
            .map_err(StoreError::unavailable)?;
        let retry_consumer = retry_stream
            .get_or_create_consumer::<pull::Config>(
                durable,
                pull::Config {
                    durable_name: Some(durable.to_owned()),
                    filter_subject: dead_letters.retry_subject(durable),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: options.ack_wait,
                    max_deliver: options.max_deliver as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                StoreError::Config(format!("cannot open retry consumer {durable}: {e}"))
            })?;
        // Retried dead letters are rare: a one-message prefetch is all this pulls ahead.
        let retries = retry_consumer
            .stream()
            .max_messages_per_batch(1)
            .messages()
            .await
            .map_err(StoreError::unavailable)?;

        let advisory =
            spawn_advisory_listener(store.clone(), dead_letters.clone(), durable.to_owned())
                .await?;
        Ok(Self {
            durable: durable.to_owned(),
            max_deliver: options.max_deliver,
            consumer,
            main: None,
            retries,
            store: store.clone(),
            dead_letters,
            advisory,
        })
    }

    /// The durable consumer's name.
    pub fn durable(&self) -> &str {
        &self.durable
    }

    /// The next delivery (pulling ahead of the caller). An undecodable message is dead-lettered
    /// and terminated, and reported as an error so the caller can log it and go on. `None` when
    /// the subscription has ended (its consumer or stream is gone): subscribe again.
    pub async fn next(&mut self) -> Option<Result<Delivery, StoreError>> {
        if self.main.is_none() {
            match self.consumer.messages().await {
                Ok(m) => self.main = Some(m),
                Err(e) => return Some(Err(StoreError::unavailable(e))),
            }
        }
        let main = self.main.as_mut()?;
        // Retried dead letters come first: an operator is waiting on them.
        let (message, from_retry) = tokio::select! {
            biased;
            Some(m) = self.retries.next() => (m, true),
            m = main.next() => (m?, false),
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => return Some(Err(StoreError::unavailable(e))),
        };
        Some(self.deliver(message, from_retry).await)
    }

    /// Pulls exactly one message, waiting up to `wait` for one: for a worker with a free slot,
    /// so nothing waits in this process's buffer while another instance is idle. `Ok(None)`
    /// when none came; `Err` when the consumer or its stream is unreachable or gone (the caller
    /// subscribes again).
    pub async fn next_one(&mut self, wait: Duration) -> Result<Option<Delivery>, StoreError> {
        if let Some(Some(message)) = self.retries.next().now_or_never() {
            let message = message.map_err(StoreError::unavailable)?;
            return self.deliver(message, true).await.map(Some);
        }
        let mut batch = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(StoreError::unavailable)?;
        match batch.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(StoreError::unavailable(e)),
            Some(Ok(message)) => self.deliver(message, false).await.map(Some),
        }
    }

    async fn deliver(
        &self,
        message: jetstream::Message,
        from_retry: bool,
    ) -> Result<Delivery, StoreError> {
        let (delivered, stream_sequence, published) = match message.info() {
            Ok(i) => (i.delivered.max(1) as u64, i.stream_sequence, i.published),
            Err(e) => {
                return Err(StoreError::Unavailable(format!("malformed delivery: {e}")));
            }
        };
        let event = if from_retry {
            self.load_retried(&message).await
        } else {
            RecordedEvent::decode(
                &message.subject,
                stream_sequence,
                message.headers.as_ref(),
                &message.payload,
                published,
            )
            .map_err(StoreError::from)
        };
        match event {
            Ok(event) => Ok(Delivery {
                event,
                message,
                delivered,
                max_deliver: self.max_deliver,
                durable: self.durable.clone(),
                dead_letters: self.dead_letters.clone(),
                from_retry,
            }),
            // A retried dead letter whose event cannot be loaded right now: try again later
            // rather than dropping it.
            Err(e) if from_retry && e.is_transient() => {
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                Err(e)
            }
            Err(e) => {
                let letter = crate::DeadLetter {
                    consumer: self.durable.clone(),
                    stream_sequence,
                    subject: message.subject.to_string(),
                    event_id: String::new(),
                    event_type: String::new(),
                    tenant_id: String::new(),
                    error: e.to_string(),
                    deliveries: delivered,
                    recorded_at: chrono::Utc::now(),
                    retrying: false,
                };
                let _ = self.dead_letters.record(&letter).await;
                let _ = message.ack_with(AckKind::Term).await;
                Err(e)
            }
        }
    }

    async fn load_retried(
        &self,
        message: &jetstream::Message,
    ) -> Result<RecordedEvent, StoreError> {
        let sequence: u64 = std::str::from_utf8(&message.payload)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                StoreError::Invalid("retry request without a stream sequence".to_owned())
            })?;
        self.store.get(sequence).await?.ok_or_else(|| {
            StoreError::Invalid(format!(
                "retried event at sequence {sequence} is no longer in the stream"
            ))
        })
    }
}

/// Opens the durable consumer, creating it, or bringing an existing one whose configuration
/// drifted back to `config` (see [`crate::drift`]).
async fn open_consumer(
    stream: &Stream,
    durable: &str,
    config: pull::Config,
) -> Result<jetstream::consumer::PullConsumer, StoreError> {
    match stream.consumer_info(durable).await {
        Ok(info) => {
            use jetstream::consumer::FromConsumer;
            let existing =
                pull::Config::try_from_consumer_config(info.config.clone()).map_err(|e| {
                    StoreError::Config(format!("durable {durable} is not a pull consumer: {e}"))
                })?;
            crate::drift::reconcile_consumer(stream, &existing, config.clone()).await?;
        }
        Err(e) => {
            // "Consumer not found" is the only answer that means "create it"; anything else
            // (a timeout) is reported rather than guessed at.
            let not_found = matches!(
                e.kind(),
                jetstream::context::ConsumerInfoErrorKind::NotFound
            );
            if !not_found {
                return Err(StoreError::unavailable(e));
            }
        }
    }
    stream
        .get_or_create_consumer::<pull::Config>(durable, config)
        .await
        .map_err(|e| StoreError::Config(format!("cannot open durable consumer {durable}: {e}")))
}

/// One delivery of an event. Settle it with exactly one of `ack`, `nak`, `fail` or `term`.
pub struct Delivery {
    /// The event.
    pub event: RecordedEvent,
    message: jetstream::Message,
    delivered: u64,
    max_deliver: u64,
    durable: String,
    dead_letters: DeadLetters,
    /// Sent back by `tenantctl dlq retry`: its record goes once this delivery is acked.
    from_retry: bool,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("sequence", &self.event.sequence)
            .field("event_type", &self.event.event_type)
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl Delivery {
    /// How many times this event has been delivered to the consumer (1 on first delivery).
    pub fn delivery_count(&self) -> u64 {
        self.delivered
    }

    /// Whether a failure now makes this event a dead letter.
    pub fn is_last_attempt(&self) -> bool {
        self.delivered >= self.max_deliver
    }

    /// Done: the event will not be delivered to this consumer again (and a retried dead
    /// letter's record is removed).
    pub async fn ack(&self) -> Result<(), StoreError> {
        if self.from_retry {
            // Confirmed, so the record goes only once the server has the ack.
            self.ack_confirmed().await?;
            return self
                .dead_letters
                .forget(&self.durable, self.event.sequence)
                .await;
        }
        self.message.ack().await.map_err(StoreError::unavailable)
    }

    /// Done, confirmed by the server (for callers that must know the ack was stored).
    pub async fn ack_confirmed(&self) -> Result<(), StoreError> {
        self.message
            .double_ack()
            .await
            .map_err(StoreError::unavailable)
    }

    /// Not now: redeliver after `delay` (or at once).
    pub async fn nak(&self, delay: Option<Duration>) -> Result<(), StoreError> {
        self.message
            .ack_with(AckKind::Nak(delay))
            .await
            .map_err(StoreError::unavailable)
    }

    /// Still working: restarts the ack-wait clock (call it while a long step runs).
    pub async fn in_progress(&self) -> Result<(), StoreError> {
        self.message
            .ack_with(AckKind::Progress)
            .await
            .map_err(StoreError::unavailable)
    }

    /// Handling failed: redeliver after `delay`, or — on the last attempt — record a dead
    /// letter with `error` and stop delivering it.
    pub async fn fail(&self, error: &str, delay: Duration) -> Result<(), StoreError> {
        if self.is_last_attempt() {
            self.term(error).await
        } else {
            self.nak(Some(delay)).await
        }
    }

    /// Poison: record a dead letter with `error` and never deliver it again.
    pub async fn term(&self, error: &str) -> Result<(), StoreError> {
        let letter = DeadLetters::letter(&self.durable, &self.event, error, self.delivered);
        self.dead_letters.record(&letter).await?;
        self.message
            .ack_with(AckKind::Term)
            .await
            .map_err(StoreError::unavailable)
    }
}

#[derive(Deserialize)]
struct MaxDeliveriesAdvisory {
    stream_seq: u64,
    deliveries: u64,
}

async fn spawn_advisory_listener(
    store: EventStore,
    dead_letters: DeadLetters,
    durable: String,
) -> Result<JoinHandle<()>, StoreError> {
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{durable}",
        store.stream_name()
    );
    let mut sub = store
        .client()
        .subscribe(subject)
        .await
        .map_err(StoreError::unavailable)?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let Ok(advisory) = serde_json::from_slice::<MaxDeliveriesAdvisory>(&msg.payload) else {
                continue;
            };
            let error = format!("not acknowledged after {} deliveries", advisory.deliveries);
            let letter = match store.get(advisory.stream_seq).await {
                Ok(Some(event)) => {
                    DeadLetters::letter(&durable, &event, &error, advisory.deliveries)
                }
                Ok(None) | Err(_) => crate::DeadLetter {
                    consumer: durable.clone(),
                    stream_sequence: advisory.stream_seq,
                    subject: String::new(),
                    event_id: String::new(),
                    event_type: String::new(),
                    tenant_id: String::new(),
                    error,
                    deliveries: advisory.deliveries,
                    recorded_at: chrono::Utc::now(),
                    retrying: false,
                },
            };
            if let Err(e) = dead_letters.record_if_absent(&letter).await {
                tracing::error!(error = %e, sequence = advisory.stream_seq, "could not record dead letter");
            }
        }
    }))
}
