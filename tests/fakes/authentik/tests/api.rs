//! Startup lookups, groups, users and routing: happy paths and their 400/404 answers. All bodies
//! are schema-checked by `Api`.

mod common;

use common::{Api, keys};
use serde_json::{Value, json};

#[tokio::test]
async fn startup_lookups_match_the_contract() {
    let api = Api::start().await;
    let (status, v) = api.get("/admin/version/", "/admin/version/").await;
    assert_eq!(
        (status, v["version_current"].as_str()),
        (200, Some("2026.8.5"))
    );

    let (_, flows) = api
        .get(
            "/flows/instances/",
            "/flows/instances/?designation=authorization",
        )
        .await;
    assert_eq!(flows["pagination"]["count"], 2);
    let (_, flows) = api
        .get(
            "/flows/instances/",
            "/flows/instances/?slug=default-provider-invalidation-flow",
        )
        .await;
    assert_eq!(flows["results"][0]["designation"], "invalidation");
    let (status, _) = api
        .get("/flows/instances/", "/flows/instances/?designation=nope")
        .await;
    assert_eq!(status, 400);

    let path = "/propertymappings/provider/scope/?managed=goauthentik.io/providers/oauth2/scope-openid\
                &managed=goauthentik.io%2Fproviders%2Foauth2%2Fscope-email&managed=goauthentik.io/providers/oauth2/scope-profile&page_size=10";
    let (_, maps) = api.get("/propertymappings/provider/scope/", path).await;
    let names: Vec<&str> = maps["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "authentik default OAuth Mapping: OpenID 'openid'",
            "authentik default OAuth Mapping: OpenID 'email'",
            "authentik default OAuth Mapping: OpenID 'profile'"
        ]
    );
    assert_eq!(maps["results"][1]["scope_name"], "email");

    let cert = api
        .only_pk(
            "/crypto/certificatekeypairs/",
            "/crypto/certificatekeypairs/?name=authentik%20Self-signed%20Certificate&has_key=true",
        )
        .await;
    assert!(cert.is_string());
    let (_, none) = api
        .get(
            "/crypto/certificatekeypairs/",
            "/crypto/certificatekeypairs/?has_key=false",
        )
        .await;
    assert_eq!(none["pagination"]["count"], 0);
}

#[tokio::test]
async fn group_crud() {
    let api = Api::start().await;
    let pk = api.group("tenant-acme", "t1").await;
    let one = "/core/groups/{group_uuid}/";
    let path = format!("/core/groups/{pk}/");
    let (status, g) = api.get(one, &path).await;
    assert_eq!(
        (
            status,
            g["name"].as_str(),
            g["attributes"]["tenant_id"].as_str()
        ),
        (200, Some("tenant-acme"), Some("t1"))
    );
    assert!(g["num_pk"].is_i64());

    let (status, g) = api
        .send(
            "PUT",
            one,
            &path,
            Some(json!({"name": "tenant-acme2", "attributes": {"tenant_id": "t1"}})),
        )
        .await;
    assert_eq!((status, g["name"].as_str()), (200, Some("tenant-acme2")));
    let (status, g) = api
        .send(
            "PATCH",
            one,
            &path,
            Some(json!({"is_superuser": false, "attributes": {"tenant_id": "t1", "x": 1}})),
        )
        .await;
    assert_eq!(
        (status, g["name"].as_str(), g["attributes"]["x"].as_i64()),
        (200, Some("tenant-acme2"), Some(1))
    );

    let (status, list) = api
        .get(
            "/core/groups/",
            "/core/groups/?name=tenant-acme2&include_users=false",
        )
        .await;
    assert_eq!(
        (status, list["pagination"]["count"].as_i64()),
        (200, Some(1))
    );
    assert!(list["results"][0]["users_obj"].is_null());

    // PUT needs the required fields; PATCH does not.
    let (status, err) = api
        .send_invalid("PUT", one, &path, json!({"is_superuser": false}))
        .await;
    assert_eq!((status, keys(&err)), (400, vec!["name".to_owned()]));

    assert_eq!(api.delete(one, &path).await, (204, Value::Null));
    let (status, err) = api.delete(one, &path).await;
    assert_eq!(
        (status, err["detail"].as_str()),
        (404, Some("No Group matches the given query."))
    );
    assert_eq!(api.get(one, &path).await.0, 404);
    assert_eq!(api.get(one, "/core/groups/not-a-uuid/").await.0, 404);
}

