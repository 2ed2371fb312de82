#![allow(dead_code)] // shared by several test binaries and the bench; each uses a part
//! Test support: an isolated event store, random tenant lifecycles appended to it, and the
//! projection spawned on port 0 against a fresh database.

use std::collections::HashMap;

use eventstore::{Body, EventStore, NewEvent, RecordedEvent};
use projection::Config;
use proto::v1 as pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tenancy::{
    Actor, Command, Email, OrganisationName, PersonName, PlanId, Region, Status, Subdomain,
    TenantId, TenantState, VaultRef,
};

/// A seeded RNG; the seed is printed so a failure can be replayed.
pub fn rng(seed: u64) -> StdRng {
    eprintln!("random seed: {seed}");
    StdRng::seed_from_u64(seed)
}

const PLANS: [&str; 4] = ["free", "starter", "pro", "enterprise"];
const BENCHES: [&str; 3] = ["bench-1", "bench-2", "bench-3"];

fn request(rng: &mut StdRng, n: usize) -> Command {
    let id = TenantId::new();
    Command::RequestTenant {
        tenant_id: id,
        subdomain: Subdomain::parse(&format!("org{n}x{}", rng.random_range(0..1000))).unwrap(),
        organisation: OrganisationName::parse(&format!("Org {n}")).unwrap(),
        owner_email: Email::parse(&format!("owner{n}@example.com")).unwrap(),
        owner_name: PersonName::parse(&format!("Owner {n}")).unwrap(),
        plan: PlanId::parse(PLANS[rng.random_range(0..PLANS.len())]).unwrap(),
        region: Region::parse("eu-central").unwrap(),
        password_ref: VaultRef::for_tenant(&id, "owner-password").unwrap(),
        sso_password_ref: None,
        idempotency_key: None,
    }
}

fn op() -> Actor {
    Actor::operator("test")
}

/// The provisioning facts of a new site, in order.
fn provisioning_step(t: &str, step: usize, bench: &str, site: &str, rng: &mut StdRng) -> Body {
    let t = t.to_owned();
    match step {
        0 => Body::PlacementChosen(pb::PlacementChosen {
            tenant_id: t,
            bench: bench.into(),
            region: "eu-central".into(),
            site: site.into(),
            db_name: "db".into(),
        }),
        1 if rng.random_bool(0.3) => Body::StandbySiteClaimed(pb::StandbySiteClaimed {
            tenant_id: t,
            standby_id: "standby-1".into(),
            bench: bench.into(),
            standby_site: "standby.example.com".into(),
            site: site.into(),
        }),
        1 => Body::SiteCreated(pb::SiteCreated {
            tenant_id: t,
            bench: bench.into(),
            site: site.into(),
            duration_ms: rng.random_range(1000..30000),
            ..Default::default()
        }),
        2 => Body::AppsInstalled(pb::AppsInstalled {
            tenant_id: t,
            site: site.into(),
            apps: vec!["erpnext".into()],
            duration_ms: 1200,
        }),
        3 => Body::SiteConfigured(pb::SiteConfigured {
            tenant_id: t,
            site: site.into(),
            keys: vec!["plan_limit".into()],
            duration_ms: 40,
        }),
        4 => Body::OwnerUserCreated(pb::OwnerUserCreated {
            tenant_id: t,
            site: site.into(),
            email: "owner@example.com".into(),
            roles: vec!["System Manager".into()],
            duration_ms: 300,
        }),
        5 => Body::ApiCredentialsIssued(pb::ApiCredentialsIssued {
            tenant_id: t,
            site: site.into(),
            user: "automation".into(),
            credentials_ref: "vault://tenant/x/api".into(),
            duration_ms: 200,
        }),
        6 => Body::ApiAccessVerified(pb::ApiAccessVerified {
            tenant_id: t,
            site: site.into(),
            user: "automation".into(),
            activation_ms: rng.random_range(1..500),
        }),
        _ => Body::TenantProvisioned(pb::TenantProvisioned {
            tenant_id: t,
            site: site.into(),
            bench: bench.into(),
            url: format!("https://{site}"),
            total_ms: rng.random_range(1000..40000),
            from_standby: false,
            ..Default::default()
        }),
    }
}

