//! `/v1/sync` with real WebSocket clients: live fan-out between devices, acks, resume by
//! cursor, bad frames, refusals, and the 4008 close of a client that cannot keep up.

use dogear_e2e::tungstenite::Message;
use dogear_e2e::{Reader, Server, Socket, progress, serde_json::json};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;

fn frame(book: &str, mut body: dogear_e2e::serde_json::Value) -> dogear_e2e::serde_json::Value {
    body["type"] = json!("progress");
    body["book_id"] = json!(book);
    body
}

#[tokio::test]
async fn two_devices_see_each_others_writes_live() {
    let server = Server::start();
    let me = Reader::new(&server, "live").await;
    let phone = me.add_device("mobile").await;
    let (mut kobo_ws, hello) = Socket::connect(&server, me.token(), &me.device).await;
    assert_eq!(hello["cursor"], "0");
    let (mut phone_ws, _) = Socket::connect(&server, me.token(), &phone).await;

    // The Kobo writes over its socket: it gets the ack, the phone gets the change.
    let body = frame(&me.book, progress(&me.device, 12.0, 1));
    kobo_ws.send(body.clone()).await;
    let ack = kobo_ws.next_json().await.expect("ack");
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["event_id"], body["event_id"]);
    assert_eq!(ack["applied"], true);
    assert_eq!(ack["state"]["percent"], 12.0);
    let pushed = phone_ws.next_json().await.expect("push");
    assert_eq!(pushed["type"], "progress");
    assert_eq!(pushed["origin_device_id"], me.device);
    assert_eq!(pushed["state"]["percent"], 12.0);
    assert_eq!(pushed["state"]["book_id"], me.book);

    // A REST write from the phone reaches both sockets (the REST call has no socket).
    me.write(&me.book, progress(&phone, 20.0, 2)).await;
    for ws in [&mut kobo_ws, &mut phone_ws] {
        let p = ws.next_json().await.expect("push");
        assert_eq!(p["state"]["percent"], 20.0);
        assert_eq!(p["origin_device_id"], phone);
    }
    // A write that is not applied is acked but pushed to nobody.
    kobo_ws
        .send(frame(&me.book, progress(&me.device, 1.0, 3)))
        .await;
    let ack = kobo_ws.next_json().await.unwrap();
    assert_eq!(
        (ack["applied"].clone(), ack["reason"].clone()),
        (json!(false), json!("behind"))
    );
    assert!(
        phone_ws
            .next_json_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    // The writing socket got nothing but its ack.
    assert!(
        kobo_ws
            .next_json_within(Duration::from_millis(300))
            .await
            .is_none()
    );

    let m = server.metrics().await;
    assert!(m.contains("dogear_ws_connections 2"), "{m}");
}

