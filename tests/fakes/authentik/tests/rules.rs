//! The semantic rules of contract §6: uniqueness (by key), unknown foreign keys, field rules and
//! the binding rules.

mod common;

use common::{Api, keys, only};
use serde_json::json;

#[tokio::test]
async fn uniqueness_is_reported_by_key() {
    let api = Api::start().await;
    api.group("tenant-acme", "t1").await;
    let (status, err) = api
        .post(
            "/core/groups/",
            "/core/groups/",
            json!({"name": "tenant-acme"}),
        )
        .await;
    assert_eq!(
        (status, err),
        (400, json!({"name": ["This field must be unique."]}))
    );

    api.user("owner@acme.example", &[]).await;
    let dup = json!({"username": "owner@acme.example", "name": ""});
    let (status, err) = api.post("/core/users/", "/core/users/", dup).await;
    assert_eq!(
        (status, err),
        (400, json!({"username": ["This field must be unique."]}))
    );
    // Email is not unique.
    let other = json!({"username": "second", "name": "", "email": "owner@acme.example"});
    assert_eq!(api.post("/core/users/", "/core/users/", other).await.0, 201);

    let p = api.provider("prov").await;
    let (status, err) = api
        .post(
            "/providers/oauth2/",
            "/providers/oauth2/",
            api.provider_body("prov").await,
        )
        .await;
    assert_eq!((status, keys(&err)), (400, only("name")));
    let mut body = api.provider_body("prov2").await;
    body["client_id"] = p["client_id"].clone();
    let (status, err) = api
        .post("/providers/oauth2/", "/providers/oauth2/", body)
        .await;
    assert_eq!((status, keys(&err)), (400, only("client_id")));

    api.app("tenant-acme", p["pk"].as_i64()).await;
    let dup = json!({"name": "x", "slug": "tenant-acme"});
    let (status, err) = api
        .post("/core/applications/", "/core/applications/", dup)
        .await;
    assert_eq!((status, keys(&err)), (400, only("slug")));
    let steal = json!({"name": "x", "slug": "other", "provider": p["pk"]});
    let (status, err) = api
        .post("/core/applications/", "/core/applications/", steal)
        .await;
    assert_eq!((status, keys(&err)), (400, only("provider")));
    // Updating the owning app with its own provider and slug is fine.
    let own = json!({"name": "x", "slug": "tenant-acme", "provider": p["pk"]});
    assert_eq!(
        api.send(
            "PUT",
            "/core/applications/{slug}/",
            "/core/applications/tenant-acme/",
            Some(own)
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn unknown_references_and_field_rules() {
    let api = Api::start().await;
    let ghost = uuid::Uuid::new_v4().to_string();
    let body = json!({"username": "u", "name": "", "groups": [ghost]});
    let (status, err) = api.post("/core/users/", "/core/users/", body).await;
    assert_eq!(
        (status, err),
        (
            400,
            json!({"groups": [format!("Invalid pk \"{ghost}\" - object does not exist.")]})
        )
    );
    for path in ["/tenants", "tenants/", "a//b"] {
        let (status, err) = api
            .post(
                "/core/users/",
                "/core/users/",
                json!({"username": "u", "name": "", "path": path}),
            )
            .await;
        assert_eq!((status, keys(&err)), (400, only("path")), "{path}");
    }
    let (status, err) = api
        .post(
            "/core/users/",
            "/core/users/",
            json!({"username": "u", "name": "", "type": "internal_service_account"}),
        )
        .await;
    assert_eq!((status, keys(&err)), (400, only("type")));
    let (status, err) = api
        .send_invalid(
            "POST",
            "/core/users/",
            "/core/users/",
            json!({"username": "u"}),
        )
        .await;
    assert_eq!(
        (status, err),
        (400, json!({"name": ["This field is required."]}))
    );
    let (status, err) = api
        .send_invalid(
            "POST",
            "/core/users/",
            "/core/users/",
            json!({"username": "u", "name": "", "type": "robot"}),
        )
        .await;
    assert_eq!(
        (status, err),
        (400, json!({"type": ["\"robot\" is not a valid choice."]}))
    );

    let mut body = api.provider_body("p").await;
    body["authorization_flow"] = json!(ghost);
    let (status, err) = api
        .post("/providers/oauth2/", "/providers/oauth2/", body)
        .await;
    assert_eq!(
        (status, err),
        (
            400,
            json!({"authorization_flow": [format!("Invalid pk \"{ghost}\" - object does not exist.")]})
        )
    );
    let mut body = api.provider_body("p").await;
    body["property_mappings"] = json!([ghost]);
    let (status, err) = api
        .post("/providers/oauth2/", "/providers/oauth2/", body)
        .await;
    assert_eq!((status, keys(&err)), (400, only("property_mappings")));

    let (status, err) = api
        .post(
            "/core/applications/",
            "/core/applications/",
            json!({"name": "x", "slug": "x", "provider": 999}),
        )
        .await;
    assert_eq!((status, keys(&err)), (400, only("provider")));
    for slug in [
        "authorize",
        "token",
        "device",
        "userinfo",
        "introspect",
        "revoke",
    ] {
        let (status, err) = api
            .post(
                "/core/applications/",
                "/core/applications/",
                json!({"name": "x", "slug": slug}),
            )
            .await;
        assert_eq!((status, keys(&err)), (400, only("slug")), "{slug}");
    }
    let (status, err) = api
        .send_invalid(
            "POST",
            "/core/applications/",
            "/core/applications/",
            json!({"name": "x", "slug": "a b"}),
        )
        .await;
    assert_eq!((status, keys(&err)), (400, only("slug")));
    assert_eq!(api.fake.snapshot().applications.len(), 0);
}

#[tokio::test]
async fn bindings_allow_duplicates_and_need_exactly_one_subject() {
    let api = Api::start().await;
    let app = api.app("tenant-acme", None).await;
    let target = app["pbm_uuid"].as_str().unwrap_or_default().to_owned();
    let group = api.group("tenant-acme", "t1").await;
    let first = api.bind(&target, &group).await;
    let second = api.bind(&target, &group).await;
    assert_ne!(first, second);
    let (_, list) = api
        .get(
            "/policies/bindings/",
            &format!("/policies/bindings/?target={target}&group={group}"),
        )
        .await;
    assert_eq!(list["pagination"]["count"], 2);

    let (status, err) = api
        .post(
            "/policies/bindings/",
            "/policies/bindings/",
            json!({"target": target, "order": 0}),
        )
        .await;
    assert_eq!(
        (status, err),
        (
            400,
            json!({"non_field_errors": ["One of 'policy', 'group' or 'user' must be set."]})
        )
    );
    let user = api.user("u", &[]).await;
    let both = json!({"target": target, "order": 0, "group": group, "user": user});
    let (status, err) = api
        .post("/policies/bindings/", "/policies/bindings/", both)
        .await;
    assert_eq!(
        (status, err),
        (
            400,
            json!({"non_field_errors": ["Only one of 'policy', 'group' or 'user' can be set."]})
        )
    );
    // PATCH is checked on the merged result.
    let bpath = format!("/policies/bindings/{first}/");
    let (status, err) = api
        .send(
            "PATCH",
            "/policies/bindings/{policy_binding_uuid}/",
            &bpath,
            Some(json!({"user": user})),
        )
        .await;
    assert_eq!((status, keys(&err)), (400, only("non_field_errors")));

    // The application's pk is not a binding target: only pbm_uuid is.
    let wrong = json!({"target": app["pk"], "order": 0, "group": group});
    let (status, err) = api
        .post("/policies/bindings/", "/policies/bindings/", wrong)
        .await;
    assert_eq!((status, keys(&err)), (400, only("target")));
    let ghost = uuid::Uuid::new_v4().to_string();
    let (status, err) = api
        .post(
            "/policies/bindings/",
            "/policies/bindings/",
            json!({"target": target, "order": 0, "group": ghost}),
        )
        .await;
    assert_eq!((status, keys(&err)), (400, only("group")));
    let (status, err) = api
        .send_invalid(
            "POST",
            "/policies/bindings/",
            "/policies/bindings/",
            json!({"group": group}),
        )
        .await;
    assert_eq!(
        (status, keys(&err)),
        (400, vec!["order".to_owned(), "target".to_owned()])
    );
}
