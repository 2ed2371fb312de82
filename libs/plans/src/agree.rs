//! Every service runs the same catalogue: the first to start publishes it in a KV bucket, every
//! later one compares. A newer version replaces the published one (compare-and-set, so two
//! instances rolling out the same new file agree); an older or different one stops the service.

use async_nats::jetstream::kv;
use bytes::Bytes;
use eventstore::EventStore;

use crate::catalogue::{Difference, PlanCatalogue};

const BUCKET: &str = "PLAN_CATALOGUE";
const KEY: &str = "current";

/// Why a service must not start with its catalogue.
#[derive(Debug, thiserror::Error)]
pub enum AgreeError {
    /// Same version, other content.
    #[error(
        "this service's plan catalogue (version {version}) differs from the one the other services run: {}; make the files identical, or raise `version` to publish a change",
        list(.differences)
    )]
    Disagree {
        /// The version both claim.
        version: u64,
        /// What differs.
        differences: Vec<Difference>,
    },
    /// Older than the published one.
    #[error(
        "this service's plan catalogue is version {ours}, but version {published} is published (by {by}); deploy the current plan file"
    )]
    Outdated {
        /// Our version.
        ours: u64,
        /// The published version.
        published: u64,
        /// Who published it.
        by: String,
    },
    /// NATS did not answer.
    #[error("cannot check the plan catalogue: {0}")]
    Unavailable(String),
}

fn list(d: &[Difference]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Published {
    by: String,
    catalogue: PlanCatalogue,
}

/// Checks `catalogue` against the published one, publishing it when there is none or it is
/// newer. `service` is recorded as the publisher.
pub async fn agree(
    store: &EventStore,
    catalogue: &PlanCatalogue,
    service: &str,
) -> Result<(), AgreeError> {
    let kv = store
        .key_value(BUCKET, 1, "Tenantry: the plan catalogue every service runs")
        .await
        .map_err(|e| AgreeError::Unavailable(e.to_string()))?;
    let ours = Bytes::from(
        serde_json::to_vec(&Published {
            by: service.to_owned(),
            catalogue: catalogue.clone(),
        })
        .map_err(|e| AgreeError::Unavailable(e.to_string()))?,
    );
    // A few rounds: another instance may publish between our read and our write.
    for _ in 0..5 {
        let entry = kv
            .entry(KEY)
            .await
            .map_err(|e| AgreeError::Unavailable(e.to_string()))?
            .filter(|e| e.operation == kv::Operation::Put);
        let Some(entry) = entry else {
            match kv.create(KEY, ours.clone()).await {
                Ok(_) => {
                    tracing::info!(version = catalogue.version, "published the plan catalogue");
                    return Ok(());
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(AgreeError::Unavailable(e.to_string())),
            }
        };
        let published: Published = serde_json::from_slice(&entry.value)
            .map_err(|e| AgreeError::Unavailable(format!("published catalogue unreadable: {e}")))?;
        let theirs = &published.catalogue;
        if catalogue.version < theirs.version {
            return Err(AgreeError::Outdated {
                ours: catalogue.version,
                published: theirs.version,
                by: published.by,
            });
        }
        if catalogue.version == theirs.version {
            let differences = catalogue.differences(theirs);
            return if differences.is_empty() {
                Ok(())
            } else {
                Err(AgreeError::Disagree {
                    version: catalogue.version,
                    differences,
                })
            };
        }
        match kv.update(KEY, ours.clone(), entry.revision).await {
            Ok(_) => {
                tracing::info!(
                    from = theirs.version,
                    to = catalogue.version,
                    "published a newer plan catalogue"
                );
                return Ok(());
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(AgreeError::Unavailable(e.to_string())),
        }
    }
    Err(AgreeError::Unavailable(
        "the published catalogue kept changing; try again".into(),
    ))
}
