//! The envelope: protobuf payload plus the routing headers of DESIGN §2.

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use prost::Message as _;
use proto::v1::{Event, event::Body};
use uuid::Uuid;

use crate::error::DecodeError;

/// Header names carried by every event.
pub mod headers {
    pub const EVENT_TYPE: &str = "Tenantry-Event-Type";
    pub const EVENT_ID: &str = "Tenantry-Event-Id";
    pub const TENANT_ID: &str = "Tenantry-Tenant-Id";
    pub const CORRELATION_ID: &str = "Tenantry-Correlation-Id";
    pub const CAUSATION_ID: &str = "Tenantry-Causation-Id";
    pub const SCHEMA: &str = "Tenantry-Schema";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    /// Envelope schema version written by this code.
    pub const SCHEMA_VERSION: &str = "1";
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Event id (UUIDv7 by default); also the JetStream de-duplication id.
    pub id: Uuid,
    pub body: Body,
    pub occurred_at: DateTime<Utc>,
    /// The saga this event belongs to (the signup's id); defaults to the event's own id.
    pub correlation_id: Option<String>,
    /// The event this one reacts to.
    pub causation_id: Option<String>,
}

impl NewEvent {
    /// A new event with a fresh UUIDv7 id, occurring now.
    pub fn new(body: Body) -> Self {
        Self {
            id: Uuid::now_v7(),
            body,
            occurred_at: Utc::now(),
            correlation_id: None,
            causation_id: None,
        }
    }

    /// Use a deterministic id, so a retried append of the same work is stored once.
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Set the correlation id (kept across the whole saga).
    pub fn correlated(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Set the causation id (the event this one reacts to).
    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = Some(causation_id.into());
        self
    }

    /// Carry correlation from `cause` and name it as the cause.
    pub fn following(self, cause: &RecordedEvent) -> Self {
        let correlation = cause
            .correlation_id
            .clone()
            .unwrap_or_else(|| cause.event_id.to_string());
        self.correlated(correlation)
            .caused_by(cause.event_id.to_string())
    }

    /// The type name for the `Tenantry-Event-Type` header.
    pub fn event_type(&self) -> &'static str {
        self.body.type_name()
    }

    pub(crate) fn encode(&self) -> (HeaderMap, Bytes) {
        let event = Event {
            occurred_at: Some(to_timestamp(self.occurred_at)),
            body: Some(self.body.clone()),
        };
        let mut h = HeaderMap::new();
        h.insert(headers::EVENT_TYPE, self.body.type_name());
        h.insert(headers::EVENT_ID, self.id.to_string().as_str());
        h.insert(headers::TENANT_ID, self.body.tenant_id());
        let correlation = self
            .correlation_id
            .clone()
            .unwrap_or_else(|| self.id.to_string());
        h.insert(headers::CORRELATION_ID, correlation.as_str());
        if let Some(c) = &self.causation_id {
            h.insert(headers::CAUSATION_ID, c.as_str());
        }
        h.insert(headers::SCHEMA, headers::SCHEMA_VERSION);
        h.insert(
            async_nats::header::NATS_MESSAGE_ID,
            self.id.to_string().as_str(),
        );
        crate::trace::inject_current(&mut h);
        (h, Bytes::from(event.encode_to_vec()))
    }
}

/// An event read back from the stream, with its position and envelope.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    /// Stream sequence: the event's global position and its subject's version after it.
    pub sequence: u64,
    pub subject: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub tenant_id: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub body: Body,
    pub occurred_at: DateTime<Utc>,
    /// When JetStream stored it.
    pub stored_at: DateTime<Utc>,
    /// The raw headers, including `traceparent`/`tracestate`.
    pub headers: HeaderMap,
}

impl RecordedEvent {
    /// Decodes a stored message; rejects anything without a Tenantry envelope.
    pub fn decode(
        subject: &str,
        sequence: u64,
        headers: Option<&HeaderMap>,
        payload: &[u8],
        stored_at: DateTime<Utc>,
    ) -> Result<Self, DecodeError> {
        Self::from_parts(
            subject.to_owned(),
            sequence,
            headers.cloned().unwrap_or_default(),
            payload,
            stored_at,
        )
    }

    /// [`RecordedEvent::decode`] for a message the caller owns: its headers are moved into the
    /// event rather than copied (a replay decodes every message of the log).
    pub(crate) fn from_parts(
        subject: String,
        sequence: u64,
        headers: HeaderMap,
        payload: &[u8],
        stored_at: DateTime<Utc>,
    ) -> Result<Self, DecodeError> {
        // One walk over the headers: a lookup by name parses the name first, which costs more
        // than the walk when every event of a replay is decoded.
        let (mut event_type, mut event_id, mut tenant_id, mut correlation_id, mut causation_id) =
            (None, None, None, None, None);
        for (name, values) in headers.iter() {
            let slot = match name.as_ref() {
                headers::EVENT_TYPE => &mut event_type,
                headers::EVENT_ID => &mut event_id,
                headers::TENANT_ID => &mut tenant_id,
                headers::CORRELATION_ID => &mut correlation_id,
                headers::CAUSATION_ID => &mut causation_id,
                _ => continue,
            };
            *slot = values.first().map(|v| v.as_str());
        }
        let event_type = event_type
            .ok_or(DecodeError::MissingHeader {
                sequence,
                header: headers::EVENT_TYPE,
            })?
            .to_owned();
        let event_id = event_id
            .ok_or(DecodeError::MissingHeader {
                sequence,
                header: headers::EVENT_ID,
            })?
            .parse::<Uuid>()
            .map_err(|_| DecodeError::InvalidHeader {
                sequence,
                header: headers::EVENT_ID,
            })?;
        let event =
            Event::decode(payload).map_err(|source| DecodeError::Payload { sequence, source })?;
        let body = event.body.ok_or(DecodeError::EmptyBody { sequence })?;
        if body.type_name() != event_type {
            return Err(DecodeError::TypeMismatch {
                sequence,
                header: event_type,
                body: body.type_name(),
            });
        }
        let occurred_at = event
            .occurred_at
            .and_then(from_timestamp)
            .unwrap_or(stored_at);
        let tenant_id = tenant_id.unwrap_or_else(|| body.tenant_id()).to_owned();
        let correlation_id = correlation_id.map(str::to_owned);
        let causation_id = causation_id.map(str::to_owned);
        Ok(Self {
            sequence,
            subject,
            event_id,
            event_type,
            tenant_id,
            correlation_id,
            causation_id,
            body,
            occurred_at,
            stored_at,
            headers,
        })
    }

    /// The W3C trace context the event was appended under, to parent consumer spans.
    pub fn trace_context(&self) -> opentelemetry::Context {
        crate::trace::extract_trace_context(&self.headers)
    }

    /// The correlation id, or the event's own id when none was set.
    pub fn correlation(&self) -> String {
        self.correlation_id
            .clone()
            .unwrap_or_else(|| self.event_id.to_string())
    }
}

pub(crate) fn to_timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub(crate) fn from_timestamp(t: prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}
