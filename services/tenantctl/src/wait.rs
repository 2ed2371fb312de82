//! `--wait`: follows a lifecycle command in the read model until the tenant has settled —
//! nothing pending and not in the middle of provisioning or deletion — and says whether it
//! settled where the command meant it to.

use std::time::{Duration, Instant};

use pb::TenantStatus;
use proto::v1 as pb;

use crate::error::{CliError, ErrorKind};

/// How often the read model is asked.
const POLL: Duration = Duration::from_millis(250);

fn transitional(status: TenantStatus) -> bool {
    matches!(
        status,
        TenantStatus::Requested | TenantStatus::Provisioning | TenantStatus::Deleting
    )
}

fn name(status: TenantStatus) -> &'static str {
    status.as_str_name().trim_start_matches("TENANT_STATUS_")
}

/// Waits (up to `timeout`) until `tenant`, as of at least `sequence`, has settled; the
/// settled tenant when it is `wanted`, else exit code 4 (another command countermanded this
/// one, or the work failed) or 5 (still busy at the timeout).
pub async fn settle<F, Fut>(
    mut get: F,
    tenant: &str,
    sequence: u64,
    wanted: TenantStatus,
    timeout: Duration,
) -> Result<pb::Tenant, CliError>
where
    F: FnMut(pb::GetTenantRequest) -> Fut,
    Fut: std::future::Future<Output = Result<pb::Tenant, tonic::Status>>,
{
    let started = Instant::now();
    let mut last: Option<pb::Tenant> = None;
    while started.elapsed() < timeout {
        let asked = get(pb::GetTenantRequest {
            tenant_id: tenant.to_owned(),
            min_sequence: sequence,
        })
        .await;
        match asked {
            Ok(t) => {
                let status = t.status();
                if t.pending.is_empty() && !transitional(status) {
                    if status == wanted {
                        return Ok(t);
                    }
                    let why = if t.last_error.is_empty() {
                        "a later command countermanded it".to_owned()
                    } else {
                        t.last_error.clone()
                    };
                    return Err(CliError::new(
                        ErrorKind::Refused,
                        format!(
                            "tenant {tenant} settled {}, not {} ({why})",
                            name(status),
                            name(wanted)
                        ),
                    ));
                }
                last = Some(t);
            }
            // The read model has not applied the command yet, or is restarting: ask again.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::FailedPrecondition
                        | tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                ) => {}
            Err(s) => return Err(s.into()),
        }
        tokio::time::sleep(POLL).await;
    }
    let now = last.map_or_else(
        || "not yet in the read model".to_owned(),
        |t| {
            let pending = if t.pending.is_empty() {
                String::new()
            } else {
                format!(", {}", t.pending)
            };
            format!("still {}{pending}", name(t.status()))
        },
    );
    Err(CliError::new(
        ErrorKind::Unavailable,
        format!(
            "tenant {tenant} is {now} after {} s; the command stands — follow it with `tenantctl tenants show {tenant}`",
            timeout.as_secs()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn tenant(status: TenantStatus, pending: &str) -> pb::Tenant {
        pb::Tenant {
            tenant_id: "t".into(),
            status: status as i32,
            pending: pending.into(),
            ..Default::default()
        }
    }

    async fn run(
        answers: Vec<Result<pb::Tenant, tonic::Status>>,
        wanted: TenantStatus,
    ) -> Result<pb::Tenant, CliError> {
        let answers = Mutex::new(answers.into_iter());
        settle(
            |_| {
                let next = answers.lock().unwrap().next();
                async move {
                    next.unwrap_or_else(|| Ok(tenant(TenantStatus::Active, "suspending")))
                }
            },
            "t",
            7,
            wanted,
            Duration::from_secs(2),
        )
        .await
    }

    #[tokio::test]
    async fn waits_through_pending_and_a_lagging_model_to_the_outcome() {
        let settled = run(
            vec![
                Err(tonic::Status::failed_precondition("behind")),
                Ok(tenant(TenantStatus::Active, "suspending")),
                Ok(tenant(TenantStatus::Suspended, "")),
            ],
            TenantStatus::Suspended,
        )
        .await
        .unwrap();
        assert_eq!(settled.status(), TenantStatus::Suspended);
    }

    #[tokio::test]
    async fn another_outcome_is_refused_and_a_busy_tenant_times_out() {
        let countermanded = run(
            vec![Ok(tenant(TenantStatus::Active, ""))],
            TenantStatus::Suspended,
        )
        .await
        .unwrap_err();
        assert_eq!(countermanded.kind, ErrorKind::Refused);
        assert!(
            countermanded.message.contains("countermanded"),
            "{}",
            countermanded.message
        );
        let busy = run(vec![], TenantStatus::Suspended).await.unwrap_err();
        assert_eq!(busy.kind, ErrorKind::Unavailable);
        assert!(
            busy.message.contains("still ACTIVE, suspending"),
            "{}",
            busy.message
        );
    }
}
