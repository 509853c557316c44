//! Durability: kill the server with SIGKILL in the middle of a stream of writes, start it
//! again on the same files, and find every acknowledged write there.

use dogear_e2e::{Reader, Server, progress, serde_json::Value, write_stream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill() {
    let mut server = Server::start();
    let me = Reader::new(&server, "crashy").await;
    let mut books = vec![me.book.clone()];
    for i in 0..3 {
        books.push(me.add_book(&format!("Book {i}")).await);
    }
    // Per book: every acknowledged (applied) body, in order; two writers per book.
    let acked: Vec<Arc<Mutex<Vec<Value>>>> = books.iter().map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (book, acked) in books.iter().zip(&acked) {
        for writer in 0..2 {
            tasks.push(write_stream(
                me.api.clone(),
                book.clone(),
                me.device.clone(),
                writer,
                acked.clone(),
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked: Vec<Vec<Value>> = acked.iter().map(|a| a.lock().unwrap().clone()).collect();
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(
        total > 20,
        "the stream was running when the server died ({total} acks)"
    );

    server.restart();
    let api = me.api.with_token(me.token());
    let api = dogear_e2e::Api {
        base: server.base.clone(),
        ..api
    };
    for (book, bodies) in books.iter().zip(&acked) {
        let state = api.get(&format!("/v1/books/{book}/progress")).await;
        assert_eq!(state.status, 200, "{}", state.body);
        let max_acked = bodies
            .iter()
            .map(|b| b["percent"].as_f64().unwrap())
            .fold(0.0, f64::max);
        let now = state.body["state"]["percent"].as_f64().unwrap_or(-1.0);
        assert!(
            now >= max_acked,
            "book {book}: state {now} lost acknowledged {max_acked}"
        );
        // Each acknowledged event is known to the restarted server by its id.
        for body in bodies.iter().rev().take(25) {
            let r = api
                .post(&format!("/v1/books/{book}/progress"), body.clone())
                .await;
            assert_eq!(
                r.body["reason"], "duplicate",
                "acknowledged event {} was lost",
                body["event_id"]
            );
        }
    }
    // And every acknowledged change is in the feed, in order.
    let mut feed = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let r = api
            .get(&format!("/v1/progress/changes?cursor={cursor}&limit=500"))
            .await;
        let items = r.body["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        feed.extend(items);
        cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    }
    for (book, bodies) in books.iter().zip(&acked) {
        let in_feed: Vec<f64> = feed
            .iter()
            .filter(|s| s["book_id"] == *book)
            .map(|s| s["percent"].as_f64().unwrap())
            .collect();
        for b in bodies {
            let p = b["percent"].as_f64().unwrap();
            assert!(
                in_feed.contains(&p),
                "acknowledged {p} of {book} missing from the feed"
            );
        }
        assert!(
            in_feed.windows(2).all(|w| w[0] <= w[1]),
            "feed moves forward"
        );
    }
}

#[tokio::test]
async fn graceful_restart_keeps_everything() {
    let mut server = Server::start();
    let me = Reader::new(&server, "graceful").await;
    let body = progress(&me.device, 42.0, 1);
    assert_eq!(me.write(&me.book, body.clone()).await.status, 200);
    assert_eq!(server.terminate(), Some(0), "SIGTERM exits 0");
    assert!(server.log().contains("stopped cleanly"), "{}", server.log());
    server.restart();
    let api = dogear_e2e::Api {
        base: server.base.clone(),
        ..me.api.clone()
    };
    assert_eq!(
        api.get(&format!("/v1/books/{}/progress", me.book))
            .await
            .body["state"]["percent"],
        42.0
    );
    assert_eq!(
        api.post(&format!("/v1/books/{}/progress", me.book), body)
            .await
            .body["reason"],
        "duplicate"
    );
    // Tokens survive a restart (the signing key is kept in the data directory).
    assert_eq!(api.get("/v1/users/me").await.status, 200);
}
