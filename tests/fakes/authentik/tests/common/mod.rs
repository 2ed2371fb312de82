//! Shared test client: every request body sent is checked against the schema's request body
//! (unless a test sends a bad one on purpose) and every response against the schema's response.

#![allow(dead_code)]

use authentik_fake::{FakeAuthentik, FakeConfig, validate_request, validate_response};
use serde_json::{Value, json};

pub const TOKEN: &str = "test-token";

/// A started fake plus an HTTP client that speaks to it.
pub struct Api {
    pub fake: FakeAuthentik,
    http: reqwest::Client,
}

/// A response: status and JSON body (`Value::Null` when empty).
pub type Reply = (u16, Value);

impl Api {
    pub async fn start() -> Self {
        Self::start_with(FakeConfig {
            token: TOKEN.into(),
            ..FakeConfig::default()
        })
        .await
    }

    pub async fn start_with(config: FakeConfig) -> Self {
        let fake = FakeAuthentik::start(config).await.expect("fake starts");
        Api {
            fake,
            http: reqwest::Client::new(),
        }
    }

    /// Sends a schema-valid request (asserted) and checks the response against the schema.
    pub async fn send(
        &self,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        if let Some(b) = &body
            && let Err(e) = validate_request(method, template, b)
        {
            panic!("test sends a body the schema rejects: {method} {template} {b}: {e:?}");
        }
        self.raw(method, Some(template), path, body, Some(TOKEN))
            .await
    }

    /// Sends a body the schema itself rejects (asserted), e.g. the pre-2024.12 shapes.
    pub async fn send_invalid(
        &self,
        method: &str,
        template: &str,
        path: &str,
        body: Value,
    ) -> Reply {
        assert!(
            validate_request(method, template, &body).is_err(),
            "expected the schema to reject {body}"
        );
        self.raw(method, Some(template), path, Some(body), Some(TOKEN))
            .await
    }

    /// The underlying call. `template` = None skips response validation (unknown routes).
    pub async fn raw(
        &self,
        method: &str,
        template: Option<&str>,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Reply {
        let url = format!("{}/api/v3{path}", self.fake.base_url());
        let method_ = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method_, &url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the fake");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("non-JSON body {bytes:?}: {e}"))
        };
        if let Some(t) = template
            && let Err(e) = validate_response(method, t, status, &value)
        {
            panic!("response does not fit the schema: {method} {path} → {status} {value}: {e:?}");
        }
        (status, value)
    }

    pub async fn get(&self, template: &str, path: &str) -> Reply {
        self.send("GET", template, path, None).await
    }

    pub async fn post(&self, template: &str, path: &str, body: Value) -> Reply {
        self.send("POST", template, path, Some(body)).await
    }

    pub async fn delete(&self, template: &str, path: &str) -> Reply {
        self.send("DELETE", template, path, None).await
    }

    /// `pk` of the only result of a filtered list.
    pub async fn only_pk(&self, template: &str, path: &str) -> Value {
        let (status, body) = self.get(template, path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["pagination"]["count"], 1, "{body}");
        body["results"][0]["pk"].clone()
    }

    pub async fn flow(&self, slug: &str) -> String {
        let pk = self
            .only_pk(
                "/flows/instances/",
                &format!("/flows/instances/?slug={slug}"),
            )
            .await;
        pk.as_str().expect("flow pk").to_owned()
    }

    pub async fn group(&self, name: &str, tenant: &str) -> String {
        let body =
            json!({"name": name, "is_superuser": false, "attributes": {"tenant_id": tenant}});
        let (status, g) = self.post("/core/groups/", "/core/groups/", body).await;
        assert_eq!(status, 201, "{g}");
        g["pk"].as_str().expect("group pk").to_owned()
    }

    pub async fn user(&self, username: &str, groups: &[&str]) -> i64 {
        let email = if username.contains('@') {
            username.to_owned()
        } else {
            format!("{username}@example.test")
        };
        let body = json!({"username": username, "name": "Jane Doe", "email": email, "is_active": true,
            "groups": groups, "path": "tenants/acme", "type": "internal", "attributes": {"tenant_id": "t1"}});
        let (status, u) = self.post("/core/users/", "/core/users/", body).await;
        assert_eq!(status, 201, "{u}");
        u["pk"].as_i64().expect("user pk")
    }

    /// The ≥2024.12 provider body.
    pub async fn provider_body(&self, name: &str) -> Value {
        json!({"name": name,
            "authorization_flow": self.flow("default-provider-authorization-implicit-consent").await,
            "invalidation_flow": self.flow("default-provider-invalidation-flow").await,
            "client_type": "confidential",
            "redirect_uris": [{"matching_mode": "strict", "url": format!("https://{name}.erp.example/api/method/frappe.integrations.oauth2_logins.custom/authentik")}],
            "sub_mode": "hashed_user_id", "issuer_mode": "per_provider", "include_claims_in_id_token": true,
            "access_token_validity": "hours=1", "grant_types": ["authorization_code", "refresh_token"]})
    }

    pub async fn provider(&self, name: &str) -> Value {
        let body = self.provider_body(name).await;
        let (status, p) = self
            .post("/providers/oauth2/", "/providers/oauth2/", body)
            .await;
        assert_eq!(status, 201, "{p}");
        p
    }

    /// Creates an application; returns its body (with `pbm_uuid`).
    pub async fn app(&self, slug: &str, provider: Option<i64>) -> Value {
        let body = json!({"name": format!("{slug} ERP"), "slug": slug, "provider": provider,
            "meta_launch_url": format!("https://{slug}.erp.example/"), "policy_engine_mode": "any",
            "open_in_new_tab": false});
        let (status, a) = self
            .post("/core/applications/", "/core/applications/", body)
            .await;
        assert_eq!(status, 201, "{a}");
        a
    }

    /// Binds `group` to the application with `target` (its pbm_uuid); returns the binding pk.
    pub async fn bind(&self, target: &str, group: &str) -> String {
        let body = json!({"target": target, "group": group, "order": 0, "enabled": true,
            "negate": false, "timeout": 30, "failure_result": false});
        let (status, b) = self
            .post("/policies/bindings/", "/policies/bindings/", body)
            .await;
        assert_eq!(status, 201, "{b}");
        b["pk"].as_str().expect("binding pk").to_owned()
    }
}

/// The sorted keys of a 400 body, which is what clients must branch on.
pub fn keys(body: &Value) -> Vec<String> {
    body.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The key list of a 400 that carries exactly `key`.
pub fn only(key: &str) -> Vec<String> {
    vec![key.to_owned()]
}
