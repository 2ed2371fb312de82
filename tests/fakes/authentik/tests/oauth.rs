//! OAuth2 providers, applications and bindings: CRUD, generated credentials, setup URLs and the
//! pre-2024.12 request shapes. All bodies are schema-checked by `Api`.

mod common;

use common::{Api, keys};
use serde_json::{Value, json};

#[tokio::test]
async fn provider_crud_credentials_and_setup_urls() {
    let api = Api::start().await;
    let p = api.provider("tenant-acme-frappe").await;
    let pk = p["pk"].as_i64().expect("pk");
    assert_eq!(p["client_id"].as_str().map(str::len), Some(40));
    assert_eq!(p["client_secret"].as_str().map(str::len), Some(128));
    assert_eq!(p["redirect_uris"][0]["redirect_uri_type"], "authorization");
    assert!(p["assigned_application_slug"].is_null());

    let one = "/providers/oauth2/{id}/";
    let path = format!("/providers/oauth2/{pk}/");
    let (_, again) = api.get(one, &path).await;
    assert_eq!(
        again["client_secret"], p["client_secret"],
        "the secret is re-readable"
    );
    let (_, by_id) = api
        .get(
            "/providers/oauth2/",
            &format!(
                "/providers/oauth2/?client_id={}",
                p["client_id"].as_str().unwrap_or("")
            ),
        )
        .await;
    assert_eq!(by_id["results"][0]["pk"], pk);

    let su = "/providers/oauth2/{id}/setup_urls/";
    let su_path = format!("/providers/oauth2/{pk}/setup_urls/");
    assert_eq!(
        api.get(su, &su_path).await.0,
        404,
        "no application bound yet"
    );
    api.app("tenant-acme", Some(pk)).await;
    let (status, urls) = api.get(su, &su_path).await;
    assert_eq!(status, 200);
    assert_eq!(
        urls["issuer"],
        "http://auth.localhost/application/o/tenant-acme/"
    );
    assert_eq!(
        urls["authorize"],
        "http://auth.localhost/application/o/authorize/"
    );
    assert_eq!(
        urls["jwks"],
        "http://auth.localhost/application/o/tenant-acme/jwks/"
    );
    let (_, p) = api.get(one, &path).await;
    assert_eq!(
        (
            p["assigned_application_slug"].as_str(),
            p["assigned_application_name"].as_str()
        ),
        (Some("tenant-acme"), Some("tenant-acme ERP"))
    );

    let mut put = api.provider_body("tenant-acme-frappe").await;
    put["client_id"] = json!("tenant-acme");
    put["client_secret"] = json!("x".repeat(64));
    let (status, p) = api.send("PUT", one, &path, Some(put)).await;
    assert_eq!(
        (status, p["client_id"].as_str()),
        (200, Some("tenant-acme"))
    );
    let (status, p) = api
        .send(
            "PATCH",
            one,
            &path,
            Some(json!({"access_token_validity": "minutes=5"})),
        )
        .await;
    assert_eq!(
        (
            status,
            p["access_token_validity"].as_str(),
            p["client_id"].as_str()
        ),
        (200, Some("minutes=5"), Some("tenant-acme"))
    );
    let (status, err) = api
        .send(
            "PATCH",
            one,
            &path,
            Some(json!({"access_token_validity": "soon"})),
        )
        .await;
    assert_eq!(
        (status, keys(&err)),
        (400, vec!["access_token_validity".to_owned()])
    );

    assert_eq!(api.delete(one, &path).await.0, 204);
    assert_eq!(api.delete(one, &path).await.0, 404);
    assert_eq!(api.get(su, &su_path).await.0, 404);
}

