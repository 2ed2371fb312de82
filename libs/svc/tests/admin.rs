//! The admin HTTP server as a client (a probe, Prometheus) sees it.

use prometheus_client::metrics::counter::Counter;
use svc::{AdminServer, Metrics, Readiness, Shutdown};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let readiness = Readiness::default();
    let metrics = Metrics::new();
    let signups: Counter = Counter::default();
    metrics.register("signups", "Signups accepted", signups.clone());
    signups.inc_by(3);

    let server = AdminServer::bind("127.0.0.1:0".parse().unwrap(), readiness.clone(), metrics)
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.serve(shutdown.clone()));
    let http = reqwest::Client::new();

    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503,
        "not ready until told"
    );
    readiness.set(true);
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A part (a consumer re-subscribing) that is not ready makes the service not ready, and
    // the answer says which.
    let consumer = readiness.part("consumer provisioner-signup");
    let answer = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(answer.status(), 503);
    assert!(answer.text().await.unwrap().contains("provisioner-signup"));
    consumer.set(true);
    assert!(readiness.is_ready());
    consumer.set(false);
    drop(consumer);
    assert!(readiness.is_ready(), "a dropped part no longer counts");
    let answer = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(
        answer.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "the type of the format sent"
    );
    let body = answer.text().await.unwrap();
    assert!(body.contains("# TYPE tenantry_signups counter"), "{body}");
    assert!(body.contains("tenantry_signups_total 3"), "{body}");
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with EOF: {body}"
    );

    shutdown.trigger();
    task.await.unwrap().unwrap();
    assert!(!readiness.is_ready(), "shutting down means not ready");
}
