//! Devices, libraries and books over real HTTP, and what one user may not see of another's.

use dogear_e2e::{Reader, Server, progress, serde_json::json};

#[tokio::test]
async fn devices_crud() {
    let server = Server::start();
    let me = Reader::new(&server, "dev_owner").await;
    let other = Reader::new(&server, "dev_other").await;
    let r = me
        .api
        .post(
            "/v1/devices",
            json!({"name": "  Pixel 9 ", "kind": "mobile"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["name"], "Pixel 9");
    assert_eq!(r.body["kind"], "mobile");
    let id = r.body["id"].as_str().unwrap().to_string();
    for kind in ["web", "mobile", "desktop", "kobo", "koreader", "other"] {
        assert_eq!(
            me.api
                .post("/v1/devices", json!({"name": kind, "kind": kind}))
                .await
                .status,
            201
        );
    }
    let msg = me
        .api
        .post("/v1/devices", json!({"name": "x", "kind": "toaster"}))
        .await
        .assert_error(400, "bad_request")
        .to_string();
    assert!(msg.contains("kind"), "{msg}");
    let msg = me
        .api
        .post("/v1/devices", json!({"name": "", "kind": "web"}))
        .await
        .assert_error(400, "bad_request")
        .to_string();
    assert!(msg.contains("name"), "{msg}");
    me.api
        .post("/v1/devices", json!({"kind": "web"}))
        .await
        .assert_error(400, "bad_request");

    let list = me.api.get("/v1/devices").await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        8,
        "the reader's own plus seven"
    );
    assert!(list.body["next_cursor"].is_null());
    assert!(
        other.api.get("/v1/devices").await.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["id"] != id)
    );

    other
        .api
        .delete(&format!("/v1/devices/{id}"))
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        me.api.delete(&format!("/v1/devices/{id}")).await.status,
        204
    );
    me.api
        .delete(&format!("/v1/devices/{id}"))
        .await
        .assert_error(404, "not_found");
    me.api
        .delete("/v1/devices/not-a-uuid")
        .await
        .assert_error(404, "not_found");
    server
        .client()
        .get("/v1/devices")
        .await
        .assert_error(401, "unauthorized");
    // A deleted device can no longer write progress.
    let r = me.write(&me.book, progress(&id, 5.0, 1)).await;
    assert!(r.assert_error(400, "bad_request").contains("device_id"));
}

