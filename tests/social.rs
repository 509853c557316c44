//! Profiles, follows and blocks against a real `dogear`: a private profile's data is never
//! shown to anyone who is not an approved follower, requests are approved or rejected, the
//! other visibilities, and a block hiding each from the other.

use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Api, Reader, Server};

async fn profile(api: &Api, name: &str) -> dogear_e2e::Resp {
    api.get(&format!("/v1/users/{name}")).await
}

/// The profile's data is absent: nothing but the name and the relation.
fn assert_hidden(p: &Value) {
    assert_eq!(p["visible"], false, "{p}");
    for k in ["finished", "ratings", "shelves", "followers_count"] {
        assert!(p.get(k).is_none(), "{k} shown: {p}");
    }
    assert!(!p.to_string().contains("Secret review"), "{p}");
}

async fn names(api: &Api, path: &str) -> Vec<String> {
    let r = api.get(path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["username"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_private_profile_shows_its_data_to_approved_followers_only() {
    let server = Server::start();
    let owner = Reader::new(&server, "soc_owner").await;
    let fan = Reader::new(&server, "soc_fan").await;
    let stranger = Reader::new(&server, "soc_stranger").await;
    // What the owner reads: a finished, rated, reviewed book and a public shelf.
    owner
        .api
        .patch(
            &format!("/v1/books/{}/mine", owner.book),
            json!({"status": "finished", "rating": 5, "review": "Secret review"}),
        )
        .await;
    let shelf = owner
        .api
        .post(
            "/v1/shelves",
            json!({"name": "Favourites", "book_ids": [owner.book]}),
        )
        .await;
    let shelf = shelf.body["id"].as_str().unwrap().to_string();
    let r = owner
        .api
        .patch(&format!("/v1/shelves/{shelf}"), json!({"public": true}))
        .await;
    assert_eq!(r.body["public"], true, "{}", r.body);
    owner
        .api
        .post(
            "/v1/shelves",
            json!({"name": "Not shown", "book_ids": [owner.book]}),
        )
        .await;

    // Private by default: strangers see the name alone.
    assert_eq!(
        owner.api.get("/v1/users/me").await.body["visibility"],
        "private"
    );
    let own = profile(&owner.api, "soc_owner").await;
    assert_eq!(own.body["visible"], true, "the owner sees their own");
    for api in [&fan.api, &stranger.api] {
        let p = profile(api, "soc_owner").await;
        assert_eq!(p.status, 200);
        assert_hidden(&p.body);
    }
    server
        .client()
        .get("/v1/users/soc_owner")
        .await
        .assert_error(401, "unauthorized");
    profile(&fan.api, "nobody_by_that_name")
        .await
        .assert_error(404, "not_found");

    // Following is a request; still hidden until approved.
    let r = fan.api.post("/v1/users/soc_owner/follow", json!({})).await;
    assert_eq!(r.body["state"], "requested", "{}", r.body);
    // Requests are listed newest first, by their time in milliseconds: the second one is
    // made in a later millisecond, so the order below is the order they were made in.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = stranger
        .api
        .post("/v1/users/soc_owner/follow", json!({}))
        .await;
    assert_eq!(r.body["state"], "requested");
    let p = profile(&fan.api, "soc_owner").await;
    assert_hidden(&p.body);
    assert_eq!(p.body["you_follow"], "requested");
    assert_eq!(
        names(&owner.api, "/v1/users/me/follow-requests").await,
        ["soc_stranger", "soc_fan"]
    );
    let r = owner
        .api
        .post("/v1/users/me/follow-requests/soc_fan/approve", json!({}))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = owner
        .api
        .post(
            "/v1/users/me/follow-requests/soc_stranger/reject",
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204);
    owner
        .api
        .post(
            "/v1/users/me/follow-requests/soc_stranger/approve",
            json!({}),
        )
        .await
        .assert_error(404, "not_found");

    // The approved follower sees the data; the rejected one still does not.
    let p = profile(&fan.api, "soc_owner").await.body;
    assert_eq!(p["visible"], true, "{p}");
    assert_eq!(p["you_follow"], "following");
    assert_eq!(p["finished"][0]["title"], "Hamlet");
    assert_eq!(p["ratings"][0]["rating"], 5.0);
    assert_eq!(p["ratings"][0]["review"], "Secret review");
    let shelves = p["shelves"].as_array().unwrap();
    assert_eq!(shelves.len(), 1, "only the public shelf: {p}");
    assert_eq!(shelves[0]["name"], "Favourites");
    assert_eq!(shelves[0]["books"][0]["title"], "Hamlet");
    assert_eq!(p["followers_count"], 1);
    assert_hidden(&profile(&stranger.api, "soc_owner").await.body);
    assert_eq!(
        names(&owner.api, "/v1/users/me/followers").await,
        ["soc_fan"]
    );
    assert_eq!(
        names(&fan.api, "/v1/users/me/following").await,
        ["soc_owner"]
    );
    assert_eq!(
        profile(&owner.api, "soc_fan").await.body["follows_you"],
        true
    );

    // A follower removed, or one who unfollows, sees nothing again.
    let r = owner.api.delete("/v1/users/me/followers/soc_fan").await;
    assert_eq!(r.status, 204);
    assert_hidden(&profile(&fan.api, "soc_owner").await.body);
    fan.api.post("/v1/users/soc_owner/follow", json!({})).await;
    owner
        .api
        .post("/v1/users/me/follow-requests/soc_fan/approve", json!({}))
        .await;
    assert_eq!(profile(&fan.api, "soc_owner").await.body["visible"], true);
    let r = fan.api.delete("/v1/users/soc_owner/follow").await;
    assert_eq!(r.status, 204);
    assert_hidden(&profile(&fan.api, "soc_owner").await.body);
    fan.api
        .post("/v1/users/soc_fan/follow", json!({}))
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn public_and_followers_profiles_and_blocks() {
    let server = Server::start();
    let owner = Reader::new(&server, "soc_pub").await;
    let a = Reader::new(&server, "soc_a").await;
    let b = Reader::new(&server, "soc_b").await;
    owner
        .api
        .patch(
            &format!("/v1/books/{}/mine", owner.book),
            json!({"status": "finished"}),
        )
        .await;
    // A waiting request becomes a follow when the profile opens up.
    a.api.post("/v1/users/soc_pub/follow", json!({})).await;
    let r = owner
        .api
        .patch("/v1/users/me", json!({"visibility": "followers"}))
        .await;
    assert_eq!(r.body["visibility"], "followers", "{}", r.body);
    owner
        .api
        .patch("/v1/users/me", json!({"visibility": "everyone"}))
        .await
        .assert_error(400, "bad_request");
    assert_eq!(
        profile(&a.api, "soc_pub").await.body["you_follow"],
        "following"
    );
    assert_eq!(profile(&a.api, "soc_pub").await.body["visible"], true);
    // Followers only: b sees nothing until b follows (no approval needed).
    assert_hidden(&profile(&b.api, "soc_pub").await.body);
    let r = b.api.post("/v1/users/soc_pub/follow", json!({})).await;
    assert_eq!(r.body["state"], "following");
    assert_eq!(profile(&b.api, "soc_pub").await.body["visible"], true);
    b.api.delete("/v1/users/soc_pub/follow").await;
    // Public: everyone signed in.
    owner
        .api
        .patch("/v1/users/me", json!({"visibility": "public"}))
        .await;
    let p = profile(&b.api, "soc_pub").await.body;
    assert_eq!(p["visible"], true);
    assert_eq!(p["finished"][0]["title"], "Hamlet");

    // A block hides each from the other, ends their follows, and refuses new ones.
    let r = owner.api.post("/v1/users/soc_a/block", json!({})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    profile(&a.api, "soc_pub")
        .await
        .assert_error(404, "not_found");
    profile(&owner.api, "soc_a")
        .await
        .assert_error(404, "not_found");
    a.api
        .post("/v1/users/soc_pub/follow", json!({}))
        .await
        .assert_error(404, "not_found");
    assert!(names(&owner.api, "/v1/users/me/followers").await.is_empty());
    assert_eq!(names(&owner.api, "/v1/users/me/blocks").await, ["soc_a"]);
    // Lifted: visible again by the profile's rules; the old follow does not come back.
    let r = owner.api.delete("/v1/users/soc_a/block").await;
    assert_eq!(r.status, 204);
    let p = profile(&a.api, "soc_pub").await.body;
    assert_eq!(p["visible"], true);
    assert_eq!(p["you_follow"], Value::Null);
    owner
        .api
        .delete("/v1/users/soc_a/block")
        .await
        .assert_error(404, "not_found");

    // A deleted account leaves every list.
    b.api.post("/v1/users/soc_pub/follow", json!({})).await;
    assert_eq!(names(&owner.api, "/v1/users/me/followers").await, ["soc_b"]);
    let r = b
        .api
        .send(
            "DELETE",
            "/v1/users/me",
            Some(&json!({"password": "correct horse battery"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(names(&owner.api, "/v1/users/me/followers").await.is_empty());
    profile(&owner.api, "soc_b")
        .await
        .assert_error(404, "not_found");
}
