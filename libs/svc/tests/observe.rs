//! The gRPC server layer as Prometheus sees it: every call counted by method and code, and a
//! path nobody serves counted under one `unknown` method, however many a caller makes up.

use std::time::Duration;

use svc::Metrics;
use svc::observe::ObserveLayer;
use tonic::transport::{Channel, Server};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_prost::ProstCodec;

#[tokio::test]
async fn calls_are_counted_by_method_and_code_and_unknown_paths_share_one_series() {
    let metrics = Metrics::new();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .layer(ObserveLayer::new("test", &metrics))
            .add_service(health)
            .serve_with_incoming(svc::grpc::incoming(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the health check answers");
    for junk in ["/x.Y/A", "/x.Y/B", "/made.up/Path"] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let answer: Result<tonic::Response<HealthCheckResponse>, _> = grpc
            .unary(
                tonic::Request::new(HealthCheckRequest {
                    service: String::new(),
                }),
                http::uri::PathAndQuery::from_static(junk),
                ProstCodec::default(),
            )
            .await;
        assert_eq!(answer.unwrap_err().code(), tonic::Code::Unimplemented);
    }
    let text = metrics.render();
    for line in [
        r#"tenantry_grpc_server_requests_total{service="test",method="grpc.health.v1.Health/Check",code="OK"} 1"#,
        r#"tenantry_grpc_server_requests_total{service="test",method="unknown",code="Unimplemented"} 3"#,
        r#"tenantry_grpc_server_duration_seconds_count{service="test",method="grpc.health.v1.Health/Check"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(
        !text.contains("made.up"),
        "a made-up path became a label:\n{text}"
    );
}
