//! A reader's own record of each book against a real `dogear`: status, dates, rating,
//! review, favourite and loans; status moving with progress (and a status set by hand
//! holding against older progress); list filters; the idempotent batch replayed after a
//! restart and through another node of a cluster.

use dogear_e2e::cluster::Nodes;
use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Api, Reader, Server, progress};

/// Milliseconds since 2026-01-01 now (the `ts` helper's origin): writes made "now".
fn now_ms() -> i64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    unix - 1_767_225_600_000
}

async fn mine(api: &Api, book: &str) -> Value {
    let r = api.get(&format!("/v1/books/{book}/mine")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn titles(api: &Api, query: &str) -> Vec<String> {
    let mut t: Vec<String> = api
        .all_books(query)
        .await
        .iter()
        .map(|b| b["title"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

#[tokio::test]
async fn records_validate_filter_and_stay_private() {
    let server = Server::start();
    let me = Reader::new(&server, "mine_reader").await;
    let other = Reader::new(&server, "mine_other").await;
    let dune = me.add_book("Dune").await;
    let _emma = me.add_book("Emma").await;

    // Nothing said yet: an empty record.
    let empty = mine(&me.api, &dune).await;
    assert_eq!(empty["version"], 0);
    assert_eq!(empty["status"], Value::Null);
    assert_eq!(empty["favourite"], false);

    // PATCH changes what it names; a status by hand fills its dates.
    let path = format!("/v1/books/{dune}/mine");
    let r = me
        .api
        .patch(
            &path,
            json!({"status": "finished", "rating": 4.5, "review": "  Spice.  ", "favourite": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "finished");
    assert_eq!(r.body["status_source"], "manual");
    assert_eq!(r.body["rating"], 4.5);
    assert_eq!(r.body["review"], "Spice.");
    assert!(r.body["finished_at"].is_string() && r.body["started_at"].is_string());
    assert_eq!(r.body["version"], 1);
    let r = me
        .api
        .patch(&path, json!({"loaned_to": "Sam", "rating": null}))
        .await;
    assert_eq!(r.body["loaned_to"], "Sam");
    assert!(r.body["loaned_at"].is_string());
    assert_eq!(r.body["rating"], Value::Null);
    assert_eq!(r.body["status"], "finished", "untouched");
    assert_eq!(r.body["version"], 2);
    // The same content again is no new version.
    let same = me.api.patch(&path, json!({"loaned_to": "Sam"})).await;
    assert_eq!(same.body["version"], 2);
    assert_eq!(mine(&me.api, &dune).await, same.body);

    // Bad input: named fields, nothing written.
    for (body, field) in [
        (json!({"rating": 3.7}), "rating"),
        (json!({"rating": 0}), "rating"),
        (json!({"status": "skimmed"}), "status"),
        (json!({"started_at": "9999-01-01T00:00:00Z"}), "started_at"),
        (json!({"started_at": "yesterday"}), "started_at"),
        (json!({"review": "x".repeat(65 * 1024)}), "review"),
        (json!({"colour": "red"}), "colour"),
        (
            json!({"started_at": "2026-05-02T00:00:00Z", "finished_at": "2026-05-01T00:00:00Z"}),
            "finished_at",
        ),
    ] {
        let r = me.api.patch(&path, body.clone()).await;
        let msg = r.assert_error(400, "bad_request");
        assert!(msg.contains(field), "{body}: {msg}");
    }
    assert_eq!(mine(&me.api, &dune).await["version"], 2);

    // PUT replaces the whole record.
    let r = me
        .api
        .send(
            "PUT",
            &path,
            Some(&json!({"status": "want_to_read"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "want_to_read");
    assert_eq!(r.body["loaned_to"], Value::Null);
    assert_eq!(r.body["favourite"], false);
    assert_eq!(r.body["review"], Value::Null);

    // Filters on the caller's own records.
    me.api
        .patch(&path, json!({"favourite": true, "rating": 5}))
        .await;
    assert_eq!(titles(&me.api, "status=want_to_read").await, ["Dune"]);
    assert!(titles(&me.api, "status=finished").await.is_empty());
    assert_eq!(titles(&me.api, "favourite=true").await, ["Dune"]);
    assert_eq!(titles(&me.api, "favourite=false").await, ["Emma", "Hamlet"]);
    assert_eq!(titles(&me.api, "rated=true").await, ["Dune"]);
    me.api
        .get("/v1/books?status=skimmed")
        .await
        .assert_error(400, "bad_request");
    me.api
        .get("/v1/books?favourite=maybe")
        .await
        .assert_error(400, "bad_request");

    // Another reader cannot see or write a record of a book they cannot read.
    other.api.get(&path).await.assert_error(404, "not_found");
    other
        .api
        .patch(&path, json!({"favourite": true}))
        .await
        .assert_error(404, "not_found");
    // Their own record of their own book is theirs alone.
    let theirs = format!("/v1/books/{}/mine", other.book);
    other.api.patch(&theirs, json!({"rating": 1})).await;
    assert!(titles(&me.api, "rated=true").await == ["Dune"]);
    me.api.get(&theirs).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn status_follows_progress_unless_set_by_hand_later() {
    let server = Server::start();
    let me = Reader::new(&server, "mine_progress").await;
    let book = me.book.clone();
    let path = format!("/v1/books/{book}/mine");
    let t0 = now_ms() - 3_600_000;

    // First progress: reading, started at the write's client time.
    let r = me.write(&book, progress(&me.device, 10.0, t0)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = mine(&me.api, &book).await;
    assert_eq!(m["status"], "reading", "{m}");
    assert_eq!(m["status_source"], "progress");
    assert_eq!(m["started_at"], dogear_e2e::ts(t0));

    // Set aside by hand now; a write made before that (a device catching up) leaves it.
    let r = me.api.patch(&path, json!({"status": "abandoned"})).await;
    assert_eq!(r.body["status"], "abandoned");
    let r = me.write(&book, progress(&me.device, 30.0, t0 + 1000)).await;
    assert_eq!(r.body["applied"], true, "{}", r.body);
    assert_eq!(mine(&me.api, &book).await["status"], "abandoned");

    // Progress made after it counts again; 100 % finishes the book.
    let r = me.write(&book, progress(&me.device, 40.0, now_ms())).await;
    assert_eq!(r.body["applied"], true, "{}", r.body);
    assert_eq!(mine(&me.api, &book).await["status"], "reading");
    let end = now_ms() + 1;
    let r = me.write(&book, progress(&me.device, 100.0, end)).await;
    assert_eq!(r.body["applied"], true, "{}", r.body);
    let m = mine(&me.api, &book).await;
    assert_eq!(m["status"], "finished", "{m}");
    assert_eq!(m["finished_at"], dogear_e2e::ts(end));
    assert_eq!(m["started_at"], dogear_e2e::ts(t0), "kept");

    // Over the WebSocket too: a second book read from a socket starts reading.
    let second = me.add_book("Second").await;
    let (mut ws, _hello) = dogear_e2e::Socket::connect(&server, me.token(), &me.device).await;
    let mut p = progress(&me.device, 12.0, now_ms());
    p["type"] = json!("progress");
    p["book_id"] = json!(second);
    ws.send(p).await;
    let ack = ws.next_json().await.expect("ack");
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(mine(&me.api, &second).await["status"], "reading");
    assert_eq!(titles(&me.api, "status=reading").await, ["Second"]);
    assert_eq!(titles(&me.api, "status=finished").await, ["Hamlet"]);
}

fn batch_body(items: Vec<Value>) -> String {
    json!({ "items": items }).to_string()
}

async fn batch(api: &Api, key: Option<&str>, body: &str) -> dogear_e2e::Resp {
    let api = match key {
        Some(k) => api.with_header("idempotency-key", k),
        None => api.clone(),
    };
    api.send("POST", "/v1/books/mine/batch", Some(body)).await
}

#[tokio::test]
async fn the_idempotent_batch_answers_retries_the_same_after_a_restart() {
    let mut server = Server::start();
    let me = Reader::new(&server, "batcher").await;
    let a = me.add_book("Alpha").await;
    let b = me.add_book("Beta").await;
    let stranger = Reader::new(&server, "batch_stranger").await;

    let body = batch_body(vec![
        json!({"book_id": a, "status": "want_to_read"}),
        json!({"book_id": b, "rating": 3.5, "favourite": true}),
        json!({"book_id": stranger.book, "favourite": true}),
        json!({"book_id": a, "started_at": "9999-01-01T00:00:00Z"}),
        json!({"book_id": a, "review": "Second item for the same book"}),
    ]);
    let first = batch(&me.api, Some("key-1"), &body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["replayed"], false);
    let results = first.body["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[0]["mine"]["status"], "want_to_read");
    assert_eq!(results[1]["mine"]["rating"], 3.5);
    assert_eq!(results[2]["status"], 404, "another reader's book");
    assert_eq!(results[2]["error"]["code"], "not_found");
    assert_eq!(results[3]["status"], 400, "refused whole");
    assert!(
        results[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("started_at")
    );
    assert_eq!(
        results[4]["mine"]["review"],
        "Second item for the same book"
    );
    assert_eq!(
        results[4]["mine"]["status"], "want_to_read",
        "built on item 0"
    );
    let after = mine(&me.api, &a).await;
    assert_eq!(after["started_at"], Value::Null, "nothing of item 3");
    assert_eq!(after["version"], 1, "two items for one book: one write");

    // A retry gets the stored answer, and writes nothing more.
    me.api
        .patch(&format!("/v1/books/{a}/mine"), json!({"favourite": true}))
        .await;
    let again = batch(&me.api, Some("key-1"), &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["replayed"], true);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["results"], first.body["results"]);
    assert_eq!(mine(&me.api, &a).await["favourite"], true, "not undone");

    // The same key with another body is refused; without a key nothing is remembered.
    let other = batch_body(vec![json!({"book_id": a, "status": "reading"})]);
    batch(&me.api, Some("key-1"), &other)
        .await
        .assert_error(409, "idempotency_mismatch");
    assert_eq!(mine(&me.api, &a).await["status"], "want_to_read");
    // Keys are per reader: another reader's same key is theirs.
    let theirs = batch_body(vec![json!({"book_id": stranger.book, "status": "reading"})]);
    let r = batch(&stranger.api, Some("key-1"), &theirs).await;
    assert_eq!(r.body["replayed"], false, "{}", r.body);

    // Bad batches: nothing written.
    let many: Vec<Value> = (0..501)
        .map(|_| json!({"book_id": a, "favourite": false}))
        .collect();
    let msg = batch(&me.api, None, &batch_body(many))
        .await
        .assert_error(400, "bad_request")
        .to_string();
    assert!(msg.contains("items"), "{msg}");
    let msg = batch(
        &me.api,
        Some("key-2"),
        &batch_body(vec![
            json!({"book_id": a, "status": "reading"}),
            json!({"book_id": a, "rating": "five"}),
        ]),
    )
    .await
    .assert_error(400, "bad_request")
    .to_string();
    assert!(msg.contains("items[1].rating"), "{msg}");
    assert_eq!(mine(&me.api, &a).await["status"], "want_to_read");
    batch(&me.api, Some("bad key with spaces"), &other)
        .await
        .assert_error(400, "bad_request");
    // key-2 was never answered: it is free.
    let r = batch(&me.api, Some("key-2"), &other).await;
    assert_eq!(r.body["replayed"], false, "{}", r.body);

    // After a restart the stored answer is still given, and the key still refuses others.
    server.kill9();
    server.restart();
    let api = Api {
        base: server.base.clone(),
        ..me.api.clone()
    };
    let replay = batch(&api, Some("key-1"), &body).await;
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert_eq!(replay.body["replayed"], true);
    assert_eq!(replay.body["results"], first.body["results"]);
    batch(&api, Some("key-1"), &other)
        .await
        .assert_error(409, "idempotency_mismatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_holds_across_nodes() {
    let (c, _plan) = Nodes::start(2).await;
    let me = Reader::new(&c.nodes[0], "batch_cluster").await;
    let on = |i: usize| Api {
        base: c.nodes[i].base.clone(),
        ..me.api.clone()
    };
    let body = batch_body(vec![
        json!({"book_id": me.book, "status": "reading", "rating": 2}),
    ]);
    let first = batch(&on(0), Some("k"), &body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["replayed"], false);
    let second = batch(&on(1), Some("k"), &body).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        second.body["replayed"], true,
        "answered through the other node"
    );
    assert_eq!(second.body["results"], first.body["results"]);
    let other = batch_body(vec![json!({"book_id": me.book, "status": "finished"})]);
    batch(&on(1), Some("k"), &other)
        .await
        .assert_error(409, "idempotency_mismatch");
    let m = on(1).get(&format!("/v1/books/{}/mine", me.book)).await;
    assert_eq!(m.body["status"], "reading");
    assert_eq!(m.body["version"], 1);
}