#[tokio::test]
async fn resume_after_disconnect() {
    let server = Server::start();
    let me = Reader::new(&server, "resume").await;
    let phone = me.add_device("mobile").await;
    let (mut phone_ws, hello) = Socket::connect(&server, me.token(), &phone).await;
    me.write(&me.book, progress(&me.device, 10.0, 1)).await;
    let p = phone_ws.next_json().await.unwrap();
    let cursor = p["cursor"].as_str().unwrap().to_string();
    assert_ne!(cursor, hello["cursor"].as_str().unwrap());
    drop(phone_ws);

    // Offline: three changes and one write that does not apply.
    for (pct, t) in [(20.0, 2), (30.0, 3), (5.0, 4), (40.0, 5)] {
        me.write(&me.book, progress(&me.device, pct, t)).await;
    }
    let (mut phone_ws, _) = Socket::connect(&server, me.token(), &phone).await;
    phone_ws
        .send(json!({"type": "resume", "cursor": cursor}))
        .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let f = phone_ws.next_json().await.expect("backlog");
        assert_eq!(f["type"], "progress");
        got.push(f["state"]["percent"].as_f64().unwrap());
    }
    assert_eq!(got, vec![20.0, 30.0, 40.0]);
    assert!(
        phone_ws
            .next_json_within(Duration::from_millis(300))
            .await
            .is_none(),
        "no repeats"
    );
    // ...then live.
    me.write(&me.book, progress(&me.device, 50.0, 6)).await;
    assert_eq!(
        phone_ws.next_json().await.unwrap()["state"]["percent"],
        50.0
    );
    // Resume from a cursor equal to the head sends nothing.
    phone_ws
        .send(json!({"type": "resume", "cursor": "999999"}))
        .await;
    assert!(
        phone_ws
            .next_json_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_socket_stays_open() {
    let server = Server::start();
    let me = Reader::new(&server, "badframes").await;
    let (mut ws, _) = Socket::connect(&server, me.token(), &me.device).await;
    let mut pct_too_big = frame(&me.book, progress(&me.device, 10.0, 1));
    pct_too_big["percent"] = json!(140);
    let cases = vec![
        Message::text("not json"),
        Message::text("[1,2]"),
        Message::text(r#"{"no":"type"}"#),
        Message::text(r#"{"type":"dance"}"#),
        Message::text(pct_too_big.to_string()),
        Message::text(r#"{"type":"resume","cursor":"x"}"#),
        Message::binary(vec![1u8, 2, 3]),
    ];
    for m in cases {
        ws.send_raw(m).await;
        let e = ws.next_json().await.expect("error frame");
        assert_eq!(e["type"], "error", "{e}");
        assert!(e["code"].is_string() && e["message"].is_string(), "{e}");
    }
    let e = {
        ws.send(pct_too_big.clone()).await;
        ws.next_json().await.unwrap()
    };
    assert!(e["message"].as_str().unwrap().starts_with("percent"), "{e}");
    assert_eq!(e["event_id"], pct_too_big["event_id"]);
    // Someone else's book over the socket: not_found, nothing revealed.
    ws.send(frame(
        &uuid::Uuid::new_v4().to_string(),
        progress(&me.device, 10.0, 1),
    ))
    .await;
    assert_eq!(ws.next_json().await.unwrap()["code"], "not_found");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await.unwrap()["type"], "pong");
    // Still open and working.
    ws.send(frame(&me.book, progress(&me.device, 10.0, 1)))
        .await;
    assert_eq!(ws.next_json().await.unwrap()["type"], "ack");
}

#[tokio::test]
async fn refused_upgrades() {
    use dogear_e2e::tungstenite::client::IntoClientRequest;
    let server = Server::start();
    let me = Reader::new(&server, "refused").await;
    let other = Reader::new(&server, "refused2").await;
    let status = |url: String, token: Option<String>| async move {
        let mut req = url.into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok(_) => 101,
            Err(dogear_e2e::tungstenite::Error::Http(r)) => r.status().as_u16(),
            Err(e) => panic!("unexpected {e}"),
        }
    };
    let base = format!("{}/v1/sync", server.ws_base);
    assert_eq!(
        status(format!("{base}?device_id={}", me.device), None).await,
        401
    );
    assert_eq!(
        status(
            format!("{base}?device_id={}", me.device),
            Some("junk".into())
        )
        .await,
        401
    );
    assert_eq!(status(base.clone(), Some(me.token().into())).await, 400);
    assert_eq!(
        status(
            format!("{base}?device_id={}", other.device),
            Some(me.token().into())
        )
        .await,
        400
    );
    // Browsers pass the token in the query.
    assert_eq!(
        status(
            format!("{base}?device_id={}&access_token={}", me.device, me.token()),
            None
        )
        .await,
        101
    );
    // A plain GET is not an upgrade.
    me.api
        .get("/v1/sync")
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_closed_with_4008() {
    let server = Server::start_with(&[("DOGEAR_ACTORS__SOCKET_QUEUE", "4")]);
    let me = Reader::new(&server, "slow").await;
    let phone = me.add_device("mobile").await;
    let (mut slow, _) = Socket::connect(&server, me.token(), &phone).await;
    let (fast, _) = Socket::connect(&server, me.token(), &me.device).await;
    let (mut fast_tx, mut fast_rx) = fast.ws.split();
    // Large frames fill the slow socket's TCP buffers, then its bounded queue. The fast
    // socket's acks are read as they come, so only the slow one falls behind.
    let locator = "l".repeat(4000);
    let n = 3000;
    let book = me.book.clone();
    let device = me.device.clone();
    let writer = async move {
        for i in 0..n {
            let mut body = frame(&book, progress(&device, i as f64 * 100.0 / n as f64, i));
            body["locator"] = json!(locator);
            fast_tx.send(Message::text(body.to_string())).await.unwrap();
        }
        fast_tx
    };
    let reader = async move {
        let mut acks = 0;
        while acks < n {
            match tokio::time::timeout(Duration::from_secs(30), fast_rx.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => acks += 1,
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        acks
    };
    let (_tx, acks) = tokio::join!(writer, reader);
    assert_eq!(acks, n, "every write was acked on the fast socket");
    let code = slow.close_code(Duration::from_secs(30)).await;
    assert_eq!(code, Some(4008));
    // It resumes by cursor and gets the latest state.
    let (mut again, _) = Socket::connect(&server, me.token(), &phone).await;
    again.send(json!({"type": "resume", "cursor": "0"})).await;
    let first = again.next_json().await.unwrap();
    assert_eq!(first["type"], "progress");
    let m = server.metrics().await;
    assert!(m.contains("dogear_ws_overflow_closes_total 1"), "{m}");
}

/// A frame over the limit closes with 1009 and text that is not UTF-8 with 1007, each after
/// an error frame saying why; the node goes on serving.
#[tokio::test]
async fn oversized_and_invalid_utf8_frames_close_with_their_codes() {
    use dogear_e2e::tungstenite::protocol::frame::Frame;
    use dogear_e2e::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = Server::start();
    let me = Reader::new(&server, "framer").await;

    let (mut s, _) = Socket::connect(&server, me.token(), &me.device).await;
    let big = format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    s.send_raw(Message::text(big)).await;
    let err = s.next_json().await.expect("an error frame first");
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["code"], "payload_too_large", "{err}");
    assert!(
        err["message"].as_str().unwrap().starts_with("frame:"),
        "{err}"
    );
    assert_eq!(s.close_code(Duration::from_secs(5)).await, Some(1009));

    let (mut s, _) = Socket::connect(&server, me.token(), &me.device).await;
    let bad = Frame::message(
        vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'],
        OpCode::Data(Data::Text),
        true,
    );
    s.send_raw(Message::Frame(bad)).await;
    let err = s.next_json().await.expect("an error frame first");
    assert_eq!(err["code"], "bad_request", "{err}");
    assert!(err["message"].as_str().unwrap().contains("UTF-8"), "{err}");
    assert_eq!(s.close_code(Duration::from_secs(5)).await, Some(1007));

    // Still serving.
    let (mut s, _) = Socket::connect(&server, me.token(), &me.device).await;
    s.send(serde_json::json!({"type": "ping"})).await;
    assert_eq!(s.next_json().await.unwrap()["type"], "pong");
}
