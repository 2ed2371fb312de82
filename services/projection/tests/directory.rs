//! The TenantDirectory gRPC API, as a client sees it.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use eventstore::Body;
use futures::StreamExt;
use proto::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn get_list_and_history_answer_from_the_read_model() {
    let events = event_store().await;
    let projection = spawn_projection(&events).await;
    let mut rng = rng(rand::random());
    let histories: Vec<Vec<Body>> = (0..12).map(|n| lifecycle(&mut rng, n, 15)).collect();
    let last = append_interleaved(&events, &mut rng, histories).await;
    let mut client = projection.client().await;
    let by_tenant = events_by_tenant(&events).await;

    // Paging: 12 tenants in pages of 5, by creation, with an opaque token and the total.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_tenants(pb::ListTenantsRequest {
                page_size: 5,
                page_token: token.clone(),
                min_sequence: last,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total, 12);
        pages += 1;
        seen.extend(page.tenants);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 12);
    let ids: HashSet<&str> = seen.iter().map(|t| t.tenant_id.as_str()).collect();
    assert_eq!(ids.len(), 12);
    let created: Vec<(i64, i32, &str)> = seen
        .iter()
        .map(|t| {
            let c = t.created_at.unwrap();
            (c.seconds, c.nanos, t.tenant_id.as_str())
        })
        .collect();
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(
        created, sorted,
        "pages come in (created_at, tenant_id) order"
    );

    // Filters agree with the domain fold.
    let mut by_status: HashMap<i32, usize> = HashMap::new();
    for t in &seen {
        *by_status.entry(t.status).or_default() += 1;
        let folded = fold(&by_tenant[&t.tenant_id]);
        assert_eq!(t.status, pb::TenantStatus::from(folded.status) as i32);
        assert_eq!(t.plan, folded.plan);
    }
    for (status, n) in by_status {
        let page = client
            .list_tenants(pb::ListTenantsRequest {
                status,
                page_size: 500,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.tenants.len(), n);
        assert_eq!(page.total as usize, n);
        assert!(page.tenants.iter().all(|t| t.status == status));
    }
    let plan = seen[0].plan.clone();
    let page = client
        .list_tenants(pb::ListTenantsRequest {
            plan: plan.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.tenants.len(),
        seen.iter().filter(|t| t.plan == plan).count()
    );
    let bench_tenant = seen.iter().find(|t| !t.bench.is_empty());
    if let Some(b) = bench_tenant {
        let page = client
            .list_tenants(pb::ListTenantsRequest {
                bench: b.bench.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            page.tenants.len(),
            seen.iter().filter(|t| t.bench == b.bench).count()
        );
    }

    // GetTenant and GetHistory for one tenant.
    let one = &seen[3];
    let got = client
        .get_tenant(pb::GetTenantRequest {
            tenant_id: one.tenant_id.clone(),
            min_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&got, one);
    let history = client
        .get_history(pb::GetHistoryRequest {
            tenant_id: one.tenant_id.clone(),
            min_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let recorded = &by_tenant[&one.tenant_id];
    assert_eq!(history.len(), recorded.len());
    for (h, e) in history.iter().zip(recorded) {
        assert_eq!(h.sequence, e.sequence);
        assert_eq!(h.event_type, e.event_type);
        assert_eq!(h.event_id, e.event_id.to_string());
        assert_eq!(h.context, e.body.context().as_str());
        assert_eq!(h.summary, tenancy::summarize(&e.body));
        assert_eq!(h.correlation_id, e.correlation());
    }

    // Errors a client can act on.
    let missing = tenancy::TenantId::new().to_string();
    let err = client
        .get_tenant(pb::GetTenantRequest {
            tenant_id: missing.clone(),
            min_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .get_history(pb::GetHistoryRequest {
            tenant_id: missing,
            min_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    for bad in ["", "no spaces please", "x;drop table tenants"] {
        let err = client
            .get_tenant(pb::GetTenantRequest {
                tenant_id: bad.into(),
                min_sequence: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
    }
    let err = client
        .list_tenants(pb::ListTenantsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .list_tenants(pb::ListTenantsRequest {
            status: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .list_tenants(pb::ListTenantsRequest {
            page_size: 501,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    projection.stop().await;
}

#[tokio::test]
async fn reads_wait_for_the_sequence_they_ask_for() {
    let events = event_store().await;
    let projection = spawn_projection(&events).await;
    let mut client = projection.client().await;
    let mut rng = rng(rand::random());
    let mut versions = HashMap::new();
    // Each read right after its append names the append's sequence and sees its effect.
    for body in lifecycle(&mut rng, 1, 25) {
        let tenant = body.tenant_id().to_owned();
        let sequence = append(&events, &mut versions, body).await;
        let history = client
            .get_history(pb::GetHistoryRequest {
                tenant_id: tenant.clone(),
                min_sequence: sequence,
            })
            .await
            .unwrap()
            .into_inner()
            .entries;
        assert_eq!(history.last().map(|h| h.sequence), Some(sequence));
        let tenant = client
            .get_tenant(pb::GetTenantRequest {
                tenant_id: tenant,
                min_sequence: sequence,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(tenant.version <= sequence);
    }
    projection.stop().await;

    // Without a consumer the projection never gets there: UNAVAILABLE, saying it is behind.
    let mut config = config(&events).await;
    config.no_consumer = true;
    config.read_wait_ms = 100;
    let idle = spawn_with(config).await;
    let mut client = idle.client().await;
    let err = client
        .list_tenants(pb::ListTenantsRequest {
            min_sequence: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("behind"), "{}", err.message());
    idle.stop().await;
}

#[tokio::test]
async fn watch_sends_the_current_tenants_then_every_change() {
    let events = event_store().await;
    let projection = spawn_projection(&events).await;
    let mut rng = rng(rand::random());
    let histories: Vec<Vec<Body>> = (0..3).map(|n| lifecycle(&mut rng, n, 1)).collect();
    let last = append_interleaved(&events, &mut rng, histories).await;
    projection.caught_up(last).await;
    let mut client = projection.client().await;
    let mut watch = client
        .watch_tenants(pb::WatchTenantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut snapshot = HashSet::new();
    for _ in 0..3 {
        let t = watch.next().await.unwrap().unwrap();
        snapshot.insert(t.tenant_id);
    }
    assert_eq!(snapshot.len(), 3);

    // A new tenant and a change to it arrive as they are projected.
    let mut versions = HashMap::new();
    let mut new = lifecycle(&mut rng, 9, 1);
    let id = new[0].tenant_id().to_owned();
    // Both events change the tenant, so the last one's sequence becomes its version.
    new.push(Body::PlacementChosen(pb::PlacementChosen {
        tenant_id: id.clone(),
        bench: "bench-9".into(),
        region: "eu-central".into(),
        site: "new.example.com".into(),
        db_name: "db".into(),
    }));
    let mut appended = Vec::new();
    for b in new {
        appended.push(append(&events, &mut versions, b).await);
    }
    let mut seen_versions = Vec::new();
    while seen_versions.last() != appended.last() {
        let t = watch.next().await.unwrap().unwrap();
        if t.tenant_id == id {
            seen_versions.push(t.version);
        }
    }
    assert!(!seen_versions.is_empty());

    // A status filter only sends matching tenants.
    let mut active_only = client
        .watch_tenants(pb::WatchTenantsRequest {
            status: pb::TenantStatus::Deleted as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let other = lifecycle(&mut rng, 10, 1);
    append(&events, &mut versions, other[0].clone()).await;
    // Nothing is deleted: the only way to see an item is a bug; a poll with no item pending
    // answers Pending, which `now_or_never` turns into None.
    projection
        .caught_up(events.last_sequence().await.unwrap())
        .await;
    let _ = client
        .get_tenant(pb::GetTenantRequest {
            tenant_id: id.clone(),
            min_sequence: 0,
        })
        .await
        .unwrap();
    assert!(futures::FutureExt::now_or_never(active_only.next()).is_none());
    projection.stop().await;
}

#[tokio::test]
async fn the_directory_answers_operators_only_and_rebuilds_need_an_admin() {
    let events = event_store().await;
    let (_dir, files) = testkit::tls_files();
    let mut config = config(&events).await;
    config.grpc.tls = testkit::server_tls(&files, false);
    let projection = spawn_with(config).await;
    let url = format!("https://localhost:{}", projection.addr.port());
    let channel = testkit::client_tls(&files, false)
        .endpoint(&url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let list = || pb::ListTenantsRequest::default();

    // No token, a wrong token: every owner's email and organisation stay private.
    let mut anonymous = pb::tenant_directory_client::TenantDirectoryClient::new(channel.clone());
    let err = anonymous.list_tenants(list()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut wrong = pb::tenant_directory_client::TenantDirectoryClient::with_interceptor(
        channel.clone(),
        testkit::Bearer::new("not-a-token"),
    );
    assert_eq!(
        wrong.list_tenants(list()).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // A reader reads; only an admin rebuilds.
    let mut reader = pb::tenant_directory_client::TenantDirectoryClient::with_interceptor(
        channel.clone(),
        testkit::Bearer::new(testkit::READER_TOKEN),
    );
    reader.list_tenants(list()).await.unwrap();
    let mut rebuild_as_reader =
        pb::projection_admin_client::ProjectionAdminClient::with_interceptor(
            channel.clone(),
            testkit::Bearer::new(testkit::READER_TOKEN),
        );
    let err = rebuild_as_reader
        .rebuild(pb::RebuildRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut admin = pb::tenant_directory_client::TenantDirectoryClient::with_interceptor(
        channel,
        testkit::Bearer::new(testkit::ADMIN_TOKEN),
    );
    admin.list_tenants(list()).await.unwrap();

    // And nothing answers in plaintext.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", projection.addr))
        .unwrap()
        .timeout(std::time::Duration::from_secs(5))
        .connect_lazy();
    let err = pb::tenant_directory_client::TenantDirectoryClient::with_interceptor(
        plain,
        testkit::Bearer::new(testkit::READER_TOKEN),
    )
    .list_tenants(list())
    .await
    .unwrap_err();
    assert_ne!(
        err.code(),
        Code::Unauthenticated,
        "plaintext reached the service: {err:?}"
    );
    projection.stop().await;
}
