//! The consumer core every worker service (provisioner, identity, billing) runs on.
//!
//! - [`Worker`]: a durable JetStream consumer shared by every instance of a service. It pulls
//!   exactly one message per free permit (nothing waits in one instance's buffer while another
//!   is idle), takes the event's [`Lease`] (per tenant, across instances), keeps the delivery
//!   alive with in-progress acks while the handler runs, bounds it with a deadline, and settles
//!   it: done → ack, not yet → nak with a delay, transient → nak with back-off (a dead letter
//!   on the last attempt), permanent → terminated once with a dead letter. When its stream or
//!   consumer goes away it drops readiness and subscribes again.
//! - [`Leases`]: exclusion across instances as a KV lease with a fencing token (the KV revision
//!   of the holder's last write), heartbeated while held, checked before every side effect and
//!   append, released only by its holder, and never taken over while the command it guards
//!   may still run (`busy_until`).

pub mod fence;
pub mod lease;
pub mod worker;

pub use fence::Fence;
pub use lease::{Acquire, Lease, LeaseError, Leases};
pub use worker::{Handler, Outcome, Work, WorkError, Worker, WorkerConfig};
