//! Three `dogear` processes on loopback as one cluster (PostgreSQL, S3): any node serves any
//! request, one owner applies each reader's writes, live changes cross nodes, and a node that
//! dies hands its readers over without losing an acknowledged write.

use dogear_e2e::cluster::Nodes;
use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Api, Reader, Socket, progress};
use std::time::Duration;

fn on(api: &Api, base: &str) -> Api {
    Api {
        base: base.to_string(),
        ..api.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_one_reader_through_one_owner() {
    let (c, _plan) = Nodes::start(3).await;
    // Every answer says which node gave it; the admin sees three members up everywhere.
    for (i, id) in c.ids.iter().enumerate() {
        let r = c.admin_on(i).get("/v1/cluster").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["node_id"], id.as_str());
        assert_eq!(r.headers["x-dogear-node"], id.as_str());
        let members = r.body["members"].as_array().unwrap();
        assert_eq!(members.len(), 3, "{}", r.body);
        assert!(members.iter().all(|m| m["state"] == "up"), "{}", r.body);
    }
    let me = Reader::new(&c.nodes[0], "roundrobin").await;
    let forbidden = on(&me.api, &c.nodes[1].base).get("/v1/cluster").await;
    assert_eq!(forbidden.status, 403, "members are for administrators");
    let apis: Vec<Api> = c.nodes.iter().map(|n| on(&me.api, &n.base)).collect();
    let path = format!("/v1/books/{}/progress", me.book);

    // Writes sent round robin through all three: one owner applies them, in order.
    let mut version = 0;
    for i in 0..12 {
        let r = apis[i % 3]
            .post(&path, progress(&me.device, 5.0 + i as f64, i as i64))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["applied"], true, "write {i}: {}", r.body);
        let v = r.body["state"]["version"].as_i64().unwrap();
        assert_eq!(
            v,
            version + 1,
            "write {i} through node {} is the next version",
            i % 3
        );
        version = v;
        // Every node answers a read with what was just written: one owner, no copies.
        for api in &apis {
            let s = api.get(&path).await;
            assert_eq!(s.body["state"]["version"], v, "{}", s.body);
        }
    }
    let owners = c.user_actor_nodes().await;
    assert_eq!(
        owners.len(),
        1,
        "one node runs the reader's actor: {owners:?}"
    );
    // Behind is behind whichever node is asked; an event id repeated elsewhere is one write.
    let back = apis[(owners[0] + 1) % 3]
        .post(&path, progress(&me.device, 1.0, 100))
        .await;
    assert_eq!(back.body["reason"], "behind", "{}", back.body);
    let once = progress(&me.device, 50.0, 101);
    let first = apis[0].post(&path, once.clone()).await;
    let again = apis[2].post(&path, once).await;
    assert_eq!(first.body["applied"], true);
    assert_eq!(again.body["reason"], "duplicate", "{}", again.body);
    assert_eq!(
        again.body["state"]["version"],
        first.body["state"]["version"]
    );
    // The nodes that are not the owner forwarded.
    for (i, n) in c.nodes.iter().enumerate() {
        if i != owners[0] {
            let m = n.metrics().await;
            assert!(
                m.lines()
                    .any(|l| l.starts_with("dogear_cluster_forwarded_total{kind=\"user\"}")),
                "node {i} forwarded user requests"
            );
        }
    }

    // Live changes cross nodes: a socket on one node that is not the owner hears a write
    // made through the other one, and one made through the owner, in order.
    let (owner, b, other) = (owners[0], (owners[0] + 1) % 3, (owners[0] + 2) % 3);
    let phone = me.add_device("mobile").await;
    let (mut ws, _hello) = Socket::connect(&c.nodes[b], me.token(), &phone).await;
    let r = apis[other]
        .post(&path, progress(&me.device, 60.0, 200))
        .await;
    assert_eq!(r.body["applied"], true, "{}", r.body);
    let pushed = next_progress(&mut ws).await;
    assert_eq!(pushed["state"]["percent"], 60.0, "{pushed}");
    let r = apis[owner]
        .post(&path, progress(&me.device, 61.0, 201))
        .await;
    assert_eq!(r.body["applied"], true);
    let pushed = next_progress(&mut ws).await;
    assert_eq!(pushed["state"]["percent"], 61.0, "in order: {pushed}");
}

