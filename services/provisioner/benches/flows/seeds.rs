//! The hand-rolled flow Tenantry is compared with, replayed step for step on the same bench:
//! `new-site`, the keys by three `bench execute` calls (generate_keys, then the key and the
//! user read back), a warm-up `execute`, polling until the key answers, then the owner over
//! REST and the owner's first login. Same library calls as Tenantry's, so only the flow differs.

use std::time::{Duration, Instant};

use frappe::{
    Bench, DbRoot, FrappeClient, MethodPath, NewSite, SiteName, SiteRouting, UserEmail, UserId,
};
use secrecy::SecretString;
use serde_json::json;

/// One run: (total, the `new-site` part).
pub struct SeedsRun {
    /// Start of `new-site` to the owner's successful login.
    pub total: Duration,
    /// `new-site` alone.
    pub new_site: Duration,
}

/// Runs the flow for `site` on `bench`, served at `base_url`.
pub async fn run(bench: &Bench, base_url: &str, site: &SiteName, root: &DbRoot) -> SeedsRun {
    let admin_password: SecretString = "Seeds-Admin-Password-1".to_owned().into();
    let started = Instant::now();
    bench
        .new_site(&NewSite {
            site: site.clone(),
            admin_password,
            db_root: root.clone(),
            db_name: None,
            install_apps: vec![],
            no_mariadb_socket: false,
            force: false,
        })
        .await
        .expect("seeds' flow: new-site");
    let new_site = started.elapsed();
    // Keys: generate_keys and the key read back (two executes), then the user checked (third).
    let creds = bench
        .generate_api_keys(site, &UserId::Administrator)
        .await
        .expect("seeds' flow: generate_keys");
    let get_value = MethodPath::parse("frappe.db.get_value").expect("method");
    bench
        .execute(
            site,
            &get_value,
            &[json!("User"), json!("Administrator"), json!("enabled")],
        )
        .await
        .expect("seeds' flow: third execute");
    // The warm-up the scripts run before trusting the key.
    bench.list_apps(site).await.expect("seeds' flow: warm-up");
    let client = FrappeClient::new(base_url, site.clone(), SiteRouting::Header).expect("client");
    let api = client.with_token(&creds);
    api.wait_until_api_key_active(
        &creds,
        tokio::time::Instant::now() + Duration::from_secs(30),
    )
    .await
    .expect("seeds' flow: poll");
    let owner = UserEmail::parse(&format!("owner@{}", site.as_str())).expect("owner email");
    let password = "Seeds-Owner-Password-1";
    api.insert_doc(
        "User",
        &json!({
            "email": owner.as_str(),
            "first_name": "Seed",
            "send_welcome_email": 0,
            "user_type": "System User",
            "roles": [{"role": "System Manager"}],
            "new_password": password,
        }),
    )
    .await
    .expect("seeds' flow: owner");
    client
        .login(
            &UserId::Email(owner),
            &SecretString::from(password.to_owned()),
        )
        .await
        .expect("seeds' flow: owner login");
    SeedsRun {
        total: started.elapsed(),
        new_site,
    }
}