/// A fact that changes no status, from any context.
fn side_fact(t: &str, rng: &mut StdRng) -> Body {
    let t = t.to_owned();
    match rng.random_range(0..7) {
        0 => Body::SiteBackedUp(pb::SiteBackedUp {
            tenant_id: t,
            site: "s".into(),
            files: vec![],
            duration_ms: 900,
        }),
        1 => Body::UsageRecorded(pb::UsageRecorded {
            tenant_id: t,
            users: rng.random_range(1..50),
            database_mb: 120,
            storage_mb: 80,
            measured_at: None,
        }),
        2 => Body::InvoiceIssued(pb::InvoiceIssued {
            tenant_id: t,
            invoice_id: "inv-1".into(),
            amount_minor: 4900,
            currency: "EUR".into(),
            due_at: None,
            ..Default::default()
        }),
        3 => Body::CredentialStored(pb::CredentialStored {
            tenant_id: t,
            name: "api".into(),
            kind: "api_credentials".into(),
            version: 1,
            reference: "vault://tenant/x/api".into(),
        }),
        4 => Body::IdentityConfigured(pb::IdentityConfigured {
            tenant_id: t,
            application_slug: "app".into(),
            ..Default::default()
        }),
        5 => Body::PlanChanged(pb::PlanChanged {
            tenant_id: t,
            from_plan: String::new(),
            to_plan: PLANS[rng.random_range(0..PLANS.len())].into(),
            ..Default::default()
        }),
        _ => Body::SubscriptionStarted(pb::SubscriptionStarted {
            tenant_id: t,
            subscription_id: "sub-1".into(),
            plan: "pro".into(),
            trial_ends_at: None,
            ..Default::default()
        }),
    }
}

/// A fact that is usually out of place (the fold must ignore it where it is illegal).
fn stray_fact(t: &str, rng: &mut StdRng) -> Body {
    let t = t.to_owned();
    match rng.random_range(0..4) {
        0 => Body::SiteResumed(pb::SiteResumed {
            tenant_id: t,
            site: "s".into(),
        }),
        1 => Body::SiteSuspended(pb::SiteSuspended {
            tenant_id: t,
            site: "s".into(),
            reason: "stray".into(),
        }),
        2 => Body::TenantProvisioned(pb::TenantProvisioned {
            tenant_id: t,
            site: "stray.example.com".into(),
            ..Default::default()
        }),
        _ => Body::SiteDeleted(pb::SiteDeleted {
            tenant_id: t,
            site: "s".into(),
            ..Default::default()
        }),
    }
}

/// One tenant's random but plausible lifecycle: commands go through `tenancy::decide`,
/// provisioning and billing facts are made up, with failures, retries and stray facts.
pub fn lifecycle(rng: &mut StdRng, n: usize, max_events: usize) -> Vec<Body> {
    let mut out = Vec::new();
    let mut state = TenantState::default();
    let first = tenancy::decide(&state, request(rng, n)).expect("a new tenant can be requested");
    for b in first {
        state = tenancy::apply(state, &b);
        out.push(b);
    }
    let t = state.tenant_id.clone();
    let bench = BENCHES[rng.random_range(0..BENCHES.len())];
    let site = format!("{}.erp.example.com", state.subdomain);
    let mut step = 0usize;
    let target = rng.random_range(1..=max_events.max(1));
    while out.len() < target {
        let roll: f64 = rng.random();
        let mut events: Vec<Body> = Vec::new();
        if roll < 0.04 {
            events.push(stray_fact(&t, rng));
        } else {
            match state.status {
                Status::Requested | Status::Provisioning => {
                    if roll < 0.12 {
                        events.push(Body::ProvisioningStepFailed(pb::ProvisioningStepFailed {
                            tenant_id: t.clone(),
                            step: 2,
                            attempt: 1,
                            reason: "bench timed out".into(),
                            will_retry: true,
                            retry_in_ms: 1000,
                        }));
                    } else if roll < 0.18 {
                        events.push(Body::ProvisioningFailed(pb::ProvisioningFailed {
                            tenant_id: t.clone(),
                            step: 2,
                            reason: "new-site failed: database exists".into(),
                            retryable: rng.random_bool(0.7),
                        }));
                    } else {
                        events.push(provisioning_step(&t, step.min(7), bench, &site, rng));
                        step += 1;
                    }
                }
                Status::Active => {
                    let cmd = match rng.random_range(0..10) {
                        0..=2 => Some(Command::Suspend {
                            reason: "unpaid".into(),
                            actor: op(),
                        }),
                        3 => Some(Command::ChangePlan {
                            plan: PlanId::parse(PLANS[rng.random_range(0..PLANS.len())]).unwrap(),
                            actor: op(),
                        }),
                        4 => Some(Command::Delete {
                            reason: "closed".into(),
                            actor: op(),
                        }),
                        _ => None,
                    };
                    match cmd {
                        Some(c) => events.extend(tenancy::decide(&state, c).unwrap_or_default()),
                        None if state.pending.is_some() && rng.random_bool(0.6) => {
                            events.push(Body::SiteSuspended(pb::SiteSuspended {
                                tenant_id: t.clone(),
                                site: site.clone(),
                                reason: "unpaid".into(),
                            }))
                        }
                        None => events.push(side_fact(&t, rng)),
                    }
                }
                Status::Suspended => {
                    if state.pending.is_some() && rng.random_bool(0.6) {
                        events.push(Body::SiteResumed(pb::SiteResumed {
                            tenant_id: t.clone(),
                            site: site.clone(),
                        }));
                    } else {
                        let cmd = if rng.random_bool(0.8) {
                            Command::Resume {
                                reason: "paid".into(),
                                actor: op(),
                            }
                        } else {
                            Command::Delete {
                                reason: "closed".into(),
                                actor: op(),
                            }
                        };
                        events.extend(tenancy::decide(&state, cmd).unwrap_or_default());
                    }
                }
                Status::Failed => {
                    if rng.random_bool(0.2) {
                        events.push(Body::SiteRolledBack(pb::SiteRolledBack {
                            tenant_id: t.clone(),
                            bench: bench.into(),
                            site: site.clone(),
                            method: "directory_removed".into(),
                        }));
                    }
                    let cmd = if rng.random_bool(0.8) {
                        step = 0;
                        Command::RetryProvisioning {
                            reason: "fixed".into(),
                            actor: op(),
                        }
                    } else {
                        Command::Delete {
                            reason: "gave up".into(),
                            actor: op(),
                        }
                    };
                    events.extend(tenancy::decide(&state, cmd).unwrap_or_default());
                }
                Status::Deleting => events.push(Body::SiteDeleted(pb::SiteDeleted {
                    tenant_id: t.clone(),
                    site: site.clone(),
                    bench: bench.into(),
                    archived_path: "archived/s".into(),
                })),
                Status::Deleted | Status::None => break,
            }
        }
        for b in events {
            state = tenancy::apply(state, &b);
            out.push(b);
        }
    }
    out
}

