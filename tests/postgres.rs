//! A real `dogear` process on PostgreSQL (`storage.backend = "postgres"`): every command works
//! against the configured store, and what the embedded store promises (nothing acknowledged
//! is lost, a repeated event id is one write) holds there too.

use dogear_e2e::{
    Api, Reader, Server, fixtures, fresh_postgres, progress, run_cli, serde_json::Value,
    write_stream,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn pg_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DOGEAR_STORAGE__BACKEND", "postgres".to_string()),
        ("DOGEAR_STORAGE__POSTGRES_URL", url.to_string()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_add_serve_import_and_sigkill_on_postgres() {
    let url = fresh_postgres().await;
    let env = pg_env(&url);
    let env = as_refs(&env);

    // `dogear user add` writes the account into PostgreSQL, not into a data directory.
    let cli_data = tempfile::tempdir().unwrap();
    let d = cli_data.path().to_str().unwrap();
    dogear_e2e::add_admin(&env);

    // `dogear import` into root's library, through the same database.
    let books = tempfile::tempdir().unwrap();
    for name in ["apache-2.0.epub", "devils-dictionary.epub"] {
        std::fs::copy(
            fixtures().join("books/good").join(name),
            books.path().join(name),
        )
        .unwrap();
    }
    let (code, out, err) = run_cli(
        &["--data", d, "import", books.path().to_str().unwrap()],
        &env,
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported 2"), "{out}");
    assert!(
        !cli_data.path().join("dogear.db").exists(),
        "no SQLite file is made on the postgres backend"
    );

    let mut server = Server::start_with(&env);
    assert!(
        !server.data.join("dogear.db").exists(),
        "the node keeps no SQLite file"
    );
    // The account made by the CLI logs in on the server; the imported books are there.
    let login = server
        .client()
        .post(
            "/v1/auth/login",
            dogear_e2e::serde_json::json!({"username": "root", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let root = server
        .client()
        .with_token(login.body["access_token"].as_str().unwrap());
    let titles: Vec<String> = root
        .all_books("")
        .await
        .iter()
        .map(|b| b["title"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(titles.len(), 2, "{titles:?}");
    let found = root.get("/v1/books?q=devil").await;
    assert_eq!(found.status, 200);
    assert_eq!(
        found.body["items"].as_array().map(Vec::len),
        Some(1),
        "search works on PostgreSQL: {}",
        found.body
    );

    // A stream of writes, SIGKILL in the middle: every acknowledged write is there after.
    let me = Reader::new(&server, "pgreader").await;
    let acked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let tasks: Vec<_> = (0..2)
        .map(|w| {
            write_stream(
                me.api.clone(),
                me.book.clone(),
                me.device.clone(),
                w,
                acked.clone(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 10, "the stream ran ({} acks)", acked.len());
    server.restart();
    let api = Api {
        base: server.base.clone(),
        ..me.api.clone()
    };
    let state = api.get(&format!("/v1/books/{}/progress", me.book)).await;
    assert_eq!(state.status, 200, "{}", state.body);
    let max_acked = acked
        .iter()
        .map(|b| b["percent"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let now = state.body["state"]["percent"].as_f64().unwrap();
    assert!(
        now >= max_acked,
        "state {now} lost acknowledged {max_acked}"
    );
    // An acknowledged event sent again after the restart is recognised, not applied twice.
    let last = acked.last().unwrap().clone();
    let again = api
        .post(&format!("/v1/books/{}/progress", me.book), last)
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["reason"], "duplicate", "{}", again.body);
}

/// Fencing: two nodes that both believe they own a reader (here two nodes on one database
/// with no cluster between them, the worst case of a partition) each hold an actor for the
/// reader and may hold an old copy of its state. The store's version checks refuse the stale
/// writer, which reloads and decides again: the rules hold exactly as on one node, no version
/// is applied twice, and nothing acknowledged is lost. (Reads from the stale node may be old
/// until it writes: serving each reader from one owner is the cluster's job.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database_keep_the_rules() {
    let url = fresh_postgres().await;
    let mut env = pg_env(&url);
    env.push((
        "DOGEAR_AUTH__JWT_SECRET",
        "a-secret-both-nodes-share-0123456789".to_string(),
    ));
    let env = as_refs(&env);
    let a = Server::start_with(&env);
    let b = Server::start_with(&env);
    let me = Reader::new(&a, "twonodes").await;
    let on = |s: &Server| Api {
        base: s.base.clone(),
        ..me.api.clone()
    };
    let (api_a, api_b) = (on(&a), on(&b));
    let path = format!("/v1/books/{}/progress", me.book);

    // Round robin, always forward: every write applied, versions one apart.
    let mut version = 0;
    for i in 0..10 {
        let api = if i % 2 == 0 { &api_a } else { &api_b };
        let r = api
            .post(&path, progress(&me.device, 10.0 + i as f64, i))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["applied"], true, "write {i}: {}", r.body);
        let v = r.body["state"]["version"].as_i64().unwrap();
        assert_eq!(v, version + 1, "write {i} on the next version");
        version = v;
    }
    // B last saw 19 %; A moves to 40 %; 30 % on B is behind the real state, not B's copy.
    let r = api_a.post(&path, progress(&me.device, 40.0, 100)).await;
    assert_eq!(r.body["applied"], true, "{}", r.body);
    let r = api_b.post(&path, progress(&me.device, 30.0, 101)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["applied"], false, "B reloaded: {}", r.body);
    assert_eq!(r.body["reason"], "behind");
    assert_eq!(r.body["state"]["percent"], 40.0);
    // One event id through both nodes is one write.
    let once = progress(&me.device, 45.0, 102);
    let first = api_a.post(&path, once.clone()).await;
    assert_eq!(first.body["applied"], true);
    let second = api_b.post(&path, once).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["reason"], "duplicate", "{}", second.body);
    assert_eq!(
        second.body["state"]["version"],
        first.body["state"]["version"]
    );

    // Both nodes at once, each with its own client stream: every applied write is in the
    // log once, in version order, and the state is at least the highest acknowledged.
    let acked: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut tasks = Vec::new();
    for (n, api) in [api_a.clone(), api_b.clone()].into_iter().enumerate() {
        let (path, device, acked) = (path.clone(), me.device.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for step in 0..60i64 {
                let pct = 50.0 + (step * 2 + n as i64) as f64 * 0.5;
                let r = api.post(&path, progress(&device, pct, 1000 + step)).await;
                // 503 (the other node kept winning) is a refusal a client retries: fine.
                if r.status == 200 && r.body["applied"] == true {
                    acked.lock().unwrap().push(pct);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "{} applied", acked.len());
    let max = acked.iter().cloned().fold(0.0, f64::max);
    // The log as stored: applied events carry versions 1, 2, 3, ... (none twice, none
    // skipped) and their percents never go back, across both nodes.
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = db
        .query(
            "SELECT state FROM progress_events WHERE applied ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let states: Vec<Value> = rows
        .iter()
        .map(|r| dogear_e2e::serde_json::from_str(r.get::<_, &str>(0)).unwrap())
        .collect();
    let versions: Vec<i64> = states
        .iter()
        .map(|s| s["version"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert_eq!(
        versions, expected,
        "each version applied exactly once, in order"
    );
    let percents: Vec<f64> = states
        .iter()
        .map(|s| s["percent"].as_f64().unwrap())
        .collect();
    assert!(
        percents.windows(2).all(|w| w[1] >= w[0]),
        "forward only across nodes: {percents:?}"
    );
    assert_eq!(
        percents.last().copied(),
        Some(max),
        "the highest acknowledged write is the state"
    );
    // A node that held an old copy serves the stored state again once it writes.
    for api in [&api_a, &api_b] {
        let r = api.post(&path, progress(&me.device, 1.0, 5000)).await;
        assert_eq!(r.body["reason"], "behind", "{}", r.body);
        assert_eq!(r.body["state"]["percent"], max, "{}", r.body);
    }
}

/// On PostgreSQL too: sharing actions leave a chained audit log, the database refuses to
/// change it, and `dogear audit verify` names the entry someone changed after dropping that
/// guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_finds_an_edit_on_postgres() {
    use dogear_e2e::serde_json::json;
    let url = fresh_postgres().await;
    let env = pg_env(&url);
    let env = as_refs(&env);
    let mut server = Server::start_with(&env);
    let owner = Reader::new(&server, "pg_au_owner").await;
    let friend = Reader::new(&server, "pg_au_friend").await;
    let lib = owner
        .api
        .post("/v1/libraries", json!({"name": "On PostgreSQL"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let inv = owner
        .api
        .post(
            &format!("/v1/libraries/{lib}/invites"),
            json!({"role": "reader"}),
        )
        .await;
    let joined = friend
        .api
        .post("/v1/libraries/join", json!({"code": inv.body["code"]}))
        .await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    owner
        .api
        .patch(&format!("/v1/libraries/{lib}"), json!({"name": "Renamed"}))
        .await;
    assert_eq!(server.terminate(), Some(0));
    let (code, out, err) = run_cli(&["audit", "verify"], &env, None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("4 entries"), "{out}");

    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let refused = db
        .execute(
            "UPDATE audit_log SET name = 'x' WHERE library_id = $1 AND seq = 4",
            &[&lib],
        )
        .await;
    assert!(
        refused
            .unwrap_err()
            .as_db_error()
            .is_some_and(|e| e.message().contains("append-only"))
    );
    db.batch_execute("DROP TRIGGER audit_log_append_only ON audit_log")
        .await
        .unwrap();
    db.execute(
        "UPDATE audit_log SET actor = $2 WHERE library_id = $1 AND seq = 3",
        &[&lib, &owner.user_id],
    )
    .await
    .unwrap();
    let (code, out, err) = run_cli(&["audit", "verify"], &env, None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("library {lib} entry 3")), "{out}");
}