#[tokio::test]
async fn books_crud_list_and_tombstones() {
    let server = Server::start();
    let me = Reader::new(&server, "books_owner").await;
    let libs = me.api.get("/v1/libraries").await;
    let lib = libs.body["items"][0]["id"].as_str().unwrap().to_string();

    let r = me
        .api
        .post(
            "/v1/books",
            json!({
                "title": "Macbeth", "authors": ["William Shakespeare"], "language": "en",
                "identifiers": {"isbn": "9780000000002"}, "library_id": lib
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for f in [
        "id",
        "library_id",
        "title",
        "authors",
        "language",
        "identifiers",
        "formats",
        "added_at",
        "updated_at",
    ] {
        assert!(r.body.get(f).is_some(), "book has {f}");
    }
    assert_eq!(r.body["formats"], json!([]));
    assert_eq!(r.body["library_id"], lib);
    let macbeth = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        me.api.get(&format!("/v1/books/{macbeth}")).await.body["title"],
        "Macbeth"
    );

    for (body, field) in [
        (json!({"authors": ["x"]}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": "t", "authors": "x"}), "authors"),
        (
            json!({"title": "t", "language": "english language tag that is far too long"}),
            "language",
        ),
        (
            json!({"title": "t", "identifiers": {"ISBN!": "1"}}),
            "identifiers",
        ),
        (json!({"title": "t", "library_id": "nope"}), "library_id"),
    ] {
        let r = me.api.post("/v1/books", body.clone()).await;
        assert!(
            r.assert_error(400, "bad_request").contains(field),
            "{body}: {}",
            r.body
        );
    }

    for i in 0..5 {
        me.add_book(&format!("Sonnet {i}")).await;
    }
    // 7 books: Hamlet, Macbeth, 5 sonnets. Page through 3 at a time.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = me
            .api
            .get(&format!("/v1/books?limit=3&cursor={cursor}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|b| b["id"].as_str().unwrap().to_string()));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "paging covers every book once");
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 7);
    let found = me.api.get("/v1/books?q=shakes").await;
    assert_eq!(
        found.body["items"].as_array().unwrap().len(),
        2,
        "q matches authors"
    );
    let found = me.api.get("/v1/books?q=SONNET").await;
    assert_eq!(
        found.body["items"].as_array().unwrap().len(),
        5,
        "q matches titles"
    );
    let found = me
        .api
        .get(&format!("/v1/books?library_id={lib}&limit=500"))
        .await;
    assert_eq!(found.body["items"].as_array().unwrap().len(), 7);
    me.api
        .get("/v1/books?limit=0")
        .await
        .assert_error(400, "bad_request");
    me.api
        .get("/v1/books?limit=501")
        .await
        .assert_error(400, "bad_request");
    me.api
        .get("/v1/books?cursor=zzz")
        .await
        .assert_error(400, "bad_request");

    let r = me
        .api
        .patch(
            &format!("/v1/books/{macbeth}"),
            json!({"title": "The Tragedy of Macbeth", "language": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["title"], "The Tragedy of Macbeth");
    assert!(r.body["language"].is_null(), "null clears");
    assert_eq!(
        r.body["authors"],
        json!(["William Shakespeare"]),
        "untouched fields stay"
    );
    let msg = me
        .api
        .patch(&format!("/v1/books/{macbeth}"), json!({"titel": "typo"}))
        .await
        .assert_error(400, "bad_request")
        .to_string();
    assert!(msg.contains("titel"), "{msg}");

    assert_eq!(
        me.api.delete(&format!("/v1/books/{macbeth}")).await.status,
        204
    );
    me.api
        .get(&format!("/v1/books/{macbeth}"))
        .await
        .assert_error(404, "not_found");
    me.api
        .delete(&format!("/v1/books/{macbeth}"))
        .await
        .assert_error(404, "not_found");
    me.api
        .patch(&format!("/v1/books/{macbeth}"), json!({"title": "x"}))
        .await
        .assert_error(404, "not_found");
    let r = me.write(&macbeth, progress(&me.device, 5.0, 1)).await;
    r.assert_error(404, "not_found");
    assert_eq!(
        me.api.get("/v1/books?limit=500").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

#[tokio::test]
async fn another_user_sees_nothing_of_mine() {
    let server = Server::start();
    let me = Reader::new(&server, "private_me").await;
    let them = Reader::new(&server, "private_them").await;
    assert_eq!(
        me.write(&me.book, progress(&me.device, 30.0, 1))
            .await
            .status,
        200
    );
    let book = &me.book;
    them.api
        .get(&format!("/v1/books/{book}"))
        .await
        .assert_error(404, "not_found");
    them.api
        .patch(&format!("/v1/books/{book}"), json!({"title": "mine now"}))
        .await
        .assert_error(404, "not_found");
    them.api
        .delete(&format!("/v1/books/{book}"))
        .await
        .assert_error(404, "not_found");
    them.api
        .get(&format!("/v1/books/{book}/progress"))
        .await
        .assert_error(404, "not_found");
    // Writing to my book with their own device: still 404, nothing revealed.
    them.write(book, progress(&them.device, 99.0, 2))
        .await
        .assert_error(404, "not_found");
    // Writing to their own book with my device: my device is not theirs.
    let r = them.write(&them.book, progress(&me.device, 99.0, 2)).await;
    assert!(r.assert_error(400, "bad_request").contains("device_id"));
    them.api
        .delete(&format!("/v1/devices/{}", me.device))
        .await
        .assert_error(404, "not_found");
    let mine = me.api.get("/v1/libraries").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    them.api
        .get(&format!("/v1/books?library_id={mine}"))
        .await
        .assert_error(404, "not_found");
    let r = them
        .api
        .post("/v1/books", json!({"title": "planted", "library_id": mine}))
        .await;
    r.assert_error(404, "not_found");
    let list = them.api.get("/v1/books").await;
    assert!(
        list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["id"] != *book)
    );
    let changes = them.api.get("/v1/progress/changes").await;
    assert_eq!(changes.body["items"], json!([]));
    // Mine is untouched.
    let p = me.api.get(&format!("/v1/books/{book}/progress")).await;
    assert_eq!(p.body["state"]["percent"], 30.0);
    assert_eq!(
        me.api.get(&format!("/v1/books/{book}")).await.body["title"],
        "Hamlet"
    );
}

#[tokio::test]
async fn unknown_routes_methods_and_bodies() {
    let server = Server::start();
    let api = server.client();
    api.get("/v1/nothing-here")
        .await
        .assert_error(404, "not_found");
    let r = api.send("PUT", "/v1/devices", None).await;
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.headers["allow"], "GET, POST");
    let big = format!("{{\"username\":\"{}\"}}", "x".repeat(2 << 20));
    api.send("POST", "/v1/auth/register", Some(&big))
        .await
        .assert_error(413, "payload_too_large");
    let h = api.get("/health").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.body, json!({"status": "ok"}));
    assert!(h.headers.contains_key("x-request-id"));
    // Histograms appear once observed: make one storage commit happen.
    Reader::new(&server, "metrics_user").await;
    let r = api.get("/ready").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = server
        .client()
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert!(
        m.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = m.text().await.unwrap();
    for name in [
        "dogear_http_requests_total{route=\"/v1/devices\",method=\"PUT\",status=\"405\"}",
        "dogear_http_request_duration_seconds_bucket",
        "dogear_ws_connections",
        "dogear_actors_active{kind=\"user\"}",
        "dogear_progress_writes_total{outcome=\"behind\"}",
        "dogear_storage_commit_duration_seconds_bucket",
        "dogear_storage_batch_size_bucket",
    ] {
        assert!(text.contains(name), "metrics lack {name}");
    }
    assert!(
        !text.contains("/v1/nothing-here"),
        "raw paths never become labels"
    );
}
