//! The five progress rules, idempotency and the changes feed, over real HTTP.

use dogear_e2e::{Reader, Server, event_id, progress, serde_json::json, ts};

#[tokio::test]
async fn the_five_rules() {
    let server = Server::start();
    let me = Reader::new(&server, "rules").await;
    let phone = me.add_device("mobile").await;
    let (kobo, book) = (me.device.clone(), me.book.clone());

    let r = me.write(&book, progress(&kobo, 40.0, 1_000)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["applied"], true);
    assert!(r.body.get("reason").is_none() || r.body["reason"].is_null());
    let s = &r.body["state"];
    for f in [
        "book_id",
        "percent",
        "locator",
        "status",
        "device_id",
        "client_ts",
        "updated_at",
        "version",
    ] {
        assert!(s.get(f).is_some(), "state has {f}");
    }
    assert_eq!(s["version"], 1);
    assert_eq!(s["status"], "reading");
    assert_eq!(s["client_ts"], ts(1_000));

    // Rule 2: forward applies; equal percent goes to the newer client clock.
    let r = me.write(&book, progress(&phone, 41.5, 500)).await;
    assert_eq!(r.body["applied"], true);
    assert_eq!(r.body["state"]["version"], 2);
    let r = me.write(&book, progress(&kobo, 41.5, 400)).await;
    assert_eq!(
        r.body["applied"], false,
        "older clock at equal percent loses"
    );
    assert_eq!(r.body["state"]["device_id"], phone);
    let r = me.write(&book, progress(&kobo, 41.5, 600)).await;
    assert_eq!(r.body["applied"], true, "newer clock at equal percent wins");

    // Rule 3: backward without rewind is behind; the state comes back, the device's own
    // position is still recorded.
    let r = me.write(&book, progress(&phone, 10.0, 9_000)).await;
    assert_eq!(r.body["applied"], false);
    assert_eq!(r.body["reason"], "behind");
    assert_eq!(r.body["state"]["percent"], 41.5);
    let view = me.api.get(&format!("/v1/books/{book}/progress")).await;
    assert_eq!(view.body["state"]["percent"], 41.5);
    let devices = view.body["devices"].as_array().unwrap();
    let phone_pos = devices
        .iter()
        .find(|d| d["device_id"] == phone)
        .expect("phone position");
    assert_eq!(phone_pos["percent"], 10.0);
    assert!(phone_pos["locator"].as_str().unwrap().contains("p10"));

    // Rule 4: rewind applies only when newer than the current state.
    let mut old_rewind = progress(&phone, 5.0, 100);
    old_rewind["rewind"] = json!(true);
    let r = me.write(&book, old_rewind).await;
    assert_eq!(
        (r.body["applied"].clone(), r.body["reason"].clone()),
        (json!(false), json!("stale"))
    );
    let mut rewind = progress(&phone, 5.0, 10_000);
    rewind["rewind"] = json!(true);
    let r = me.write(&book, rewind).await;
    assert_eq!(r.body["applied"], true);
    assert_eq!(r.body["state"]["percent"], 5.0);

    // Rule 5: unread at 0% is a rewind (a reset), under rule 4.
    let mut reset = progress(&kobo, 0.0, 5_000);
    reset["status"] = json!("unread");
    let r = me.write(&book, reset.clone()).await;
    assert_eq!(r.body["reason"], "stale", "older than the current state");
    reset["event_id"] = json!(event_id());
    reset["client_ts"] = json!(ts(20_000));
    let r = me.write(&book, reset).await;
    assert_eq!(r.body["applied"], true);
    assert_eq!(r.body["state"]["status"], "unread");
    assert_eq!(r.body["state"]["percent"], 0.0);

    let mut done = progress(&kobo, 100.0, 30_000);
    done.as_object_mut().unwrap().remove("locator");
    let r = me.write(&book, done).await;
    assert_eq!(
        r.body["state"]["status"], "finished",
        "100% with no status is finished"
    );
    assert!(r.body["state"]["locator"].is_null());
}

