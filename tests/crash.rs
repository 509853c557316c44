//! Durability: kill the server with SIGKILL in the middle of a stream of writes, start it
//! again on the same files, and find every acknowledged write there.

use dogear_e2e::{Reader, Server, post_progress, progress, serde_json::Value, write_stream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill() {
    let mut server = Server::start();
    let me = Reader::new(&server, "crashy").await;
    let books = books_of(&me, 4).await;
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
    let feed = whole_feed(&api).await;
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

/// The reader's first book and more, `n` in all.
async fn books_of(r: &Reader, n: usize) -> Vec<String> {
    let mut books = vec![r.book.clone()];
    for i in 1..n {
        books.push(r.add_book(&format!("Book {i}")).await);
    }
    books
}

/// The applied answers of a reader's writers: (body sent, state answered).
type Acked = Arc<Mutex<Vec<(Value, Value)>>>;

/// One writer: forward positions of one book, each from a counter shared by the book's
/// writers (so concurrent writers also send some that arrive behind). Keeps every applied
/// answer with the body that made it.
fn stream(
    api: dogear_e2e::Api,
    book: String,
    device: String,
    counter: Arc<std::sync::atomic::AtomicU64>,
    acked: Acked,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = progress(&device, (n as f64 * 0.0001).min(100.0), n as i64);
            let Some(v) = post_progress(&api, &book, &body).await else {
                return;
            };
            if v["applied"] == true
                && let Ok(mut a) = acked.lock()
            {
                a.push((body, v["state"].clone()));
            }
        }
    })
}

/// `api` pointed at the server's current address (it changes at each restart).
fn at(server: &Server, api: &dogear_e2e::Api) -> dogear_e2e::Api {
    dogear_e2e::Api {
        base: server.base.clone(),
        ..api.clone()
    }
}

/// A reader's whole changes feed, from the start.
async fn whole_feed(api: &dogear_e2e::Api) -> Vec<Value> {
    let mut feed = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let r = api
            .get(&format!("/v1/progress/changes?cursor={cursor}&limit=500"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return feed;
        }
        feed.extend(items);
        cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    }
}

/// Every acknowledged state is in the feed under its version, each book's versions run
/// from 1 without a hole or a repeat (nothing lost, nothing applied twice), and a few
/// acknowledged bodies sent again are duplicates that change nothing.
async fn check_reader(api: &dogear_e2e::Api, acked: &[(Value, Value)], who: &str) {
    let feed = whole_feed(api).await;
    let mut by_book: std::collections::HashMap<String, Vec<&Value>> = Default::default();
    for s in &feed {
        by_book
            .entry(s["book_id"].as_str().unwrap().to_string())
            .or_default()
            .push(s);
    }
    for (book, states) in &by_book {
        let versions: Vec<u64> = states
            .iter()
            .map(|s| s["version"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(
            versions, want,
            "{who}: the feed of {book} has a hole or a repeat"
        );
    }
    for (_, state) in acked {
        let book = state["book_id"].as_str().unwrap();
        let v = state["version"].as_u64().unwrap() as usize;
        let logged = by_book
            .get(book)
            .and_then(|s| s.get(v - 1))
            .unwrap_or_else(|| panic!("{who}: acknowledged version {v} of {book} was lost"));
        assert_eq!(
            (&logged["percent"], &logged["client_ts"]),
            (&state["percent"], &state["client_ts"]),
            "{who}: version {v} of {book} is not the acknowledged write"
        );
    }
    for (body, state) in acked.iter().rev().take(2) {
        let book = state["book_id"].as_str().unwrap();
        let r = api
            .post(&format!("/v1/books/{book}/progress"), body.clone())
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body["reason"], "duplicate",
            "{who}: an acknowledged write was lost"
        );
    }
}

/// SIGKILL at random moments while owners batch: a hot reader (64 writers over 20 books,
/// so its owner stores many writes per batch) and 256 readers writing at once, twenty times
/// on the same files (`DOGEAR_CRASH_CYCLES` more: `loadtest/scripts/crash.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_batches_loses_nothing_and_repeats_nothing() {
    let cycles: u32 = std::env::var("DOGEAR_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut server = Server::start();
    let hot = Reader::new(&server, "hot").await;
    let hot_books = books_of(&hot, 20).await;
    let mut readers = Vec::new();
    for chunk in 0..16 {
        let names: Vec<String> = (0..16).map(|i| format!("many{chunk}x{i}")).collect();
        let made =
            futures_util::future::join_all(names.iter().map(|n| Reader::new(&server, n))).await;
        readers.extend(made);
    }
    let hot_counters: Vec<Arc<std::sync::atomic::AtomicU64>> =
        hot_books.iter().map(|_| Arc::default()).collect();
    let counters: Vec<Arc<std::sync::atomic::AtomicU64>> =
        readers.iter().map(|_| Arc::default()).collect();
    for cycle in 0..cycles {
        let hot_acked: Acked = Arc::default();
        let acked: Vec<Acked> = readers.iter().map(|_| Arc::default()).collect();
        let mut tasks = Vec::new();
        for w in 0..64 {
            let b = w % hot_books.len();
            tasks.push(stream(
                at(&server, &hot.api),
                hot_books[b].clone(),
                hot.device.clone(),
                hot_counters[b].clone(),
                hot_acked.clone(),
            ));
        }
        for (i, r) in readers.iter().enumerate() {
            tasks.push(stream(
                at(&server, &r.api),
                r.book.clone(),
                r.device.clone(),
                counters[i].clone(),
                acked[i].clone(),
            ));
        }
        // Once both streams have been answered (a loaded machine may take a while after a
        // restart), a random moment: some cycles die while batches are small, some deep in
        // the load.
        let running = || {
            !hot_acked.lock().unwrap().is_empty()
                && acked.iter().any(|a| !a.lock().unwrap().is_empty())
        };
        for _ in 0..600 {
            if running() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let wait = uuid::Uuid::new_v4().as_u128() % 650;
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        server.kill9();
        for t in tasks {
            let _ = t.await;
        }
        server.restart();
        let hot_acked = hot_acked.lock().unwrap().clone();
        let many: usize = acked.iter().map(|a| a.lock().unwrap().len()).sum();
        assert!(
            !hot_acked.is_empty() && many > 0,
            "cycle {cycle}: the writers were running when the server died"
        );
        check_reader(
            &at(&server, &hot.api),
            &hot_acked,
            &format!("cycle {cycle} hot"),
        )
        .await;
        for (i, r) in readers.iter().enumerate() {
            let a = acked[i].lock().unwrap().clone();
            check_reader(
                &at(&server, &r.api),
                &a,
                &format!("cycle {cycle} {}", r.username),
            )
            .await;
        }
    }
}
