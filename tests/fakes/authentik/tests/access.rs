//! Cascades, check_access (the policy engine), set_password, sign-in and foreign objects.

mod common;

use common::{Api, keys, only};
use serde_json::{Value, json};

#[tokio::test]
async fn deletes_cascade_like_authentik() {
    let api = Api::start().await;
    let p = api.provider("prov").await;
    let app = api.app("tenant-acme", p["pk"].as_i64()).await;
    let target = app["pbm_uuid"].as_str().unwrap_or_default().to_owned();
    let group = api.group("tenant-acme", "t1").await;
    let user = api.user("owner", &[&group]).await;
    api.bind(&target, &group).await;

    // Group delete: bindings and memberships go, the user stays.
    assert_eq!(
        api.delete(
            "/core/groups/{group_uuid}/",
            &format!("/core/groups/{group}/")
        )
        .await
        .0,
        204
    );
    let snap = api.fake.snapshot();
    assert!(snap.bindings.is_empty());
    assert_eq!(snap.users.len(), 1);
    assert_eq!(snap.users[0]["groups"], json!([]));
    assert_eq!(snap.users[0]["pk"], user);

    // App delete: its bindings go.
    let group = api.group("tenant-acme", "t1").await;
    api.bind(&target, &group).await;
    assert_eq!(
        api.delete(
            "/core/applications/{slug}/",
            "/core/applications/tenant-acme/"
        )
        .await
        .0,
        204
    );
    assert!(api.fake.snapshot().bindings.is_empty());

    // Provider delete: the application stays with provider = null.
    let app = api.app("tenant-acme", p["pk"].as_i64()).await;
    let pid = p["pk"].as_i64().unwrap_or_default();
    assert_eq!(
        api.delete(
            "/providers/oauth2/{id}/",
            &format!("/providers/oauth2/{pid}/")
        )
        .await
        .0,
        204
    );
    let (status, a) = api
        .get(
            "/core/applications/{slug}/",
            "/core/applications/tenant-acme/",
        )
        .await;
    assert_eq!(
        (status, a["provider"].clone(), a["pk"].clone()),
        (200, Value::Null, app["pk"].clone())
    );
}