#[tokio::test]
async fn idempotency_by_event_id() {
    let server = Server::start();
    let me = Reader::new(&server, "idem").await;
    let body = progress(&me.device, 20.0, 1);
    let first = me.write(&me.book, body.clone()).await;
    assert_eq!(first.body["applied"], true);
    let again = me.write(&me.book, body.clone()).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["applied"], true, "repeats the first outcome");
    assert_eq!(again.body["reason"], "duplicate");
    assert_eq!(again.body["state"]["version"], 1, "nothing changed");
    let mut changed = body.clone();
    changed["percent"] = json!(21.0);
    me.write(&me.book, changed)
        .await
        .assert_error(409, "idempotency_mismatch");
    // A not-applied write repeats as not applied.
    let behind = progress(&me.device, 1.0, 2);
    assert_eq!(
        me.write(&me.book, behind.clone()).await.body["reason"],
        "behind"
    );
    let r = me.write(&me.book, behind).await;
    assert_eq!(
        (r.body["applied"].clone(), r.body["reason"].clone()),
        (json!(false), json!("duplicate"))
    );
    // The same event id on another book is a different body.
    let other = me.add_book("Other").await;
    me.write(&other, body)
        .await
        .assert_error(409, "idempotency_mismatch");
    let m = server.metrics().await;
    assert!(
        m.contains("dogear_progress_writes_total{outcome=\"duplicate\"} 2"),
        "{m}"
    );
    assert!(m.contains("dogear_progress_writes_total{outcome=\"applied\"} 1"));
    assert!(m.contains("dogear_progress_writes_total{outcome=\"behind\"} 1"));
}

