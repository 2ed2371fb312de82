//! The Tenantry event store, on NATS JetStream.
//!
//! One stream (`TENANTRY_EVENTS`, prefixed by a namespace in tests) holds every event; one
//! subject per (context, tenant) — `tenantry.<context>.<tenant_id>` — with exactly one writer.
//! Appends are optimistic (`Nats-Expected-Last-Subject-Sequence`) and de-duplicated
//! (`Nats-Msg-Id` = event id). Durable subscriptions deliver with explicit acks, bounded
//! redelivery and dead letters; replays read the log in order from any sequence.

mod archive;
mod config;
mod consumers;
mod deadletter;
pub mod derived;
pub mod drift;
mod envelope;
mod error;
mod replay;
mod store;
mod subscribe;
mod trace;

pub use archive::{ArchiveReport, ArchivedMessage};
pub use config::{NatsAuth, NatsTls, StoreConfig};
pub use consumers::ConsumerStatus;
pub use deadletter::{DeadLetter, DeadLetters};
pub use envelope::{NewEvent, RecordedEvent, headers};
pub use error::{DecodeError, StoreError};
pub use replay::{RawMessage, Replay};
pub use store::{Appended, EventStore, KvOptions};
pub use subscribe::{DeliverFrom, Delivery, SubscribeOptions, Subscription};
pub use trace::{
    current_trace_context, current_traceparent, extract_trace_context, link_current_span,
};

pub use proto::EventContext;
pub use proto::v1::event::Body;