#[tokio::test]
async fn check_access_follows_the_policy_engine() {
    let api = Api::start().await;
    let app = api.app("tenant-acme", None).await;
    let target = app["pbm_uuid"].as_str().unwrap_or_default().to_owned();
    let group = api.group("tenant-acme", "t1").await;
    let member = api.user("member", &[&group]).await;
    let stranger = api.user("stranger", &[]).await;
    let ca = "/core/applications/{slug}/check_access/";
    let client = &api;
    let check = move |user: i64| async move {
        let (status, r) = client
            .get(
                ca,
                &format!("/core/applications/tenant-acme/check_access/?for_user={user}"),
            )
            .await;
        assert_eq!(status, 200, "{r}");
        r["passing"].as_bool()
    };
    // DANGER (real authentik behaviour): no binding means EVERY user gets in.
    assert_eq!(check(stranger).await, Some(true));

    let binding = api.bind(&target, &group).await;
    assert_eq!(check(member).await, Some(true));
    assert_eq!(check(stranger).await, Some(false));

    // A disabled only binding opens the app again — why "suspend" must not disable it.
    let bpath = format!("/policies/bindings/{binding}/");
    let bone = "/policies/bindings/{policy_binding_uuid}/";
    api.send("PATCH", bone, &bpath, Some(json!({"enabled": false})))
        .await;
    assert_eq!(check(stranger).await, Some(true));
    api.send(
        "PATCH",
        bone,
        &bpath,
        Some(json!({"enabled": true, "negate": true})),
    )
    .await;
    assert_eq!(
        (check(member).await, check(stranger).await),
        (Some(false), Some(true))
    );
    api.send("PATCH", bone, &bpath, Some(json!({"negate": false})))
        .await;

    api.send(
        "PATCH",
        "/core/users/{id}/",
        &format!("/core/users/{member}/"),
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(check(member).await, Some(false));

    let (status, err) = api
        .get(
            ca,
            "/core/applications/tenant-acme/check_access/?for_user=9999",
        )
        .await;
    assert_eq!((status, keys(&err)), (400, only("for_user")));
    assert_eq!(
        api.get(ca, "/core/applications/nope/check_access/?for_user=1")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn set_password_and_sign_in() {
    let api = Api::start().await;
    let p = api.provider("prov").await;
    let app = api.app("tenant-acme", p["pk"].as_i64()).await;
    let group = api.group("tenant-acme", "t1").await;
    let owner = api.user("owner@acme.example", &[&group]).await;
    api.bind(app["pbm_uuid"].as_str().unwrap_or_default(), &group)
        .await;
    let sp = "/core/users/{id}/set_password/";
    let path = format!("/core/users/{owner}/set_password/");

    assert!(
        !api.fake
            .can_sign_in("tenant-acme", "owner@acme.example", ""),
        "unusable password at first"
    );
    // An empty password is a 400 with an EMPTY body.
    let (status, body) = api
        .raw(
            "POST",
            Some(sp),
            &path,
            Some(json!({"password": ""})),
            Some(common::TOKEN),
        )
        .await;
    assert_eq!((status, body), (400, Value::Null));
    assert_eq!(
        api.post(sp, &path, json!({"password": "pw-1"})).await.0,
        204
    );
    assert!(
        api.fake
            .can_sign_in("tenant-acme", "owner@acme.example", "pw-1")
    );
    assert!(
        !api.fake
            .can_sign_in("tenant-acme", "owner@acme.example", "pw-2")
    );
    assert!(
        !api.fake
            .can_sign_in("other-app", "owner@acme.example", "pw-1")
    );

    let outsider = api.user("outsider", &[]).await;
    api.post(
        sp,
        &format!("/core/users/{outsider}/set_password/"),
        json!({"password": "pw"}),
    )
    .await;
    assert!(
        !api.fake.can_sign_in("tenant-acme", "outsider", "pw"),
        "not in the bound group"
    );

    let one = "/core/users/{id}/";
    api.send(
        "PATCH",
        one,
        &format!("/core/users/{owner}/"),
        Some(json!({"is_active": false})),
    )
    .await;
    assert!(
        !api.fake
            .can_sign_in("tenant-acme", "owner@acme.example", "pw-1"),
        "inactive"
    );
    api.send(
        "PATCH",
        one,
        &format!("/core/users/{owner}/"),
        Some(json!({"is_active": true})),
    )
    .await;
    api.send(
        "PATCH",
        "/core/applications/{slug}/",
        "/core/applications/tenant-acme/",
        Some(json!({"provider": null})),
    )
    .await;
    assert!(
        !api.fake
            .can_sign_in("tenant-acme", "owner@acme.example", "pw-1"),
        "app without provider"
    );
}

#[tokio::test]
async fn seeded_foreign_objects_are_visible_but_distinguishable() {
    let api = Api::start().await;
    let theirs = api
        .fake
        .seed_group("tenant-acme", json!({"owner": "someone-else"}));
    assert_eq!(
        api.fake.seed_group("tenant-acme", json!({})),
        theirs,
        "names stay unique"
    );
    let uid = api.fake.seed_user("owner@acme.example", json!({}));
    let (status, err) = api
        .post(
            "/core/groups/",
            "/core/groups/",
            json!({"name": "tenant-acme"}),
        )
        .await;
    assert_eq!((status, keys(&err)), (400, only("name")));
    let (_, found) = api
        .get("/core/groups/", "/core/groups/?name=tenant-acme")
        .await;
    assert_eq!(found["results"][0]["pk"], theirs.as_str());
    assert_eq!(
        found["results"][0]["attributes"],
        json!({"owner": "someone-else"})
    );
    let (_, ours) = api
        .get(
            "/core/groups/",
            "/core/groups/?attributes=%7B%22tenant_id%22%3A%22t1%22%7D",
        )
        .await;
    assert_eq!(ours["pagination"]["count"], 0);
    let (status, err) = api
        .get("/core/groups/", "/core/groups/?attributes=not-json")
        .await;
    assert_eq!((status, keys(&err)), (400, only("attributes")));
    let (_, u) = api
        .get("/core/users/{id}/", &format!("/core/users/{uid}/"))
        .await;
    assert_eq!(u["username"], "owner@acme.example");
}
