//! End to end, as a front end sees it: every service runs as its own process (see
//! `common`), configured as production is. Signup → WatchSignup to the end → GetTenant shows
//! the tenant Active with its site and plan → the owner logs in to the site over REST.

mod common;

use std::time::Duration;

use proto::v1::{
    GetTenantRequest, OpenSiteRequest, SignupRequest, TenantStatus,
    signup_service_client::SignupServiceClient, tenant_directory_client::TenantDirectoryClient,
};
use secrecy::SecretString;

use common::{Stack, StackOptions};

#[tokio::test]
async fn a_signup_becomes_an_active_tenant_whose_owner_can_log_in() {
    let stack = Stack::start(StackOptions::default()).await;
    let namespace = stack.namespace.clone();
    let logs = stack.logs();
    let bench = &stack.bench;
    let authentik = &stack.authentik;
    let _pool = stack.pool.clone();
    let (signup_port, directory_port) = (stack.signup_port, stack.directory_port);
    let reader_token = stack.reader_token.clone();

    // What a front end does.
    let mut signup = SignupServiceClient::new(stack.connect(signup_port).await);
    // Plaintext is not answered where TLS is configured.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{signup_port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let refused = SignupServiceClient::new(channel)
            .check_subdomain(proto::v1::CheckSubdomainRequest {
                subdomain: "plain".into(),
                organisation: String::new(),
            })
            .await;
        assert!(refused.is_err(), "a plaintext call was answered");
    }
    let directory_channel = stack.connect(directory_port).await;
    let anonymous = TenantDirectoryClient::new(directory_channel.clone())
        .get_tenant(GetTenantRequest {
            tenant_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
            min_sequence: 0,
        })
        .await
        .expect_err("the directory refuses a call without a token");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let mut directory = TenantDirectoryClient::with_interceptor(
        directory_channel,
        testkit::Bearer::new(&reader_token),
    );
    let password = "Tq7#mV2!pLx9@wRz-e2e";
    let mut accepted = None;
    // The gateway answers UNAVAILABLE until the vault is up; a front end retries that.
    for _ in 0..100 {
        let request = SignupRequest {
            email: "grace@example.com".into(),
            password: password.into(),
            full_name: "Grace Hopper".into(),
            organisation: "Cobol Works".into(),
            subdomain: "cobol-works".into(),
            plan: "business".into(),
            region: String::new(),
            idempotency_key: format!("e2e-{namespace}"),
            human_check_token: String::new(),
        };
        match signup.signup(request).await {
            Ok(r) => {
                accepted = Some(r.into_inner());
                break;
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(s) => panic!("signup refused: {s:?}"),
        }
    }
    let accepted = accepted.expect("signup accepted once the stack is up");
    // Nothing is built until the owner confirms the address with the mailed code.
    let accepted = stack
        .verify(&mut signup, &accepted, "grace@example.com")
        .await;
    let tenant_id = accepted.tenant_id.clone();

    let updates = stack.watch_to_end(&mut signup, &tenant_id).await;
    let last = updates.last().expect("at least one progress update");
    assert!(
        last.done && !last.failed,
        "provisioning ended with {last:?}"
    );
    assert_eq!(last.percent, 100);
    assert_eq!(
        last.step, "sso_ready",
        "the signup ends with single sign-on ready"
    );
    assert!(
        updates.iter().any(|u| u.step == "site_ready"),
        "the site being ready is a step before it"
    );
    let percents: Vec<u32> = updates.iter().map(|u| u.percent).collect();
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes backwards: {percents:?}"
    );

    let tenant = directory
        .get_tenant(GetTenantRequest {
            tenant_id: tenant_id.clone(),
            min_sequence: last.sequence,
        })
        .await
        .expect("GetTenant")
        .into_inner();
    assert_eq!(tenant.status, TenantStatus::Active as i32);
    assert_eq!(tenant.plan, "business");
    assert_eq!(tenant.site, "cobol-works.erp.localhost");
    assert_eq!(tenant.bench, "e2e-bench");
    assert_eq!(tenant.owner_email, "grace@example.com");
    assert_eq!(tenant.sso_status, "ready");
    assert_eq!(
        tenant.sso_login_url,
        format!("{}/login", tenant.url.trim_end_matches('/'))
    );
    // The owner signs in through Authentik with the same password.
    assert!(authentik.can_sign_in("tenant-cobol-works", "grace@example.com", password));

    // The OAuth2 client secret and the password are nowhere but where they belong: not in any
    // service's log, and not in any table of the database the services share (the vault holds
    // the secret encrypted).
    let snapshot = authentik.snapshot();
    let secret = snapshot.providers[0]["client_secret"]
        .as_str()
        .expect("client secret")
        .to_owned();
    for entry in std::fs::read_dir(logs).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(
            !text.contains(&secret),
            "{} holds the client secret",
            entry.path().display()
        );
        assert!(
            !text.contains(password),
            "{} holds the password",
            entry.path().display()
        );
    }
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&_pool)
    .await
    .unwrap();
    assert!(
        tables.len() >= 3,
        "the services made their tables: {tables:?}"
    );
    for (schema, table) in &tables {
        let rows: Vec<(String,)> =
            sqlx::query_as(&format!(r#"SELECT t::text FROM "{schema}"."{table}" t"#))
                .fetch_all(&_pool)
                .await
                .unwrap();
        for (row,) in rows {
            assert!(
                !row.contains(&secret),
                "{schema}.{table} holds the client secret"
            );
            assert!(
                !row.contains(password),
                "{schema}.{table} holds the password"
            );
        }
    }

    // The owner logs in to their new site with the password they chose.
    let site = frappe::SiteName::parse(&tenant.site).unwrap();
    let client =
        frappe::FrappeClient::new(&bench.base_url, site, frappe::SiteRouting::Header).unwrap();
    let owner = frappe::UserId::parse("grace@example.com").unwrap();
    client
        .login(&owner, &SecretString::from(password.to_owned()))
        .await
        .expect("owner logs in");
    let wrong = client
        .login(&owner, &SecretString::from("not the password".to_owned()))
        .await;
    assert!(wrong.is_err(), "a wrong password is refused");

    // The page's handoff: the token VerifyEmail answered opens the site logged in, through a
    // link that works once; no other token does.
    assert_eq!(
        accepted.handoff_token.len(),
        43,
        "VerifyEmail answers a handoff token"
    );
    let forged = signup
        .open_site(OpenSiteRequest {
            tenant_id: tenant_id.clone(),
            handoff_token: "A".repeat(43),
        })
        .await
        .expect_err("a forged token opens nothing");
    assert_eq!(forged.code(), tonic::Code::PermissionDenied);
    let opened = signup
        .open_site(OpenSiteRequest {
            tenant_id: tenant_id.clone(),
            handoff_token: accepted.handoff_token.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("OpenSite: {e:?}{}", stack.logs_tail()))
        .into_inner();
    let link_prefix = format!(
        "{}/api/method/frappe.www.login.login_via_key?key=",
        tenant.url
    );
    assert!(opened.url.starts_with(&link_prefix), "{opened:?}");
    let key = opened.url[link_prefix.len()..].to_owned();
    // A browser: *.localhost is loopback to it.
    let browser = |cookies: bool| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(cookies)
            .resolve(
                &tenant.site,
                std::net::SocketAddr::from(([127, 0, 0, 1], bench.port)),
            )
            .build()
            .unwrap()
    };
    let owner_browser = browser(true);
    let landed = owner_browser.get(&opened.url).send().await.unwrap();
    assert_eq!(landed.status(), reqwest::StatusCode::FOUND);
    assert_eq!(landed.headers()["location"], "/app");
    let desk = owner_browser
        .get(format!("{}/app", tenant.url))
        .send()
        .await
        .unwrap();
    assert_eq!(desk.status(), reqwest::StatusCode::OK);
    assert!(
        desk.text().await.unwrap().contains("grace@example.com"),
        "the desk opens as the owner"
    );
    let replayed = browser(false).get(&opened.url).send().await.unwrap();
    assert_eq!(
        replayed.status(),
        reqwest::StatusCode::FORBIDDEN,
        "a login link works once"
    );
    for entry in std::fs::read_dir(logs).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for secret in [&key, &accepted.handoff_token] {
            assert!(
                !text.contains(secret.as_str()),
                "{} holds a handoff secret",
                entry.path().display()
            );
        }
    }

    // The operator suspends from tenantctl and at once thinks better of it: both commands are
    // accepted, and `resume --wait` returns once the tenant has settled Active; the site then
    // answers (a suspension the provisioner had begun is undone moments after the model
    // settles, hence the short wait for the site).
    let tenantctl = |args: &[&str]| {
        let mut argv: Vec<String> = vec![
            "tenantctl".into(),
            "--admin-url".into(),
            format!("https://localhost:{}", stack.operator_port),
            "--directory-url".into(),
            format!("https://localhost:{directory_port}"),
            "--tls-ca".into(),
            stack.ca.ca.display().to_string(),
        ];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let mut cli = <tenantctl::Cli as clap::Parser>::try_parse_from(argv).expect("command line");
        cli.global.admin_token = Some(SecretString::from(stack.admin_token.clone()));
        async move {
            let mut out = Vec::new();
            let result = tenantctl::run(cli, &mut out).await;
            (result, String::from_utf8(out).unwrap_or_default())
        }
    };
    let (suspended, out) = tenantctl(&["suspend", &tenant_id, "--reason", "overdue invoice"]).await;
    assert!(suspended.is_ok(), "suspend: {suspended:?} {out}");
    let (resumed, out) = tenantctl(&[
        "resume",
        &tenant_id,
        "--reason",
        "paid after all",
        "--wait",
        "--wait-timeout",
        "60",
    ])
    .await;
    assert!(
        resumed.is_ok(),
        "resume right after suspend settles Active without an error: {resumed:?} {out}{}",
        stack.logs_tail()
    );
    assert!(out.contains("ACTIVE") || out.contains("Active"), "{out}");
    let mut answers = false;
    for _ in 0..100 {
        answers = client
            .login(&owner, &SecretString::from(password.to_owned()))
            .await
            .is_ok();
        if answers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        answers,
        "the site answers after the resume{}",
        stack.logs_tail()
    );

    // Leave nothing behind in NATS.
    stack.clean_up().await;
}