#[tokio::test]
async fn provider_rejects_pre_2024_12_shapes() {
    let api = Api::start().await;
    let mut body = api.provider_body("p1").await;
    body["redirect_uris"] = json!(
        "https://acme.erp.example/api/method/frappe.integrations.oauth2_logins.custom/authentik"
    );
    let (status, err) = api
        .send_invalid("POST", "/providers/oauth2/", "/providers/oauth2/", body)
        .await;
    assert_eq!(
        (status, keys(&err)),
        (400, vec!["redirect_uris".to_owned()])
    );
    assert_eq!(
        err["redirect_uris"],
        json!(["Expected a list of items but got type \"str\"."])
    );

    let mut body = api.provider_body("p1").await;
    body.as_object_mut().map(|m| m.remove("invalidation_flow"));
    let (status, err) = api
        .send_invalid("POST", "/providers/oauth2/", "/providers/oauth2/", body)
        .await;
    assert_eq!(
        (status, keys(&err)),
        (400, vec!["invalidation_flow".to_owned()])
    );
    assert_eq!(err["invalidation_flow"], json!(["This field is required."]));

    let mut body = api.provider_body("p1").await;
    body["redirect_uris"] = json!([{"matching_mode": "fuzzy", "url": "https://x.example/"}]);
    let (status, err) = api
        .send_invalid("POST", "/providers/oauth2/", "/providers/oauth2/", body)
        .await;
    assert_eq!(
        (status, keys(&err)),
        (400, vec!["redirect_uris".to_owned()])
    );

    let mut body = api.provider_body("p1").await;
    body["redirect_uris"] = json!([{"matching_mode": "regex", "url": "https://(unclosed"}]);
    let (status, err) = api
        .post("/providers/oauth2/", "/providers/oauth2/", body)
        .await;
    assert_eq!(
        (status, keys(&err)),
        (400, vec!["redirect_uris".to_owned()])
    );
    assert_eq!(api.fake.snapshot().providers.len(), 0);
}

#[tokio::test]
async fn application_and_binding_crud() {
    let api = Api::start().await;
    let p = api.provider("prov").await;
    let a = api.app("tenant-acme", p["pk"].as_i64()).await;
    assert_ne!(a["pk"], a["pbm_uuid"]);
    assert_eq!(a["provider_obj"]["name"], "prov");
    assert_eq!(a["launch_url"], "https://tenant-acme.erp.example/");

    let one = "/core/applications/{slug}/";
    let (status, got) = api.get(one, "/core/applications/tenant-acme/").await;
    assert_eq!(
        (status, got["pbm_uuid"].clone()),
        (200, a["pbm_uuid"].clone())
    );
    let (status, got) = api
        .send(
            "PATCH",
            one,
            "/core/applications/tenant-acme/",
            Some(json!({"provider": null})),
        )
        .await;
    assert_eq!(
        (status, got["provider"].clone(), got["provider_obj"].clone()),
        (200, Value::Null, Value::Null)
    );
    let put = json!({"name": "Acme", "slug": "tenant-acme2", "provider": p["pk"]});
    let (status, got) = api
        .send("PUT", one, "/core/applications/tenant-acme/", Some(put))
        .await;
    assert_eq!((status, got["slug"].as_str()), (200, Some("tenant-acme2")));
    assert_eq!(api.get(one, "/core/applications/tenant-acme/").await.0, 404);
    let (_, list) = api
        .get(
            "/core/applications/",
            "/core/applications/?slug=tenant-acme2",
        )
        .await;
    assert_eq!(list["pagination"]["count"], 1);

    let target = a["pbm_uuid"].as_str().unwrap_or_default();
    let group = api.group("tenant-acme", "t1").await;
    let b = api.bind(target, &group).await;
    let bone = "/policies/bindings/{policy_binding_uuid}/";
    let bpath = format!("/policies/bindings/{b}/");
    let (status, got) = api.get(bone, &bpath).await;
    assert_eq!(
        (
            status,
            got["group_obj"]["name"].as_str(),
            got["target"].as_str()
        ),
        (200, Some("tenant-acme"), Some(target))
    );
    let (_, list) = api
        .get(
            "/policies/bindings/",
            &format!("/policies/bindings/?target={target}"),
        )
        .await;
    assert_eq!(list["results"][0]["pk"], b.as_str());
    let (status, got) = api
        .send("PATCH", bone, &bpath, Some(json!({"enabled": false})))
        .await;
    assert_eq!((status, got["enabled"].as_bool()), (200, Some(false)));
    let put = json!({"target": target, "group": group, "order": 5});
    let (status, got) = api.send("PUT", bone, &bpath, Some(put)).await;
    assert_eq!((status, got["order"].as_i64()), (200, Some(5)));
    assert_eq!(api.delete(bone, &bpath).await.0, 204);
    assert_eq!(api.delete(bone, &bpath).await.0, 404);

    assert_eq!(
        api.delete(one, "/core/applications/tenant-acme2/").await.0,
        204
    );
    assert_eq!(
        api.delete(one, "/core/applications/tenant-acme2/").await.0,
        404
    );
}