#[tokio::test]
async fn user_crud_membership_and_password() {
    let api = Api::start().await;
    let group = api.group("tenant-acme", "t1").await;
    let pk = api.user("owner@acme.example", &[&group]).await;
    let one = "/core/users/{id}/";
    let path = format!("/core/users/{pk}/");
    let (status, u) = api.get(one, &path).await;
    assert_eq!(status, 200);
    assert_eq!(u["groups"], json!([group]));
    assert_eq!(
        (
            u["path"].as_str(),
            u["type"].as_str(),
            u["is_active"].as_bool()
        ),
        (Some("tenants/acme"), Some("internal"), Some(true))
    );
    assert!(u["last_login"].is_null() && u["uuid"].is_string() && u["uid"].is_string());

    let (status, u) = api
        .send("PATCH", one, &path, Some(json!({"is_active": false})))
        .await;
    assert_eq!((status, u["is_active"].as_bool()), (200, Some(false)));
    let put = json!({"username": "owner@acme.example", "name": "Jane Q. Doe", "is_active": true});
    let (status, u) = api.send("PUT", one, &path, Some(put)).await;
    assert_eq!(
        (status, u["name"].as_str(), u["groups"].clone()),
        (200, Some("Jane Q. Doe"), json!([group]))
    );

    let (_, found) = api
        .get(
            "/core/users/",
            &format!(
                "/core/users/?groups_by_pk={group}&attributes=%7B%22tenant_id%22%3A%22t1%22%7D"
            ),
        )
        .await;
    assert_eq!(found["pagination"]["count"], 1);
    let (_, found) = api
        .get(
            "/core/users/",
            "/core/users/?email=owner@acme.example&is_active=true",
        )
        .await;
    assert_eq!(found["pagination"]["count"], 1);

    // Membership actions: 204, idempotent, 404 for unknown user or group.
    let remove = "/core/groups/{group_uuid}/remove_user/";
    let add = "/core/groups/{group_uuid}/add_user/";
    for _ in 0..2 {
        assert_eq!(
            api.post(
                remove,
                &format!("/core/groups/{group}/remove_user/"),
                json!({"pk": pk})
            )
            .await,
            (204, Value::Null)
        );
    }
    assert_eq!(api.get(one, &path).await.1["groups"], json!([]));
    for _ in 0..2 {
        assert_eq!(
            api.post(
                add,
                &format!("/core/groups/{group}/add_user/"),
                json!({"pk": pk})
            )
            .await
            .0,
            204
        );
    }
    let (_, g) = api
        .get(
            "/core/groups/{group_uuid}/",
            &format!("/core/groups/{group}/"),
        )
        .await;
    assert_eq!(g["users"], json!([pk]));
    assert_eq!(g["users_obj"][0]["username"], "owner@acme.example");
    assert_eq!(
        api.post(
            add,
            &format!("/core/groups/{group}/add_user/"),
            json!({"pk": 9999})
        )
        .await
        .0,
        404
    );
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(
        api.post(
            add,
            &format!("/core/groups/{unknown}/add_user/"),
            json!({"pk": pk})
        )
        .await
        .0,
        404
    );

    let sp = "/core/users/{id}/set_password/";
    assert_eq!(
        api.post(
            sp,
            &format!("/core/users/{pk}/set_password/"),
            json!({"password": "s3cret-pw"})
        )
        .await,
        (204, Value::Null)
    );
    assert_eq!(
        api.post(
            sp,
            "/core/users/9999/set_password/",
            json!({"password": "x"})
        )
        .await
        .0,
        404
    );

    assert_eq!(api.delete(one, &path).await.0, 204);
    assert_eq!(api.delete(one, &path).await.0, 404);
    let (_, g) = api
        .get(
            "/core/groups/{group_uuid}/",
            &format!("/core/groups/{group}/"),
        )
        .await;
    assert_eq!(g["users"], json!([]));
}

#[tokio::test]
async fn unknown_routes_methods_and_bodies() {
    let api = Api::start().await;
    let (status, body) = api
        .raw("GET", None, "/core/nothing/", None, Some(common::TOKEN))
        .await;
    assert_eq!((status, body), (404, json!({"detail": "Not found."})));
    let (status, body) = api
        .raw("GET", None, "/core/groups", None, Some(common::TOKEN))
        .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (404, Some("Not found.")),
        "paths end with /"
    );
    let (status, _) = api
        .raw("DELETE", None, "/core/groups/", None, Some(common::TOKEN))
        .await;
    assert_eq!(status, 405);

    let url = format!("{}/api/v3/core/groups/", api.fake.base_url());
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(common::TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("JSON parse error"))
    );

    let (status, err) = api
        .send_invalid("POST", "/core/groups/", "/core/groups/", json!(["x"]))
        .await;
    assert_eq!(
        (status, keys(&err)),
        (400, vec!["non_field_errors".to_owned()])
    );
}