/// The next `progress` frame on the socket (within 10 s).
async fn next_progress(ws: &mut Socket) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let f = ws.next_json().await.expect("socket open");
            if f["type"] == "progress" {
                return f;
            }
        }
    })
    .await
    .expect("a progress frame within 10 s")
}

/// Posts `body` to the nodes in turn, starting at `start`, until one answers 200 (the same
/// event id each time, so a retry never applies twice). `None` if none did within 20 s.
async fn post_retrying(apis: &[Api], start: usize, path: &str, body: &Value) -> Option<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut i = start;
    while std::time::Instant::now() < deadline {
        let api = &apis[i % apis.len()];
        let r = api
            .http
            .post(format!("{}{path}", api.base))
            .bearer_auth(api.token.as_deref().unwrap_or_default())
            .timeout(Duration::from_secs(5))
            .json(body)
            .send()
            .await;
        if let Ok(r) = r
            && r.status() == 200
            && let Ok(v) = r.json::<Value>().await
        {
            return Some(v);
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The cluster's PostgreSQL database.
fn pg_url(plan: &dogear_e2e::cluster::Plan) -> String {
    plan.shared
        .iter()
        .find(|(k, _)| k == "DOGEAR_STORAGE__POSTGRES_URL")
        .map(|(_, v)| v.clone())
        .expect("the plan has a database")
}

/// The rules over a reader's applied log, whichever node applied each write: no event
/// twice, versions 1, 2, 3, ... with none skipped or repeated, and never backwards.
fn check_log(log: &[(String, Value)]) {
    let ids: std::collections::HashSet<&str> = log.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), log.len(), "no event applied twice");
    let versions: Vec<i64> = log
        .iter()
        .map(|(_, s)| s["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        versions,
        (1..=log.len() as i64).collect::<Vec<_>>(),
        "one write per version, none skipped"
    );
    let pcts: Vec<f64> = log
        .iter()
        .map(|(_, s)| s["percent"].as_f64().unwrap())
        .collect();
    assert!(
        pcts.windows(2).all(|w| w[1] >= w[0]),
        "never backwards: {pcts:?}"
    );
}

/// The reader's applied events as PostgreSQL holds them, oldest first: (event id, state).
async fn applied_log(url: &str) -> Vec<(String, Value)> {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    db.query(
        "SELECT event_id, state FROM progress_events WHERE applied ORDER BY seq",
        &[],
    )
    .await
    .expect("query")
    .iter()
    .map(|r| {
        (
            r.get::<_, String>(0),
            dogear_e2e::serde_json::from_str(r.get::<_, &str>(1)).expect("state json"),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_owner_loses_nothing_and_the_keys_come_back() {
    let (mut c, plan) = Nodes::start(3).await;
    let me = Reader::new(&c.nodes[0], "failover").await;
    let path = format!("/v1/books/{}/progress", me.book);
    let apis: Vec<Api> = c.nodes.iter().map(|n| on(&me.api, &n.base)).collect();
    let first = apis[0].post(&path, progress(&me.device, 0.5, 0)).await;
    assert_eq!(first.body["applied"], true, "{}", first.body);
    let owners = c.user_actor_nodes().await;
    assert_eq!(owners.len(), 1, "{owners:?}");
    let owner = owners[0];

    // Two clients write forward as fast as they can, each retrying a failed write on the
    // next node with the same event id.
    /// (event id, percent, sent, acknowledged)
    type Acks = std::sync::Arc<
        std::sync::Mutex<Vec<(String, f64, std::time::Instant, std::time::Instant)>>,
    >;
    let acked: Acks = Default::default();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2usize {
        let (apis, path, device) = (apis.clone(), path.clone(), me.device.clone());
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut step = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let pct = 1.0 + (step * 2 + w) as f64 * 0.01;
                let body = progress(&device, pct, (step * 2 + w) as i64 + 10);
                let sent = std::time::Instant::now();
                let Some(v) = post_retrying(&apis, step + w, &path, &body).await else {
                    panic!("write {step} of writer {w} found no node for 20 s");
                };
                if v["applied"] == true {
                    let id = body["event_id"].as_str().unwrap_or_default().to_string();
                    acked
                        .lock()
                        .unwrap()
                        .push((id, pct, sent, std::time::Instant::now()));
                }
                step += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.nodes[owner].kill9();
    let killed_at = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let before = acked.iter().filter(|a| a.3 < killed_at).count();
    // Writes sent after the kill: the first of them applied tells when the reader was served
    // again (by a new owner).
    let after: Vec<_> = acked.iter().filter(|a| a.2 > killed_at).collect();
    assert!(
        before > 10,
        "writes were flowing before the kill ({before})"
    );
    let first_after = after
        .iter()
        .map(|a| a.3 - killed_at)
        .min()
        .expect("writes applied after the kill");
    eprintln!(
        "{before} writes applied before the kill, {} after; first after {first_after:?}",
        after.len()
    );
    assert!(
        first_after < Duration::from_secs(5),
        "the reader was served again {first_after:?} after the kill"
    );

    // Every acknowledged write is in the log once; versions are gapless; never backwards.
    let url = pg_url(&plan);
    let check = |log: &[(String, Value)]| {
        check_log(log);
        let ids: std::collections::HashSet<&str> = log.iter().map(|(id, _)| id.as_str()).collect();
        for (id, pct, _, _) in &acked {
            assert!(ids.contains(id.as_str()), "acknowledged {pct} is missing");
        }
    };
    let log = applied_log(&url).await;
    check(&log);
    let max = acked.iter().map(|a| a.1).fold(0.0, f64::max);
    let live: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    for &i in &live {
        let s = apis[i].get(&path).await;
        assert_eq!(s.body["state"]["percent"], max, "node {i}: {}", s.body);
    }

    // The killed node restarts, rejoins and takes its reader back; still nothing lost.
    c.nodes[owner].restart();
    c.wait_members(&[0, 1, 2], 3, 20).await;
    let via = live[0];
    let back = dogear_e2e::eventually(10, "the restarted node owns the reader again", || {
        let (apis, path, device, c) = (&apis, &path, &me.device, &c);
        async move {
            let r = apis[via].post(path, progress(device, 99.0, 100_000)).await;
            (r.status == 200 && c.user_actor_nodes().await == vec![owner]).then_some(r)
        }
    })
    .await;
    assert_eq!(back.body["state"]["percent"], 99.0, "{}", back.body);
    let restarted = on(&me.api, &c.nodes[owner].base);
    let s = restarted.get(&path).await;
    assert_eq!(s.body["state"]["percent"], 99.0, "{}", s.body);
    check(&applied_log(&url).await);
}

/// A partition: node 2 reaches the others only through proxies the test cuts. While cut,
/// node 2 keeps serving the reader it owns and the others take the reader over: two owners.
/// The store lets no two writes apply for the same version, the forward-only rule holds over
/// both sides' writes, and after healing every node serves the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_never_applies_two_writes_for_one_version() {
    use dogear_e2e::cluster::{Nodes, Plan};
    use dogear_e2e::proxy::Proxy;
    let plan = Plan::new(3).await;
    let to_2 = Proxy::start(&plan.listen[2]).await;
    let from_2_to_0 = Proxy::start(&plan.listen[0]).await;
    let from_2_to_1 = Proxy::start(&plan.listen[1]).await;
    let mut envs = vec![
        plan.env(0, Some(vec![plan.listen[1].clone(), to_2.addr.clone()])),
        plan.env(1, Some(vec![plan.listen[0].clone(), to_2.addr.clone()])),
        plan.env(
            2,
            Some(vec![from_2_to_0.addr.clone(), from_2_to_1.addr.clone()]),
        ),
    ];
    // Each node is known to the others by the proxy in front of it (nodes 0 and 1 reach
    // each other directly through their seeds): a cut leaves no way around.
    envs[0].push(("DOGEAR_CLUSTER__ADVERTISE".into(), from_2_to_0.addr.clone()));
    envs[1].push(("DOGEAR_CLUSTER__ADVERTISE".into(), from_2_to_1.addr.clone()));
    envs[2].push(("DOGEAR_CLUSTER__ADVERTISE".into(), to_2.addr.clone()));
    let c = Nodes::start_with(&plan, envs).await;

    // A reader owned by node 2.
    let mut reader = None;
    for i in 0..24 {
        let before = c.user_actors().await;
        let r = Reader::new(&c.nodes[0], &format!("split{i}")).await;
        let after = c.user_actors().await;
        if after[2] > before[2] {
            reader = Some(r);
            break;
        }
    }
    let me = reader.expect("one of 24 readers hashes to node 2");
    let path = format!("/v1/books/{}/progress", me.book);
    let apis: Vec<Api> = c.nodes.iter().map(|n| on(&me.api, &n.base)).collect();
    let r = apis[0].post(&path, progress(&me.device, 1.0, 0)).await;
    assert_eq!(r.body["applied"], true, "{}", r.body);

    for p in [&to_2, &from_2_to_0, &from_2_to_1] {
        p.cut();
    }
    // Writes through node 2 and node 0 in turn, one sequence of rising percents, for longer
    // than the failure timeout: node 2 applies its own; node 0 forwards until it declares
    // node 2 down, then its side owns the reader too.
    let mut applied_on = [0usize; 3];
    let started = std::time::Instant::now();
    let mut step = 0i64;
    while started.elapsed() < Duration::from_millis(4000) {
        let via = if step % 2 == 0 { 2 } else { 0 };
        let body = progress(&me.device, 2.0 + step as f64 * 0.1, 10 + step);
        let r = apis[via]
            .http
            .post(format!("{}{path}", apis[via].base))
            .bearer_auth(me.token())
            .timeout(Duration::from_millis(1500))
            .json(&body)
            .send()
            .await;
        if let Ok(r) = r
            && r.status() == 200
            && let Ok(v) = r.json::<Value>().await
            && v["applied"] == true
        {
            applied_on[via] += 1;
        }
        step += 1;
    }
    assert!(applied_on[2] > 0, "node 2 kept its reader while cut off");
    assert!(
        applied_on[0] > 0,
        "the others took the reader over while node 2 was cut off"
    );
    let cut_view = c.admin_on(0).get("/v1/cluster").await;
    let n2 = cut_view.body["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["node_id"] == "n2").cloned())
        .unwrap_or_default();
    assert_eq!(n2["state"], "down", "{}", cut_view.body);

    for p in [&to_2, &from_2_to_0, &from_2_to_1] {
        p.heal();
    }
    c.wait_members(&[0, 1, 2], 3, 30).await;

    // Every applied write had its own version; never backwards across both sides.
    let log = applied_log(&pg_url(&plan)).await;
    check_log(&log);
    let last = log.last().map(|(_, s)| s.clone()).unwrap();
    for (i, api) in apis.iter().enumerate() {
        let s = api.get(&path).await;
        assert_eq!(s.status, 200, "{}", s.body);
        assert_eq!(
            s.body["state"]["version"], last["version"],
            "node {i}: {}",
            s.body
        );
        assert_eq!(
            s.body["state"]["percent"], last["percent"],
            "node {i}: {}",
            s.body
        );
    }
}

/// Imports on a cluster: uploads through any node land in a library whichever node owns it;
/// a folder every node watches (the same path on each) is imported once, by its owner; and
/// a node killed while the folder fills leaves no job behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_a_shared_folder_import_once_across_nodes() {
    use dogear_e2e::cluster::{Nodes, Plan};
    let plan = Plan::new(3).await;
    let shared = tempfile::tempdir().unwrap();
    let folder = shared.path().join("inbox");
    std::fs::create_dir_all(&folder).unwrap();
    let config = shared.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[import]\nscan_interval_secs = 1\n[[import.folders]]\npath = \"{}\"\nlibrary = \"root\"\n",
            folder.display()
        ),
    )
    .unwrap();
    let envs = (0..3)
        .map(|i| {
            let mut e = plan.env(i, None);
            e.push(("DOGEAR_CONFIG".into(), config.display().to_string()));
            e
        })
        .collect();
    let mut c = Nodes::start_with(&plan, envs).await;
    let root: Vec<Api> = (0..3).map(|i| c.admin_on(i)).collect();

    // One upload through each node, into root's library (owned by one of them).
    let good = dogear_e2e::fixtures().join("books/good");
    for (i, name) in ["hamlet.epub", "macbeth.epub", "sonnets.epub"]
        .iter()
        .enumerate()
    {
        let bytes = std::fs::read(good.join(name)).unwrap();
        let up = root[i].upload(bytes, name, None).await;
        assert_eq!(up.status, 202, "upload through node {i}: {}", up.body);
        let job = root[i].wait_job(up.body["job_id"].as_str().unwrap()).await;
        assert_eq!(job["state"], "done", "node {i}: {job}");
    }
    let libraries: Vec<usize> = {
        let mut v = Vec::new();
        for (i, n) in c.nodes.iter().enumerate() {
            let m = n.metrics().await;
            if dogear_e2e::metric(&m, "dogear_actors_active{kind=\"library\"}") > 0.0 {
                v.push(i);
            }
        }
        v
    };
    assert_eq!(
        libraries.len(),
        1,
        "one node runs the library: {libraries:?}"
    );
    for api in &root {
        assert_eq!(
            api.all_books("").await.len(),
            3,
            "every node lists the uploads"
        );
    }

    // The shared folder: each file once.
    let first = ["henry-v.epub", "richard-ii.epub", "romeo-and-juliet.epub"];
    for name in first {
        std::fs::copy(good.join(name), folder.join(name)).unwrap();
    }
    dogear_e2e::eventually(30, "the folder's books", || {
        let api = root[0].clone();
        async move { (api.all_books("").await.len() == 6).then_some(()) }
    })
    .await;
    let folder_jobs = |api: Api| async move {
        let r = api.get("/v1/imports?limit=100").await;
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["source"] == "folder")
            .cloned()
            .collect::<Vec<Value>>()
    };
    let jobs = folder_jobs(root[1].clone()).await;
    assert_eq!(
        jobs.len(),
        3,
        "one job per file, not one per node: {jobs:?}"
    );
    assert!(
        jobs.iter()
            .all(|j| j["state"] == "done" && j["duplicate_of"].is_null())
    );

    // More files, and the node scanning the folder dies at once: another takes the folder
    // over, and no job stays queued or running.
    // Which node follows the folder now: the one whose passes go on (every second).
    let passes = |c: &Nodes| {
        let bases: Vec<String> = c.nodes.iter().map(|n| n.base.clone()).collect();
        async move {
            let mut out = Vec::new();
            for b in bases {
                let m = reqwest::get(format!("{b}/metrics"))
                    .await
                    .expect("metrics")
                    .text()
                    .await
                    .expect("metrics text");
                out.push(dogear_e2e::metric(
                    &m,
                    "dogear_source_passes_total{kind=\"folder\"}",
                ));
            }
            out
        }
    };
    let before = passes(&c).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = passes(&c).await;
    let scanners: Vec<usize> = (0..3).filter(|i| after[*i] > before[*i]).collect();
    assert_eq!(
        scanners.len(),
        1,
        "one node follows the folder: {before:?} -> {after:?}"
    );
    let scanner = scanners[0];
    let second = [
        "henry-iv-part-1.epub",
        "henry-iv-part-2.epub",
        "merry-wives-of-windsor.epub",
        "passionate-pilgrim.epub",
    ];
    for name in second {
        std::fs::copy(good.join(name), folder.join(name)).unwrap();
    }
    c.nodes[scanner].kill9();
    let alive = (scanner + 1) % 3;
    dogear_e2e::eventually(40, "the second batch, imported by the others", || {
        let api = root[alive].clone();
        async move { (api.all_books("").await.len() == 10).then_some(()) }
    })
    .await;
    let jobs = dogear_e2e::eventually(20, "every folder job finished", || {
        let api = root[alive].clone();
        async move {
            let jobs = folder_jobs(api).await;
            jobs.iter()
                .all(|j| j["state"] == "done" || j["state"] == "failed")
                .then_some(jobs)
        }
    })
    .await;
    let books = root[alive].all_books("").await;
    let mut titles: Vec<String> = books
        .iter()
        .map(|b| b["title"].as_str().unwrap_or_default().to_string())
        .collect();
    titles.sort();
    let before = titles.len();
    titles.dedup();
    assert_eq!(before, titles.len(), "no book twice: {titles:?}");
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");
}

/// What nodes share through Redis: the sixth wrong password is refused whichever node gets
/// it, and a revoked Kobo token is refused by every node at once (each had it cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_limits_and_revocations_hold_across_nodes() {
    let (c, _plan) = Nodes::start(3).await;
    let name = format!("lim{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let reg = c.nodes[0]
        .client()
        .post(
            "/v1/auth/register",
            json!({"username": name, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(reg.status, 201, "{}", reg.body);
    for i in 0..5 {
        let r = c.nodes[i % 3]
            .client()
            .post(
                "/v1/auth/login",
                json!({"username": name, "password": "wrong"}),
            )
            .await;
        assert_eq!(r.status, 401, "attempt {i} on node {}: {}", i % 3, r.body);
    }
    for n in &c.nodes {
        let r = n
            .client()
            .post(
                "/v1/auth/login",
                json!({"username": name, "password": "wrong"}),
            )
            .await;
        r.assert_error(429, "rate_limited");
    }

    // A Kobo used through every node (each caches its token), then revoked on one.
    let api = c.nodes[0]
        .client()
        .with_token(reg.body["access_token"].as_str().unwrap());
    let t = api
        .post("/v1/kobo/tokens", json!({"device_name": "Clara"}))
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let token = t.body["token"].as_str().unwrap();
    let init = |base: &str| format!("{base}/kobo/{token}/v1/initialization");
    let http = reqwest::Client::new();
    for n in &c.nodes {
        let r = http.get(init(&n.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let gone = api
        .delete(&format!(
            "/v1/kobo/tokens/{}",
            t.body["device_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(gone.status, 204);
    for (i, n) in c.nodes.iter().enumerate() {
        // Within a second on every node: without the notice a node's cache keeps the
        // token for ten.
        dogear_e2e::eventually(1, &format!("node {i} refuses the revoked token"), || {
            let (http, url) = (http.clone(), init(&n.base));
            async move {
                let r = http.get(url).send().await.ok()?;
                (r.status() == 401).then_some(())
            }
        })
        .await;
    }
}

/// Debian's Prometheus with the scrape configuration and alert rules from `deploy/`
/// (targets pointed at three nodes) reads every node's `dogear_cluster_members`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_cluster_with_the_deploy_config() {
    let (c, _plan) = Nodes::start(3).await;
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let scrape = std::fs::read_to_string(deploy.join("prometheus.yml")).unwrap();
    let targets: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("          - {}", n.base.trim_start_matches("http://")))
        .collect();
    let example: Vec<&str> = scrape
        .lines()
        .filter(|l| l.trim_start().starts_with("- 10.0.0."))
        .collect();
    assert_eq!(
        example.len(),
        3,
        "the deploy config lists three example nodes"
    );
    let mut config = scrape.replace(&example.join("\n"), &targets.join("\n"));
    config = config.replace("scrape_interval: 15s", "scrape_interval: 1s");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(deploy.join("alerts.yml"), dir.path().join("alerts.yml")).unwrap();
    let port = dogear_e2e::cluster::free_port();
    let prom = std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect(
            "prometheus is not installed: run the suite with scripts/test.sh, which installs it",
        );
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(prom);
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=dogear_cluster_members%7Bstate%3D%22up%22%7D"
    );
    let results = dogear_e2e::eventually(30, "Prometheus has every node's members", || {
        let url = url.clone();
        async move {
            let v: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
            let r = v["data"]["result"].as_array()?.clone();
            (r.len() == 3 && r.iter().all(|s| s["value"][1] == "3")).then_some(r)
        }
    })
    .await;
    let mut instances: Vec<String> = results
        .iter()
        .map(|s| {
            s["metric"]["instance"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    instances.sort();
    let mut expected: Vec<String> = c
        .nodes
        .iter()
        .map(|n| n.base.trim_start_matches("http://").to_string())
        .collect();
    expected.sort();
    assert_eq!(instances, expected);
    // The rules loaded (and none fires on a healthy cluster).
    let rules: Value = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/rules"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(names.contains(&"DogearNodeDown"), "{names:?}");
}

/// A Kobo whose requests land on different nodes: its library sync, paged through all three,
/// gives every book once; its reading-state `PUT` through one node reaches the reader's
/// phone on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kobo_spread_over_the_nodes() {
    use dogear_e2e::cluster::{Nodes, Plan};
    let plan = Plan::new(3).await;
    let envs = (0..3)
        .map(|i| {
            let mut e = plan.env(i, None);
            e.push(("DOGEAR_KOBO__PAGE_SIZE".into(), "2".into()));
            e
        })
        .collect();
    let c = Nodes::start_with(&plan, envs).await;
    let me = Reader::new(&c.nodes[0], "kobospread").await;
    let good = dogear_e2e::fixtures().join("books/good");
    let mut books = Vec::new();
    for (i, name) in [
        "hamlet.epub",
        "macbeth.epub",
        "sonnets.epub",
        "henry-v.epub",
        "richard-ii.epub",
    ]
    .iter()
    .enumerate()
    {
        let api = on(&me.api, &c.nodes[i % 3].base);
        let up = api
            .upload(std::fs::read(good.join(name)).unwrap(), name, None)
            .await;
        assert_eq!(up.status, 202, "{}", up.body);
        let job = api.wait_job(up.body["job_id"].as_str().unwrap()).await;
        assert_eq!(job["state"], "done", "{job}");
        books.push(job["book_id"].as_str().unwrap().to_string());
    }
    let t = me
        .api
        .post("/v1/kobo/tokens", json!({"device_name": "Libra"}))
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let token = t.body["token"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();

    // Sync, each page through the next node.
    let mut seen: Vec<String> = Vec::new();
    let mut sync_token: Option<String> = None;
    for page in 0..50 {
        let base = &c.nodes[page % 3].base;
        let mut rb = http.get(format!("{base}/kobo/{token}/v1/library/sync"));
        if let Some(t) = &sync_token {
            rb = rb.header("x-kobo-synctoken", t);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200, "page {page}");
        sync_token = r
            .headers()
            .get("x-kobo-synctoken")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let more = r
            .headers()
            .get("x-kobo-sync")
            .is_some_and(|v| v == "continue");
        let items: Vec<Value> = r.json().await.unwrap();
        assert!(items.len() <= 2, "page size 2");
        for item in &items {
            if let Some(e) = item.get("NewEntitlement") {
                seen.push(e["BookEntitlement"]["Id"].as_str().unwrap().to_string());
            }
        }
        if !more {
            break;
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "no book twice: {seen:?}");
    let mut want = books.clone();
    want.sort();
    assert_eq!(sorted, want, "every book once");

    // The reader's phone on one node; the Kobo's PUT through another.
    let phone = me.add_device("mobile").await;
    let (mut ws, _) = Socket::connect(&c.nodes[1], me.token(), &phone).await;
    let mut put: Value = serde_json_from_file(&dogear_e2e::fixtures().join(
        "captures/calibre-web-0.6.27/small.kobo.v1.library.UUID.state.PUT.request-body.json",
    ));
    put["ReadingStates"][0]["EntitlementId"] = json!(books[0]);
    let r = http
        .put(format!(
            "{}/kobo/{token}/v1/library/{}/state",
            c.nodes[2].base, books[0]
        ))
        .header("content-type", "application/json")
        .body(put.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pushed = next_progress(&mut ws).await;
    assert_eq!(pushed["state"]["book_id"], books[0].as_str(), "{pushed}");
    assert_eq!(pushed["state"]["percent"], 11.0, "{pushed}");
}

fn serde_json_from_file(path: &std::path::Path) -> Value {
    dogear_e2e::serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Makes a CA and a certificate it signs for the name `dogear-cluster`, with openssl.
fn make_tls(dir: &std::path::Path, prefix: &str) -> (String, String, String) {
    let p = |f: &str| dir.join(format!("{prefix}{f}")).display().to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ext = p("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:dogear-cluster\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=test cluster CA"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    run(&ca);
    let (key, csr, cert) = (p("node.key"), p("node.csr"), p("node.pem"));
    let mut req = vec!["req", "-subj", "/CN=dogear-cluster"];
    req.extend(ec);
    req.extend(["-keyout", &key, "-out", &csr]);
    run(&req);
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        &cert,
        "-extfile",
        &ext,
    ]);
    (cert, key, ca_pem)
}

/// Mutual TLS between nodes: two nodes with certificates from the cluster's CA form a
/// cluster (and forward requests); a node whose certificate another CA signed is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_speak_tls_and_refuse_a_stranger() {
    use dogear_e2e::cluster::{Nodes, Plan, start_node};
    let plan = Plan::new(3).await;
    let dir = tempfile::tempdir().unwrap();
    let ours = make_tls(dir.path(), "ours-");
    let theirs = make_tls(dir.path(), "theirs-");
    let with_tls = |mut env: Vec<(String, String)>, t: &(String, String, String)| {
        env.push(("DOGEAR_CLUSTER__TLS_CERT".into(), t.0.clone()));
        env.push(("DOGEAR_CLUSTER__TLS_KEY".into(), t.1.clone()));
        env.push(("DOGEAR_CLUSTER__TLS_CA".into(), t.2.clone()));
        env
    };
    let envs = vec![
        with_tls(plan.env(0, None), &ours),
        with_tls(plan.env(1, None), &ours),
    ];
    let c = Nodes::start_with(&plan, envs).await;
    // Requests cross the encrypted link.
    let me = Reader::new(&c.nodes[0], "tlsreader").await;
    let path = format!("/v1/books/{}/progress", me.book);
    for (i, n) in c.nodes.iter().enumerate() {
        let r = on(&me.api, &n.base)
            .post(&path, progress(&me.device, 10.0 + i as f64, i as i64))
            .await;
        assert_eq!(r.body["applied"], true, "through node {i}: {}", r.body);
    }
    // A node whose certificate another CA signed knows the cookie, but is not let in.
    let stranger = start_node(&with_tls(plan.env(2, None), &theirs));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for i in 0..2 {
        let r = c.admin_on(i).get("/v1/cluster").await;
        let up: Vec<&str> = r.body["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] == "up")
            .filter_map(|m| m["node_id"].as_str())
            .collect();
        assert_eq!(up, ["n0", "n1"], "node {i}: {}", r.body);
    }
    let alone = Api {
        base: stranger.base.clone(),
        ..c.admin.clone()
    }
    .get("/v1/cluster")
    .await;
    let up = alone.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "up")
        .count();
    assert_eq!(up, 1, "the stranger is alone: {}", alone.body);
}

/// Two tabs refreshing one session at once, their requests landing on two nodes: both get
/// the same new pair (the grace is shared through Redis), and the session lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_through_two_nodes_at_once_keeps_the_session() {
    let (c, _plan) = Nodes::start(3).await;
    let me = Reader::new(&c.nodes[0], "twotabs").await;
    let refresh = |i: usize, token: String| {
        let client = c.nodes[i].client();
        async move {
            client
                .post("/v1/auth/refresh", json!({"refresh_token": token}))
                .await
        }
    };
    let mut token = me.refresh.clone();
    for round in 0..3 {
        let (x, y) = (round % 3, (round + 1) % 3);
        let (a, b) = tokio::join!(refresh(x, token.clone()), refresh(y, token.clone()));
        assert_eq!(a.status, 200, "round {round}: {}", a.body);
        assert_eq!(b.status, 200, "round {round}: {}", b.body);
        assert_eq!(
            a.body["refresh_token"], b.body["refresh_token"],
            "round {round}: the same new pair from nodes {x} and {y}"
        );
        token = a.body["refresh_token"].as_str().unwrap().to_string();
    }
    let later = refresh(2, token).await;
    assert_eq!(
        later.status, 200,
        "the session was not revoked: {}",
        later.body
    );
}
