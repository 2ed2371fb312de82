//! A serde form of [`tenancy::TenantState`], stored as JSONB so the next event can be applied to
//! exactly the state the domain fold would have. Mirrored here because the domain crate is kept
//! free of serialization concerns; the conversion is lossless (tested).

use serde::{Deserialize, Serialize};
use tenancy::{Pending, Status, TenantState};

/// `prost_types::Timestamp` as stored (seconds + nanos, so nothing is rounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTimestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: i32,
}

/// The JSONB form of a tenant's folded state. Field names are the storage contract: rename
/// nothing, only add (with `#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredState {
    /// `Status::as_str()`.
    pub status: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Requested subdomain.
    pub subdomain: String,
    /// Current plan.
    pub plan: String,
    /// Organisation.
    pub organisation: String,
    /// Owner's email.
    pub owner_email: String,
    /// Owner's name.
    pub owner_name: String,
    /// Region.
    pub region: String,
    /// Site host.
    pub site: String,
    /// Bench.
    pub bench: String,
    /// Site URL.
    pub url: String,
    /// Latest failure.
    pub last_error: Option<String>,
    /// Whether an operator retry may help.
    pub retryable: bool,
    /// Operator retries requested.
    pub retry_count: u32,
    /// API key activation time.
    pub activation_ms: Option<u64>,
    /// Request-to-provisioned time.
    pub provisioned_ms: Option<u64>,
    /// Came from the standby pool.
    pub from_standby: bool,
    /// `suspension` | `resume`.
    pub pending: Option<String>,
    /// Events that changed the state.
    pub version: u64,
    /// When TenantRequested happened.
    pub requested_at: Option<StoredTimestamp>,
    /// When the latest counted event happened.
    pub updated_at: Option<StoredTimestamp>,
}

fn ts_out(t: Option<prost_types::Timestamp>) -> Option<StoredTimestamp> {
    t.map(|t| StoredTimestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

fn ts_in(t: Option<StoredTimestamp>) -> Option<prost_types::Timestamp> {
    t.map(|t| prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

/// Parses `Status::as_str()` back; unknown names (a newer writer?) read as `None`.
pub fn parse_status(s: &str) -> Status {
    Status::ALL
        .into_iter()
        .find(|st| st.as_str() == s)
        .unwrap_or(Status::None)
}

impl From<&TenantState> for StoredState {
    fn from(s: &TenantState) -> Self {
        Self {
            status: s.status.as_str().to_owned(),
            tenant_id: s.tenant_id.clone(),
            subdomain: s.subdomain.clone(),
            plan: s.plan.clone(),
            organisation: s.organisation.clone(),
            owner_email: s.owner_email.clone(),
            owner_name: s.owner_name.clone(),
            region: s.region.clone(),
            site: s.site.clone(),
            bench: s.bench.clone(),
            url: s.url.clone(),
            last_error: s.last_error.clone(),
            retryable: s.retryable,
            retry_count: s.retry_count,
            activation_ms: s.activation_ms,
            provisioned_ms: s.provisioned_ms,
            from_standby: s.from_standby,
            pending: s.pending.map(|p| {
                match p {
                    Pending::Suspension => "suspension",
                    Pending::Resume => "resume",
                }
                .to_owned()
            }),
            version: s.version,
            requested_at: ts_out(s.requested_at),
            updated_at: ts_out(s.updated_at),
        }
    }
}

impl From<StoredState> for TenantState {
    fn from(s: StoredState) -> Self {
        TenantState {
            status: parse_status(&s.status),
            tenant_id: s.tenant_id,
            subdomain: s.subdomain,
            plan: s.plan,
            organisation: s.organisation,
            owner_email: s.owner_email,
            owner_name: s.owner_name,
            region: s.region,
            site: s.site,
            bench: s.bench,
            url: s.url,
            last_error: s.last_error,
            retryable: s.retryable,
            retry_count: s.retry_count,
            activation_ms: s.activation_ms,
            provisioned_ms: s.provisioned_ms,
            from_standby: s.from_standby,
            pending: match s.pending.as_deref() {
                Some("suspension") => Some(Pending::Suspension),
                Some("resume") => Some(Pending::Resume),
                _ => None,
            },
            version: s.version,
            requested_at: ts_in(s.requested_at),
            updated_at: ts_in(s.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let state = TenantState {
            status: Status::Suspended,
            tenant_id: "t".into(),
            subdomain: "acme".into(),
            plan: "pro".into(),
            last_error: Some("boom".into()),
            retryable: true,
            retry_count: 2,
            activation_ms: Some(7),
            provisioned_ms: Some(9),
            from_standby: true,
            pending: Some(Pending::Resume),
            version: 12,
            requested_at: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 123_456_789,
            }),
            updated_at: Some(prost_types::Timestamp {
                seconds: 2,
                nanos: 1,
            }),
            ..TenantState::default()
        };
        let json = serde_json::to_value(StoredState::from(&state)).unwrap();
        let back: StoredState = serde_json::from_value(json).unwrap();
        assert_eq!(TenantState::from(back), state);
    }

    #[test]
    fn every_status_parses_back() {
        for s in Status::ALL {
            assert_eq!(parse_status(s.as_str()), s);
        }
        assert_eq!(parse_status("Nonsense"), Status::None);
    }
}