#[tokio::test]
async fn bad_progress_bodies_name_the_field() {
    let server = Server::start();
    let me = Reader::new(&server, "badbody").await;
    let good = progress(&me.device, 10.0, 1);
    let cases = [
        ("percent", json!(140)),
        ("percent", json!(-1)),
        ("percent", json!("ten")),
        ("event_id", json!("not-a-uuid")),
        ("device_id", json!(42)),
        ("locator", json!("x".repeat(4097))),
        ("status", json!("halfway")),
        ("client_ts", json!("yesterday")),
        ("rewind", json!("yes")),
    ];
    for (field, value) in cases {
        let mut b = good.clone();
        b[field] = value;
        let r = me.write(&me.book, b).await;
        let msg = r.assert_error(400, "bad_request");
        assert!(msg.starts_with(field), "{field}: {msg}");
    }
    for missing in ["event_id", "device_id", "percent", "client_ts"] {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(missing);
        let msg = me
            .write(&me.book, b)
            .await
            .assert_error(400, "bad_request")
            .to_string();
        assert!(msg.contains(missing), "{missing}: {msg}");
    }
    let mut edge = good.clone();
    edge["locator"] = json!("y".repeat(4096));
    assert_eq!(
        me.write(&me.book, edge).await.status,
        200,
        "4096 bytes is allowed"
    );
    me.write("not-a-book", good.clone())
        .await
        .assert_error(404, "not_found");
    me.write(&uuid::Uuid::new_v4().to_string(), good)
        .await
        .assert_error(404, "not_found");
    // Nothing half-written: only the one good write is in the feed.
    let feed = me.api.get("/v1/progress/changes?cursor=0").await;
    assert_eq!(feed.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn changes_feed() {
    let server = Server::start();
    let me = Reader::new(&server, "feed").await;
    let b2 = me.add_book("Second").await;
    let empty = me.api.get("/v1/progress/changes").await;
    assert_eq!(empty.body["items"], json!([]));
    let start = empty.body["next_cursor"].as_str().unwrap().to_string();

    for (i, pct) in [10.0, 20.0, 5.0, 30.0].iter().enumerate() {
        me.write(&me.book, progress(&me.device, *pct, i as i64))
            .await;
    }
    me.write(&b2, progress(&me.device, 50.0, 10)).await;

    let all = me
        .api
        .get(&format!("/v1/progress/changes?cursor={start}"))
        .await;
    let items = all.body["items"].as_array().unwrap();
    let pcts: Vec<f64> = items
        .iter()
        .map(|s| s["percent"].as_f64().unwrap())
        .collect();
    assert_eq!(
        pcts,
        vec![10.0, 20.0, 30.0, 50.0],
        "applied changes only, in order"
    );
    let end = all.body["next_cursor"].as_str().unwrap().to_string();
    let none = me
        .api
        .get(&format!("/v1/progress/changes?cursor={end}"))
        .await;
    assert_eq!(none.body["items"], json!([]));
    assert_eq!(none.body["next_cursor"], end.as_str());

    // Paging by limit.
    let mut cursor = start.clone();
    let mut paged = Vec::new();
    loop {
        let r = me
            .api
            .get(&format!("/v1/progress/changes?cursor={cursor}&limit=3"))
            .await;
        let items = r.body["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        paged.extend(items.iter().map(|s| s["percent"].as_f64().unwrap()));
        cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(paged, pcts);

    // No cursor: the current state of every book, and a cursor to follow from.
    let snap = me.api.get("/v1/progress/changes").await;
    let mut now: Vec<f64> = snap.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["percent"].as_f64().unwrap())
        .collect();
    now.sort_by(f64::total_cmp);
    assert_eq!(now, vec![30.0, 50.0]);
    me.write(&me.book, progress(&me.device, 31.0, 20)).await;
    let next = me
        .api
        .get(&format!(
            "/v1/progress/changes?cursor={}",
            snap.body["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(next.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(next.body["items"][0]["percent"], 31.0);

    // The snapshot pages by `limit` too, then hands over to the log: a write made while a
    // client pages through the snapshot still reaches it.
    let page1 = me.api.get("/v1/progress/changes?limit=1").await;
    assert_eq!(page1.body["items"].as_array().unwrap().len(), 1);
    let c1 = page1.body["next_cursor"].as_str().unwrap().to_string();
    assert!(c1.starts_with("snap."), "{c1}");
    me.write(&b2, progress(&me.device, 60.0, 30)).await;
    let page2 = me
        .api
        .get(&format!("/v1/progress/changes?limit=1&cursor={c1}"))
        .await;
    assert_eq!(page2.body["items"].as_array().unwrap().len(), 1);
    assert_ne!(
        page2.body["items"][0]["book_id"],
        page1.body["items"][0]["book_id"]
    );
    let c2 = page2.body["next_cursor"].as_str().unwrap().to_string();
    assert!(
        c2.parse::<u64>().is_ok(),
        "after the snapshot comes the log: {c2}"
    );
    let tail = me
        .api
        .get(&format!("/v1/progress/changes?cursor={c2}"))
        .await;
    assert!(
        tail.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["percent"] == 60.0),
        "the write made during the snapshot arrives through the log: {}",
        tail.body
    );
    me.api
        .get("/v1/progress/changes?cursor=snap.1.nope")
        .await
        .assert_error(400, "bad_request");

    me.api
        .get("/v1/progress/changes?cursor=abc")
        .await
        .assert_error(400, "bad_request");
    me.api
        .get("/v1/progress/changes?limit=9999")
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn idle_actors_stop_and_reload_their_state() {
    let server = Server::start_with(&[("DOGEAR_ACTORS__IDLE_TIMEOUT_SECS", "1")]);
    let me = Reader::new(&server, "idle").await;
    assert_eq!(
        me.write(&me.book, progress(&me.device, 33.0, 1))
            .await
            .status,
        200
    );
    let active = |text: &str, kind: &str| -> f64 {
        let key = format!("dogear_actors_active{{kind=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    let m = server.metrics().await;
    assert_eq!(active(&m, "user"), 1.0);
    let mut stopped = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let m = server.metrics().await;
        if active(&m, "user") == 0.0 && active(&m, "library") == 0.0 {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "idle actors stop");
    // Reactivated from storage: state and version continue.
    let r = me.write(&me.book, progress(&me.device, 34.0, 2)).await;
    assert_eq!(r.body["state"]["version"], 2);
    let dup = me.write(&me.book, progress(&me.device, 34.0, 2)).await;
    assert_eq!(dup.body["reason"], "stale");
}