/// Appends each tenant's events in order, interleaving tenants at random (so the stream mixes
/// them as production would). Returns the last sequence.
pub async fn append_interleaved(
    store: &EventStore,
    rng: &mut StdRng,
    mut histories: Vec<Vec<Body>>,
) -> u64 {
    for h in &mut histories {
        h.reverse();
    }
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut last = 0;
    loop {
        histories.retain(|h| !h.is_empty());
        if histories.is_empty() {
            return last;
        }
        let i = rng.random_range(0..histories.len());
        let body = histories[i].pop().expect("non-empty");
        last = append(store, &mut versions, body).await;
    }
}

/// Appends one event at its subject's known version.
pub async fn append(store: &EventStore, versions: &mut HashMap<String, u64>, body: Body) -> u64 {
    let subject = store.subject(body.context(), body.tenant_id());
    let expected = versions.get(&subject).copied().unwrap_or(0);
    let seqs = store
        .append(&subject, expected, vec![NewEvent::new(body)])
        .await
        .expect("append");
    let seq = seqs[0];
    versions.insert(subject, seq);
    seq
}

/// Every event in the stream, grouped by the tenant id in its body, in stream order.
pub async fn events_by_tenant(store: &EventStore) -> HashMap<String, Vec<RecordedEvent>> {
    let all = store
        .replay(&store.all_filter(), 1)
        .await
        .expect("replay")
        .collect()
        .await
        .expect("replay");
    let mut out: HashMap<String, Vec<RecordedEvent>> = HashMap::new();
    for e in all {
        out.entry(e.body.tenant_id().to_owned())
            .or_default()
            .push(e);
    }
    out
}

/// The domain fold of recorded events (with their times), as the projection should hold it.
pub fn fold(events: &[RecordedEvent]) -> TenantState {
    let envelopes: Vec<pb::Event> = events.iter().map(projection::apply::envelope).collect();
    tenancy::fold_events(&envelopes)
}

#[allow(unused_imports)] // each test binary uses a part
pub use testkit::{TestProjection, event_store, eventually};

/// A config for `events`' namespace and a fresh database.
pub async fn config(events: &EventStore) -> Config {
    testkit::projection_config(&events.config().namespace).await
}

/// The projection on port 0 with `config`.
pub async fn spawn_with(config: Config) -> TestProjection {
    testkit::spawn_projection(config).await
}

/// The projection for `events` on a fresh database.
pub async fn spawn_projection(events: &EventStore) -> TestProjection {
    spawn_with(config(events).await).await
}
