//! When a deleted tenant's subdomain becomes free again: after the grace period that follows its
//! SiteDeleted — not before, and never while the tenant is not deleted.

mod common;

use chrono::{Duration as Days, Utc};
use common::*;
use eventstore::{Body, EventContext, EventStore, NewEvent};
use proto::v1 as pb;
use tonic::Code;

/// Records the tenant's SiteDeleted as having happened `ago`.
async fn deleted(store: &EventStore, tenant: &str, ago: Days) {
    let mut e = NewEvent::new(Body::SiteDeleted(pb::SiteDeleted {
        tenant_id: tenant.to_owned(),
        site: "old.example".into(),
        bench: "bench-1".into(),
        archived_path: String::new(),
    }));
    e.occurred_at = Utc::now() - ago;
    store
        .append_latest(&store.subject(EventContext::Provisioning, tenant), vec![e])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_deleted_tenants_name_is_free_only_after_the_grace_period() {
    // A grace of one day.
    let stack = spawn_stack_with(|c| c.subdomain_grace_days = 1).await;
    let mut client = stack.client().await;
    let t = tag();
    let first = client.signup(request(&t)).await.unwrap().into_inner();
    let check = |name: String| pb::CheckSubdomainRequest {
        subdomain: name,
        organisation: String::new(),
    };
    let name = format!("acme-{t}");
    let mut again = request(&t);
    again.email = format!("newcomer.{t}@example.com");

    // Live: taken.
    assert_eq!(
        client.signup(again.clone()).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    // Deleted an hour ago: still the old tenant's.
    deleted(&stack.store, &first.tenant_id, Days::hours(1)).await;
    assert_eq!(
        client.signup(again.clone()).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    let answer = client
        .check_subdomain(check(name.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.available, "{answer:?}");

    // Deleted two days ago (its latest SiteDeleted counts): free, and taken by the newcomer.
    deleted(&stack.store, &first.tenant_id, Days::days(2)).await;
    let answer = client
        .check_subdomain(check(name.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.available, "{answer:?}");
    let second = client.signup(again).await.unwrap().into_inner();
    assert_ne!(second.tenant_id, first.tenant_id);
    assert_eq!(second.subdomain, name);
    // Now the newcomer's, who is not deleted: taken again.
    let mut third = request(&t);
    third.email = format!("third.{t}@example.com");
    assert_eq!(
        client.signup(third).await.unwrap_err().code(),
        Code::AlreadyExists
    );
}
