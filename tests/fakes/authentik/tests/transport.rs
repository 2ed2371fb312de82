//! Auth, pagination, injected faults, lifecycle and the binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use authentik_fake::{FakeAuthentik, FakeConfig};
use common::{Api, TOKEN};
use serde_json::{Value, json};

#[tokio::test]
async fn auth_is_403_not_401() {
    let api = Api::start().await;
    let t = Some("/core/groups/");
    let (status, body) = api.raw("GET", t, "/core/groups/", None, None).await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"detail": "Authentication credentials were not provided."})
        )
    );
    let (status, body) = api
        .raw("GET", t, "/core/groups/", None, Some("wrong"))
        .await;
    assert_eq!(
        (status, body),
        (403, json!({"detail": "Token invalid/expired"}))
    );
    let (status, body) = api
        .raw(
            "POST",
            t,
            "/core/groups/",
            Some(json!({"name": "x"})),
            Some(""),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // Another scheme is ignored, so it reads as "not provided".
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v3/core/groups/", api.fake.base_url()))
        .header("authorization", format!("Token {TOKEN}"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["detail"],
        "Authentication credentials were not provided."
    );
    assert!(
        api.fake.snapshot().groups.is_empty(),
        "nothing was created without auth"
    );
}

#[tokio::test]
async fn pagination_forces_clients_to_follow_next() {
    let api = Api::start().await;
    for i in 0..5 {
        api.group(&format!("g{i}"), "t1").await;
    }
    let mut names = Vec::new();
    let mut page = 1;
    loop {
        let (status, body) = api
            .get("/core/groups/", &format!("/core/groups/?page={page}"))
            .await;
        assert_eq!(status, 200);
        let p = &body["pagination"];
        assert_eq!(
            (
                p["count"].as_i64(),
                p["total_pages"].as_i64(),
                p["current"].as_i64()
            ),
            (Some(5), Some(3), Some(page))
        );
        assert_eq!(p["previous"].as_i64(), Some(page - 1));
        names.extend(
            body["results"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g["name"].as_str().map(str::to_owned)),
        );
        match p["next"].as_i64() {
            Some(0) => break,
            Some(n) => page = n,
            None => panic!("next missing: {body}"),
        }
    }
    assert_eq!(
        names,
        ["g0", "g1", "g2", "g3", "g4"],
        "stable creation order"
    );
    let (_, last) = api.get("/core/groups/", "/core/groups/?page=3").await;
    assert_eq!(
        (
            last["pagination"]["start_index"].as_i64(),
            last["pagination"]["end_index"].as_i64()
        ),
        (Some(5), Some(5))
    );

    let (status, body) = api.get("/core/groups/", "/core/groups/?page=4").await;
    assert_eq!((status, body), (404, json!({"detail": "Invalid page."})));
    assert_eq!(
        api.get("/core/groups/", "/core/groups/?page=0").await.0,
        404
    );
    assert_eq!(
        api.get("/core/groups/", "/core/groups/?page=abc").await.0,
        404
    );

    let (_, all) = api.get("/core/groups/", "/core/groups/?page_size=50").await;
    assert_eq!(
        (
            all["results"].as_array().map(Vec::len),
            all["pagination"]["next"].as_i64()
        ),
        (Some(5), Some(0))
    );
    let (_, fallback) = api.get("/core/groups/", "/core/groups/?page_size=0").await;
    assert_eq!(fallback["results"].as_array().map(Vec::len), Some(2));

    for i in 0..100 {
        api.fake.seed_group(&format!("bulk{i}"), json!({}));
    }
    let (_, clamped) = api
        .get("/core/groups/", "/core/groups/?page_size=1000")
        .await;
    assert_eq!(
        clamped["results"].as_array().map(Vec::len),
        Some(100),
        "page_size is clamped, not rejected"
    );
    assert_eq!(
        (
            clamped["pagination"]["total_pages"].as_i64(),
            clamped["pagination"]["next"].as_i64()
        ),
        (Some(2), Some(2))
    );

    let (_, empty) = api.get("/core/users/", "/core/users/").await;
    let p = &empty["pagination"];
    assert_eq!(
        (
            p["count"].as_i64(),
            p["total_pages"].as_i64(),
            p["start_index"].as_i64()
        ),
        (Some(0), Some(1), Some(0))
    );
}

#[tokio::test]
async fn outage_and_fail_next() {
    let api = Api::start().await;
    let v = Some("/admin/version/");
    let before = api.fake.requests();
    api.fake.set_outage(Some(503));
    let (status, body) = api
        .raw("GET", v, "/admin/version/", None, Some(TOKEN))
        .await;
    assert_eq!(
        (status, body),
        (503, json!({"detail": "Service Unavailable"}))
    );
    // The outage wins over auth: the server is down.
    assert_eq!(
        api.raw("GET", v, "/admin/version/", None, None).await.0,
        503
    );
    api.fake.set_outage(None);
    assert_eq!(api.get("/admin/version/", "/admin/version/").await.0, 200);

    api.fake.fail_next(2, 502);
    assert_eq!(
        api.raw(
            "POST",
            Some("/core/groups/"),
            "/core/groups/",
            Some(json!({"name": "g"})),
            Some(TOKEN)
        )
        .await
        .0,
        502
    );
    assert_eq!(api.get("/admin/version/", "/admin/version/").await.0, 502);
    assert_eq!(api.get("/admin/version/", "/admin/version/").await.0, 200);
    assert!(
        api.fake.snapshot().groups.is_empty(),
        "a failed request changes nothing"
    );
    assert_eq!(
        api.fake.requests() - before,
        6,
        "every request is counted, failed or not"
    );
}

#[tokio::test]
async fn start_on_and_stop() {
    let config = FakeConfig {
        token: TOKEN.into(),
        page_size: 7,
        version: "2025.12.1".into(),
        ..FakeConfig::default()
    };
    let fake = FakeAuthentik::start_on("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("start");
    assert_eq!(fake.base_url(), format!("http://{}", fake.addr()));
    let url = format!("{}/api/v3/admin/version/", fake.base_url());
    let client = reqwest::Client::new();
    let v: Value = client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["version_current"], "2025.12.1");
    fake.stop().await;
    let fresh = reqwest::Client::new();
    assert!(
        fresh.get(&url).bearer_auth(TOKEN).send().await.is_err(),
        "stopped"
    );
}

#[test]
fn binary_serves_and_requires_a_token() {
    let bin = env!("CARGO_BIN_EXE_authentik-fake");
    let out = Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("AUTHENTIK_FAKE_TOKEN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));

    let mut child = Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--page-size",
            "3",
            "--public-host",
            "http://id.test",
        ])
        .env("AUTHENTIK_FAKE_TOKEN", "bin-token")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line).expect("read");
    }
    let base = line.trim().strip_prefix("listening on ").map(str::to_owned);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let version = base.as_ref().map(|base| {
        rt.block_on(async {
            let resp = reqwest::Client::new()
                .get(format!("{base}/api/v3/admin/version/"))
                .bearer_auth("bin-token")
                .send()
                .await
                .expect("send");
            resp.status().as_u16()
        })
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(!line.contains("bin-token"), "the token is never printed");
    assert_eq!(version, Some(200), "stdout was {line:?}");
}
