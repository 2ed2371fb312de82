//! Append, load and version queries against the event stream.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    context::PublishErrorKind,
    kv,
    stream::{self, LastRawMessageErrorKind, Stream},
};
use proto::EventContext;

use crate::{
    DeadLetters, NewEvent, RecordedEvent, Replay, StoreConfig, StoreError, SubscribeOptions,
    Subscription,
};

/// How many times `append_latest` reloads the version after a conflict before giving up.
const APPEND_LATEST_ATTEMPTS: usize = 16;

/// How a KV bucket is kept.
#[derive(Debug, Clone)]
pub struct KvOptions<'a> {
    /// Values kept per key (1 = the latest only).
    pub history: i64,
    /// How long a value lives after its last write; zero = forever.
    pub max_age: Duration,
    /// What the bucket is for (shown by `nats kv ls`).
    pub description: &'a str,
}

/// The JetStream event store. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct EventStore {
    client: async_nats::Client,
    js: jetstream::Context,
    config: StoreConfig,
    stream_name: String,
    root: String,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("stream", &self.stream_name)
            .field("root", &self.root)
            .finish()
    }
}

impl EventStore {
    /// Connects to NATS and makes sure the event stream exists.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        // The client retries a failed first connection by itself; the last reason it gave is
        // kept so that a wrong password or CA reads as such, not as "no server".
        let last_problem = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let problem = std::sync::Arc::clone(&last_problem);
        let options = async_nats::ConnectOptions::new()
            .name("tenantry")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            // A silent partition (no reset) shows after two missed pings, not the default
            // minutes: readiness and the fail-fast paths rely on the connection state.
            .ping_interval(Duration::from_secs(10))
            // A request (publish ack, KV op) fails after this instead of hanging while the
            // server is away; callers turn that into a retryable UNAVAILABLE.
            .request_timeout(Some(Duration::from_secs(5)))
            .event_callback(move |event| {
                let problem = std::sync::Arc::clone(&problem);
                async move {
                    let text = match event {
                        async_nats::Event::ServerError(e) => Some(format!("server said: {e}")),
                        async_nats::Event::ClientError(e) => Some(e.to_string()),
                        _ => None,
                    };
                    if let Some(text) = text {
                        tracing::warn!(problem = %text, "NATS connection problem");
                        *problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
                    }
                }
            });
        let options = crate::config::secure(options, config).await?;
        let unreachable = || {
            let why = last_problem
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| "no server answered".to_owned());
            StoreError::Unavailable(format!(
                "cannot connect to NATS at {} within {} s ({why}); check the URL, the \
                 credentials and the TLS settings",
                crate::config::redact(&config.nats_url),
                config.connect_timeout.as_secs()
            ))
        };
        // With retry_on_initial_connect the client comes back at once and connects in the
        // background: wait (bounded) for the connection itself, so a wrong URL, password or
        // CA is reported as such instead of as a later request timeout.
        let servers = crate::config::server_addrs(&config.nats_url).map_err(StoreError::Invalid)?;
        let deadline = tokio::time::Instant::now() + config.connect_timeout;
        let client = tokio::time::timeout_at(deadline, options.connect(servers))
            .await
            .map_err(|_| unreachable())?
            .map_err(StoreError::unavailable)?;
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() >= deadline {
                return Err(unreachable());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self::with_client(client, config).await
    }

    /// Uses an existing NATS connection and makes sure the event stream exists.
    pub async fn with_client(
        client: async_nats::Client,
        config: &StoreConfig,
    ) -> Result<Self, StoreError> {
        let js = jetstream::new(client.clone());
        let store = Self {
            client,
            js,
            stream_name: config.prefixed_name("TENANTRY_EVENTS"),
            root: config.prefixed_subject("tenantry"),
            config: config.clone(),
        };
        store.ensure_stream().await?;
        Ok(store)
    }

    /// Creates the event stream, or updates it to the expected shape. Idempotent.
    pub async fn ensure_stream(&self) -> Result<(), StoreError> {
        let wanted = stream::Config {
            name: self.stream_name.clone(),
            subjects: vec![format!("{}.>", self.root)],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: self.config.replicas,
            duplicate_window: self.config.duplicate_window,
            allow_direct: true,
            // The log is the source of truth: never discard old events for size.
            discard: stream::DiscardPolicy::New,
            max_messages: -1,
            max_bytes: -1,
            deny_delete: true,
            description: Some("Tenantry events: one subject per (context, tenant)".to_owned()),
            ..Default::default()
        };
        match self.js.get_stream(&self.stream_name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(StoreError::unavailable)?;
                crate::drift::reconcile_stream(&self.js, &info.config, wanted).await
            }
            Err(_) => match self.js.create_stream(wanted.clone()).await {
                Ok(_) => Ok(()),
                // Another process created it between our get and create.
                Err(_) if self.js.get_stream(&self.stream_name).await.is_ok() => Ok(()),
                Err(e) => Err(StoreError::Config(format!(
                    "cannot create stream {}: {e}",
                    self.stream_name
                ))),
            },
        }
    }

    /// Whether the NATS connection is up right now (a request made while it is down waits for
    /// a reconnect, up to the request timeout: callers answering people fail fast instead).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The stream's name (`TENANTRY_EVENTS`, prefixed in tests).
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// The configuration this store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The underlying NATS connection (for KV buckets and plain subscriptions).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// `tenantry.<context>.<tenant_id>` (namespaced in tests).
    pub fn subject(&self, context: EventContext, tenant_id: &str) -> String {
        format!("{}.{}.{}", self.root, context.as_str(), tenant_id)
    }

    /// Every event: `tenantry.>`.
    pub fn all_filter(&self) -> String {
        format!("{}.>", self.root)
    }

    /// Every event of one context: `tenantry.<context>.*`.
    pub fn context_filter(&self, context: EventContext) -> String {
        format!("{}.{}.*", self.root, context.as_str())
    }

    /// Every event of one tenant: `tenantry.*.<tenant_id>`.
    pub fn tenant_filter(&self, tenant_id: &str) -> String {
        format!("{}.*.{}", self.root, tenant_id)
    }

    /// Splits a subject of this store into (context, tenant id).
    pub fn parse_subject<'a>(&self, subject: &'a str) -> Option<(EventContext, &'a str)> {
        let rest = subject.strip_prefix(&self.root)?.strip_prefix('.')?;
        let (ctx, tenant) = rest.split_once('.')?;
        Some((EventContext::parse(ctx)?, tenant))
    }

    /// A KV bucket name in this store's namespace.
    pub fn bucket_name(&self, name: &str) -> String {
        self.config.prefixed_name(name)
    }

    /// A subject in this store's namespace (outside the event stream's `tenantry.>`).
    pub fn namespaced_subject(&self, subject: &str) -> String {
        self.config.prefixed_subject(subject)
    }

    fn check_subject(&self, subject: &str) -> Result<(), StoreError> {
        let ok = self.parse_subject(subject).is_some_and(|(_, tenant)| {
            !tenant.is_empty()
                && tenant.len() <= 128
                && tenant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if ok {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "{subject:?} is not a subject of the form {}.<context>.<tenant_id>",
                self.root
            )))
        }
    }

    async fn stream(&self) -> Result<Stream, StoreError> {
        self.js
            .get_stream(&self.stream_name)
            .await
            .map_err(StoreError::unavailable)
    }

    /// The subject's version: the stream sequence of its last event, 0 when it has none.
    pub async fn version(&self, subject: &str) -> Result<u64, StoreError> {
        self.check_subject(subject)?;
        let stream = self.stream().await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(0),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    /// The stream's last sequence (0 when empty).
    pub async fn last_sequence(&self) -> Result<u64, StoreError> {
        let info = self
            .stream()
            .await?
            .get_info()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(info.state.last_sequence)
    }

    /// Appends `events` to `subject`, which must be at `expected_version` (0 for a new subject).
    ///
    /// Returns the stream sequence of each event. A retried append of the same event ids inside
    /// the duplicate window is stored once and answers the original sequences. Another writer
    /// having appended first answers [`StoreError::Conflict`] with the actual version.
    pub async fn append(
        &self,
        subject: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .append_reporting(subject, expected_version, events)
            .await?
            .sequences)
    }

    /// [`Self::append`], also saying whether any event was a duplicate. A writer that folds
    /// its own events forward instead of reloading must reload after a duplicate: the stored
    /// event is an earlier writer's, which may differ from this one's, and the subject may have
    /// moved on since.
    pub async fn append_reporting(
        &self,
        subject: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        self.check_subject(subject)?;
        if events.is_empty() {
            return Err(StoreError::Invalid(
                "append needs at least one event".to_owned(),
            ));
        }
        let mut expected = expected_version;
        let mut sequences = Vec::with_capacity(events.len());
        let mut duplicate = false;
        // nats-server 2.9 has no batch publish: each event is checked against the previous
        // one's sequence, and a crash mid-batch is healed by the writer re-deciding on reload
        // (deterministic event ids make the replayed prefix a no-op).
        for event in &events {
            let (headers, payload) = event.encode();
            let publish = jetstream::message::PublishMessage::build()
                .payload(payload)
                .headers(headers)
                .expected_last_subject_sequence(expected);
            let ack = match self.js.send_publish(subject.to_owned(), publish).await {
                Ok(fut) => fut.await,
                Err(e) => Err(e),
            };
            let ack = match ack {
                Ok(ack) => ack,
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    let actual = match parse_actual_sequence(&e.to_string()) {
                        Some(a) => a,
                        None => self.version(subject).await?,
                    };
                    return Err(StoreError::Conflict {
                        subject: subject.to_owned(),
                        expected,
                        actual,
                    });
                }
                Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                    return Err(StoreError::Unavailable(format!(
                        "stream {} does not exist; start the service once so it creates it",
                        self.stream_name
                    )));
                }
                Err(e) => return Err(StoreError::unavailable(e)),
            };
            tracing::debug!(
                subject,
                sequence = ack.sequence,
                duplicate = ack.duplicate,
                event_type = event.event_type(),
                "appended"
            );
            sequences.push(ack.sequence);
            duplicate |= ack.duplicate;
            expected = ack.sequence;
        }
        Ok(Appended {
            sequences,
            duplicate,
        })
    }

    /// Appends at whatever version the subject is at, reloading on conflicts.
    ///
    /// Only for writers whose events do not depend on the subject's earlier events (e.g. the
    /// vault recording that a credential was stored); deciding writers use [`Self::append`].
    pub async fn append_latest(
        &self,
        subject: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<u64>, StoreError> {
        let mut last_err = None;
        for _ in 0..APPEND_LATEST_ATTEMPTS {
            let version = self.version(subject).await?;
            match self.append(subject, version, events.clone()).await {
                Err(e @ StoreError::Conflict { .. }) => last_err = Some(e),
                other => return other,
            }
        }
        Err(last_err
            .unwrap_or_else(|| StoreError::Invalid("append_latest made no attempt".to_owned())))
    }

    /// Every event of one subject, in order, with its sequence.
    pub async fn load(&self, subject: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.check_subject(subject)?;
        self.replay(subject, 1).await?.collect().await
    }

    /// Every event of one tenant, across its contexts, in stream order (what a service folds
    /// to decide about the tenant).
    pub async fn load_tenant(&self, tenant_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.replay(&self.tenant_filter(tenant_id), 1)
            .await?
            .collect()
            .await
    }

    /// One event by stream sequence, `None` when there is none.
    pub async fn get(&self, sequence: u64) -> Result<Option<RecordedEvent>, StoreError> {
        let stream = self.stream().await?;
        match stream.get_raw_message(sequence).await {
            Ok(m) => Ok(Some(RecordedEvent::decode(
                &m.subject,
                m.sequence,
                Some(&m.headers),
                &m.payload,
                m.time,
            )?)),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    /// An ordered read of every event matching `filter` from `from_sequence`, ending when it
    /// has caught up with the stream as it was when the replay started.
    pub async fn replay(&self, filter: &str, from_sequence: u64) -> Result<Replay, StoreError> {
        Replay::start(&self.stream().await?, filter, from_sequence).await
    }

    /// A durable subscription (shared by every instance using the same `durable` name).
    pub async fn subscribe(
        &self,
        durable: &str,
        filter: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, StoreError> {
        Subscription::start(self, self.stream().await?, durable, filter, options).await
    }

    /// Opens (creating when missing) a KV bucket in this store's namespace.
    ///
    /// The bucket's stream is created here rather than by `create_key_value`, which first
    /// queries account info in a shape nats-server 2.9 does not answer; the stream settings
    /// are the ones async-nats would use.
    pub async fn key_value(
        &self,
        name: &str,
        history: i64,
        description: &str,
    ) -> Result<kv::Store, StoreError> {
        self.key_value_with(
            name,
            &KvOptions {
                history,
                max_age: Duration::ZERO,
                description,
            },
        )
        .await
    }

    /// [`key_value`](Self::key_value) with every option; an existing bucket whose settings
    /// differ (history, `max_age`, replicas) is brought to them.
    pub async fn key_value_with(
        &self,
        name: &str,
        options: &KvOptions<'_>,
    ) -> Result<kv::Store, StoreError> {
        let bucket = self.bucket_name(name);
        let max_age = options.max_age;
        let config = stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(options.description.to_owned()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: options.history.max(1),
            max_age,
            // What the server would pick, stated so drift checks compare like with like (a
            // duplicate window may not exceed max_age).
            duplicate_window: if max_age.is_zero() {
                Duration::from_secs(120)
            } else {
                max_age.min(Duration::from_secs(120))
            },
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: self.config.replicas,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        if let Ok(kv) = self.js.get_key_value(&bucket).await {
            let mut existing = self
                .js
                .get_stream(&config.name)
                .await
                .map_err(StoreError::unavailable)?;
            let info = existing.info().await.map_err(StoreError::unavailable)?;
            crate::drift::reconcile_stream(&self.js, &info.config, config).await?;
            return Ok(kv);
        }
        if let Err(e) = self.js.create_stream(config).await {
            // Lost a creation race with another process: fine if it exists now.
            if self.js.get_stream(format!("KV_{bucket}")).await.is_err() {
                return Err(StoreError::Config(format!(
                    "cannot create KV bucket {bucket}: {e}"
                )));
            }
        }
        self.js
            .get_key_value(&bucket)
            .await
            .map_err(|e| StoreError::Config(format!("cannot open KV bucket {bucket}: {e}")))
    }

    /// Opens a KV bucket of this namespace as it is, without bringing its settings to anyone's
    /// (a tool must not change a service's `max_age`); `None` when it does not exist.
    pub async fn existing_key_value(&self, name: &str) -> Result<Option<kv::Store>, StoreError> {
        let bucket = self.bucket_name(name);
        match self.js.get_stream(format!("KV_{bucket}")).await {
            Ok(_) => self.js.get_key_value(&bucket).await.map(Some).map_err(|e| {
                StoreError::Unavailable(format!("cannot open KV bucket {bucket}: {e}"))
            }),
            Err(e) => match e.kind() {
                async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(StoreError::unavailable(e)),
            },
        }
    }

    /// Deletes this namespace's stream, dead-letter bucket and retry stream. For tests and
    /// teardown of throw-away namespaces; never called by services.
    pub async fn destroy(&self) -> Result<(), StoreError> {
        let _ = self
            .js
            .delete_stream(format!("KV_{}", self.bucket_name("TENANTRY_DLQ")))
            .await;
        let _ = self
            .js
            .delete_stream(self.bucket_name("TENANTRY_RETRIES"))
            .await;
        self.js
            .delete_stream(&self.stream_name)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    /// The dead-letter records of every subscription in this namespace.
    pub async fn dead_letters(&self) -> Result<DeadLetters, StoreError> {
        DeadLetters::open(self).await
    }
}

/// The server says `wrong last sequence: 7`; take the number when it is there.
fn parse_actual_sequence(message: &str) -> Option<u64> {
    let tail = message.rsplit("wrong last sequence").next()?;
    let digits: String = tail
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// What an append stored: the stream sequence of each event, and whether any of them had been
/// stored before (same event id inside the duplicate window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stream sequence of each event, in order (the original one for a duplicate).
    pub sequences: Vec<u64>,
    /// Whether at least one event was a duplicate of one already stored.
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::parse_actual_sequence;

    #[test]
    fn parses_actual_sequence_from_server_error() {
        assert_eq!(
            parse_actual_sequence("wrong last sequence: wrong last sequence: 42 (10071)"),
            Some(42)
        );
        assert_eq!(parse_actual_sequence("wrong last sequence"), None);
    }
}
