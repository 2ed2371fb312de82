//! `ProjectionAdmin`: operator commands on the read model, run inside the projection so that
//! nothing outside the service writes its tables.

use std::pin::Pin;

use eventstore::EventStore;
use futures::Stream;
use proto::v1::projection_admin_server::ProjectionAdmin;
use proto::v1::{self as pb, RebuildPhase, RebuildRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::rebuild::{Phase, RebuildOptions, RebuildProgress, RebuildReport, rebuild};
use crate::store::Store;

/// The gRPC service (wrap it with the admin-token interceptor).
#[derive(Clone, Debug)]
pub struct AdminService {
    store: Store,
    events: EventStore,
}

impl AdminService {
    /// Rebuilds `store` from `events`.
    pub fn new(store: Store, events: EventStore) -> Self {
        Self { store, events }
    }
}

fn phase(p: Phase) -> RebuildPhase {
    match p {
        Phase::Replaying => RebuildPhase::Replaying,
        Phase::CatchingUp => RebuildPhase::CatchingUp,
        Phase::Flipping => RebuildPhase::Flipping,
        Phase::Done => RebuildPhase::Done,
    }
}

fn progress_message(p: &RebuildProgress) -> pb::RebuildProgress {
    pb::RebuildProgress {
        phase: phase(p.phase) as i32,
        applied: p.applied,
        total: p.total,
        last_sequence: p.last_sequence,
        report: None,
    }
}

fn report_message(r: &RebuildReport) -> pb::RebuildProgress {
    pb::RebuildProgress {
        phase: RebuildPhase::Done as i32,
        applied: r.events,
        total: r.events,
        last_sequence: r.last_sequence,
        report: Some(pb::RebuildReport {
            generation: u32::try_from(r.generation.number).unwrap_or(0),
            previous_generation: u32::try_from(r.previous.number).unwrap_or(0),
            schema: r.generation.schema.clone(),
            events: r.events,
            tenants: r.tenants,
            last_sequence: r.last_sequence,
            elapsed_ms: u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

/// Progress messages a slow caller may fall behind by; older ones are skipped (each message
/// carries totals, so skipping loses nothing).
const PROGRESS_BUFFER: usize = 64;

type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::RebuildProgress, Status>> + Send>>;

#[tonic::async_trait]
impl ProjectionAdmin for AdminService {
    type RebuildStream = ProgressStream;

    async fn rebuild(
        &self,
        request: Request<RebuildRequest>,
    ) -> Result<Response<Self::RebuildStream>, Status> {
        let req = request.into_inner();
        let defaults = RebuildOptions::default();
        let options = RebuildOptions {
            from_sequence: req.from_sequence.max(1),
            batch_size: match req.batch_size {
                0 => defaults.batch_size,
                n => (n as usize).min(100_000),
            },
            ..defaults
        };
        let (tx, rx) = mpsc::channel(PROGRESS_BUFFER);
        let (store, events) = (self.store.clone(), self.events.clone());
        // The rebuild is the service's own job, not the caller's: it runs to the end even if
        // the operator's connection drops (a half-built generation would only be dropped by
        // the next rebuild).
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            let result = rebuild(&store, &events, &options, move |p| {
                let _ = progress_tx.try_send(Ok(progress_message(p)));
            })
            .await;
            let last = match result {
                Ok(report) => Ok(report_message(&report)),
                Err(e) => Err(Status::from(e)),
            };
            // Sent with backpressure: the final answer must not be skipped.
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
