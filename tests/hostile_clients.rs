//! A running node probed as an attacker would: idle and dripping connections, a second node on
//! the same data directory, files other local users could read.

use dogear_e2e::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// A plain `GET /health` on a fresh connection, answered within `wait`.
fn health(server: &Server, wait: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect(addr(server)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// True once the server has closed `s` (a read returns 0 bytes or an error).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn idle_and_dripping_connections_are_closed_and_health_still_answers() {
    let server = Server::start_with(&[
        ("DOGEAR_SERVER__HEADER_READ_TIMEOUT_SECS", "2"),
        ("DOGEAR_SERVER__MAX_CONNECTIONS", "64"),
    ]);
    // Three times the cap: connections that send nothing at all...
    let mut idle: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(addr(&server)).expect("connect"))
        .collect();
    // ...and ones that drip a header line every 500 ms, never finishing the head.
    let mut drip: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(addr(&server)).expect("connect");
            s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let dripper = std::thread::spawn(move || {
        for i in 0..16 {
            for s in &mut drip {
                let _ = s.write_all(format!("X-Drip-{i}: y\r\n").as_bytes());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        drip
    });
    // While they are all held, a real client is still answered: the first held connections
    // time out and make room for it.
    let answer = health(&server, Duration::from_secs(15)).expect("/health answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""status":"ok""#), "{answer}");

    // Every idle connection is closed by the server, not left open.
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        assert!(closed_by_server(s), "an idle connection stayed open");
    }
    // A dripping client is cut off too, long before it stops dripping (8 s of drip).
    let mut drip = dripper.join().unwrap();
    for s in &mut drip {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert!(closed_by_server(s), "a dripping connection stayed open");
    }
    // A kept-alive connection idle past the timeout is closed as well.
    let mut s = TcpStream::connect(addr(&server)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_by_server(&mut s),
        "an idle kept-alive connection stayed open"
    );
    // And the node is still fine.
    let answer = health(&server, Duration::from_secs(5)).expect("/health answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn the_data_directory_is_private_and_held_by_one_node() {
    let server = Server::start();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.data), 0o700, "data directory");
    for name in ["dogear.db", "jwt.secret", "dogear.lock"] {
        assert_eq!(mode(&server.data.join(name)), 0o600, "{name}");
    }
    for entry in std::fs::read_dir(&server.data).unwrap().flatten() {
        let m = mode(&entry.path());
        assert_eq!(m & 0o077, 0, "{} is {m:o}", entry.path().display());
    }

    // A second node on the same data directory refuses to start, naming the lock.
    let out = Command::new(dogear_e2e::dogear_bin())
        .arg("--data")
        .arg(&server.data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("dogear.lock") && err.contains("in use"),
        "{err}"
    );
    assert!(
        err.contains(&server.pid().to_string()),
        "names the holder: {err}"
    );
    // The first is untouched.
    assert!(
        health(&server, Duration::from_secs(5))
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );

    // The lock dies with its holder: after SIGKILL a new node starts on the same directory.
    let mut server = server;
    server.kill9();
    server.restart();
    assert!(
        health(&server, Duration::from_secs(5))
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}

#[test]
fn an_existing_loose_data_directory_is_tightened() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("dogear.db"), b"").unwrap();
    std::fs::set_permissions(
        data.join("dogear.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = Command::new(dogear_e2e::dogear_bin())
        .arg("--data")
        .arg(&data)
        .args(["user", "add", "ada", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"correct horse battery\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("dogear.db")), 0o600);
}

#[tokio::test]
async fn negative_zero_control_characters_and_full_width_search() {
    let server = Server::start();
    let me = dogear_e2e::Reader::new(&server, "probe").await;

    // `-0.0` is a valid percent, but it is answered (and stored) as 0.
    let mut body = dogear_e2e::progress(&me.device, 0.0, 1_000);
    body["percent"] = dogear_e2e::serde_json::json!(-0.0);
    let raw = me
        .api
        .http
        .post(format!("{}/v1/books/{}/progress", me.api.base, me.book))
        .bearer_auth(me.token())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let text = raw.text().await.unwrap();
    assert!(text.contains("\"percent\":0.0"), "{text}");
    assert!(!text.contains("\"percent\":-0"), "no negative zero: {text}");
    let read = me.api.get(&format!("/v1/books/{}/progress", me.book)).await;
    assert_eq!(
        read.body["state"]["percent"].to_string(),
        "0.0",
        "{}",
        read.body
    );

    // Control characters in metadata are refused, naming the field; nothing is created.
    for (field, body) in [
        (
            "title",
            dogear_e2e::serde_json::json!({"title": "Ham\u{0}let"}),
        ),
        (
            "authors",
            dogear_e2e::serde_json::json!({"title": "Ok", "authors": ["Wil\u{1b}[31mliam"]}),
        ),
        (
            "identifiers",
            dogear_e2e::serde_json::json!({"title": "Ok", "identifiers": {"isbn": "97\u{0}8"}}),
        ),
    ] {
        let r = me.api.post("/v1/books", body).await;
        let msg = r.assert_error(400, "bad_request");
        assert!(msg.starts_with(field), "{field}: {msg}");
    }
    let r = me
        .api
        .patch(
            &format!("/v1/books/{}", me.book),
            dogear_e2e::serde_json::json!({"title": "Hamlet\u{0}"}),
        )
        .await;
    assert!(r.assert_error(400, "bad_request").starts_with("title"));
    let r = me
        .api
        .patch(
            &format!("/v1/books/{}", me.book),
            dogear_e2e::serde_json::json!({"tags": ["bell\u{7}"]}),
        )
        .await;
    assert!(r.assert_error(400, "bad_request").starts_with("tags"));
    let r = me
        .api
        .patch(
            &format!("/v1/books/{}", me.book),
            dogear_e2e::serde_json::json!({"description": "two\nlines\tand a tab"}),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "line breaks are fine in a description: {}",
        r.body
    );
    assert_eq!(me.api.all_books("").await.len(), 1, "nothing half-made");

    // Full-width letters and ligatures are folded: they find the plain title.
    for q in ["ｈａｍｌｅｔ", "ＨＡＭ", "Ｓｈａｋｅｓｐｅａｒｅ"] {
        let found = me
            .api
            .all_books(&format!("q={}", dogear_e2e::encode(q)))
            .await;
        assert_eq!(found.len(), 1, "{q}");
    }
    // And the index is folded the same way: a ligature or full-width title is found by
    // plain letters, and by what it looks like.
    let folio = me.add_book("The ﬁrst ＦＯＬＩＯ").await;
    for q in ["first folio", "ﬁrst", "ｆｏｌｉｏ", "FOLIO"] {
        let found = me
            .api
            .all_books(&format!("q={}", dogear_e2e::encode(q)))
            .await;
        assert_eq!(found.len(), 1, "{q}: {found:?}");
        assert_eq!(found[0]["id"], folio.as_str());
        assert_eq!(
            found[0]["title"], "The ﬁrst ＦＯＬＩＯ",
            "stored as written"
        );
    }
}

/// Random Kobo tokens: refused with `429` after a budget per address, with one warning in
/// the log instead of a line per guess; a real Kobo elsewhere is unaffected.
#[tokio::test]
async fn guessing_kobo_tokens_is_rate_limited_and_quiet() {
    let server = Server::start();
    let me = dogear_e2e::Reader::new(&server, "kobo-owner").await;
    let r = me
        .api
        .post(
            "/v1/kobo/tokens",
            dogear_e2e::serde_json::json!({"device_name": "Libra"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let guesser = from([127, 0, 0, 5]);
    let mut statuses = Vec::new();
    for i in 0..70 {
        let fake = format!("{i:064x}");
        let r = guesser
            .get(format!("{}/kobo/{fake}/v1/initialization", server.base))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..60].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[60..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = guesser
        .get(format!("{}/kobo/{token}/v1/initialization", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "the guessing address is refused outright");
    assert!(r.headers().get("retry-after").is_some());
    // The reader's own Kobo, at home, syncs on.
    let r = from([127, 0, 0, 6])
        .get(format!("{}/kobo/{token}/v1/initialization", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = server.log();
    assert_eq!(
        log.matches("too many unknown kobo tokens").count(),
        1,
        "one warning for the address"
    );
    assert!(
        !log.contains("unknown or revoked token"),
        "no line per guess at info"
    );
    assert!(!log.contains(&token), "tokens never logged");
}

/// Redis configured but not there: logins work, failures are counted on the node (the sixth
/// is still refused), and the fallback shows in a metric.
#[tokio::test]
async fn login_limits_fall_back_to_the_node_without_redis() {
    let server = dogear_e2e::Server::start_with(&[("DOGEAR_REDIS__URL", "redis://127.0.0.1:1")]);
    let me = dogear_e2e::Reader::new(&server, "noredis").await;
    let login = |pw: &'static str| {
        let c = server.client();
        async move {
            c.post(
                "/v1/auth/login",
                dogear_e2e::serde_json::json!({"username": "noredis", "password": pw}),
            )
            .await
        }
    };
    assert_eq!(login("correct horse battery").await.status, 200);
    for _ in 0..5 {
        assert_eq!(login("wrong").await.status, 401);
    }
    login("wrong").await.assert_error(429, "rate_limited");
    let m = server.metrics().await;
    assert!(
        dogear_e2e::metric(&m, "dogear_redis_fallbacks_total{what=\"login_limits\"}") > 0.0,
        "the fallback is counted"
    );
    assert!(
        server.log().contains("redis unavailable"),
        "and said once in the log"
    );
    drop(me);
}
