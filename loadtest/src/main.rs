//! dogear-loadtest: drives a running dogear node and reports throughput and latency
//! percentiles, so that progress writes can be compared with the same server's no-op
//! `GET /health` under the same concurrency, in the same run.
//!
//! Only ever point it at a node on this machine (loopback): it sends as fast as it can.

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Clone)]
#[command(name = "dogear-loadtest", version, about)]
struct Args {
    /// Base URL of the node, or of several nodes of a cluster comma-separated (loopback
    /// only): worker `i` sends everything to node `i mod n`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The cluster's node ids, in the order of `--url`, for `--placement`.
    #[arg(long)]
    node_ids: Option<String>,
    /// `local`: each worker's user is owned by the node the worker sends to; `remote`: by
    /// another node (every write is forwarded). Needs `--node-ids`.
    #[arg(long)]
    placement: Option<String>,
    /// Concurrent clients in each phase (one user and device each for writes).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Phases to run, comma-separated: health, http, ws, sockets, kobo (Kobo reading-state
    /// PUTs), books (pages through `GET /v1/books` of `--user`, 50 a page, each worker in
    /// another sort order), kobosync (one Kobo's full first sync of `--user`'s libraries).
    #[arg(long, default_value = "health,http,ws,sockets")]
    phases: String,
    /// Idle WebSockets to open in the `sockets` phase.
    #[arg(long, default_value_t = 5000)]
    sockets: usize,
    /// The server's pid, to read its resident memory from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Prefix for the users this run registers (must be new on the server).
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Instead of load: hash this file with the importer's hash (xxh3-64, streamed) and
    /// print the throughput, to compare with the disk's sequential read.
    #[arg(long, value_name = "FILE")]
    hash: Option<std::path::PathBuf>,
    /// For the `books` phase: an existing user whose libraries are listed.
    #[arg(long)]
    user: Option<String>,
    /// That user's password.
    #[arg(long)]
    password: Option<String>,
    /// For the `failover` phase: the nodes' pids, in the order of `--url`.
    #[arg(long)]
    pids: Option<String>,
    /// Writers of the `hot` phase: one reader's concurrent clients, over 20 of its books.
    #[arg(long, default_value_t = 64)]
    hot_writers: usize,
    /// After registering, write one line per account (`base token device book kobo`, the
    /// last its Kobo `api_endpoint`) to this file, for a light load generator such as wrk
    /// (`loadtest/wrk/progress.lua`, `loadtest/wrk/kobo.lua`).
    #[arg(long, value_name = "FILE")]
    accounts_out: Option<std::path::PathBuf>,
}

struct Stats {
    name: String,
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
    fn print(&self) {
        println!(
            "| {:<16} | {:>9} | {:>6} | {:>10.0} | {:>7.2} | {:>7.2} | {:>7.2} | {:>8.2} |",
            self.name,
            self.ok,
            self.errors,
            self.rate(),
            self.pct(0.50),
            self.pct(0.95),
            self.pct(0.99),
            self.pct(1.0)
        );
    }
}

#[derive(Clone)]
struct Account {
    /// The node this account's worker talks to.
    base: String,
    token: String,
    device: String,
    book: String,
    /// The account's Kobo `api_endpoint` (for the `kobo` phase).
    kobo: String,
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Resident memory of `pid` in KiB: `VmRSS` (all) or `RssAnon` (heap and stacks, without
/// file pages such as SQLite's memory-mapped database, which the kernel can drop).
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn rss_kib(pid: u32) -> Option<u64> {
    proc_kib(pid, "VmRSS")
}

fn check_loopback(url: &str) -> Result<(), String> {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split(['/', ':']).next())
        .unwrap_or_default();
    if host == "localhost" || host.starts_with("127.") || host == "[" || host == "::1" {
        Ok(())
    } else {
        Err(format!(
            "refusing to load {host}: only loopback targets are allowed"
        ))
    }
}

/// POSTs `body` as JSON (with a bearer token when given) and parses the JSON answer.
async fn post_json(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Result<Value, String> {
    let mut rb = http.post(url).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.map_err(|e| e.to_string())?;
    r.json().await.map_err(|e| e.to_string())
}

/// Registers `name` through `base`, trying `name~1`, `name~2`, ... until `wanted` accepts the
/// new user's id (a user placed on the node the run needs).
async fn register(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    wanted: &(dyn Fn(&str) -> bool + Send + Sync),
) -> Result<Account, String> {
    let mut attempt = 0;
    let (r, name) = loop {
        let name = match attempt {
            0 => name.to_string(),
            n => format!("{name}x{n}"),
        };
        let body = json!({"username": name, "password": "load-test-password"});
        let r = post_json(http, format!("{base}/v1/auth/register"), None, body).await?;
        let id = r["user"]["id"].as_str().unwrap_or_default().to_string();
        if wanted(&id) || attempt >= 64 {
            break (r, name);
        }
        attempt += 1;
    };
    let token = r["access_token"]
        .as_str()
        .ok_or(format!("register {name}: {r}"))?
        .to_string();
    let t = Some(token.as_str());
    let device = post_json(
        http,
        format!("{base}/v1/devices"),
        t,
        json!({"name": "load", "kind": "other"}),
    )
    .await?;
    let book = post_json(
        http,
        format!("{base}/v1/books"),
        t,
        json!({"title": "Load", "authors": ["Test"]}),
    )
    .await?;
    let kobo = post_json(
        http,
        format!("{base}/v1/kobo/tokens"),
        t,
        json!({"device_name": "load kobo"}),
    )
    .await?;
    Ok(Account {
        base: base.to_string(),
        device: device["id"].as_str().ok_or("device id")?.to_string(),
        book: book["id"].as_str().ok_or("book id")?.to_string(),
        kobo: kobo["api_endpoint"]
            .as_str()
            .ok_or(format!("kobo token: {kobo}"))?
            .to_string(),
        token,
    })
}

/// A Kobo reading-state `PUT` body as a device sends it, a little further on each step.
fn kobo_body(a: &Account, step: u64) -> Value {
    let at = format!(
        "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + (step / 86_400) % 28,
        (step / 3600) % 24,
        (step / 60) % 60,
        step % 60,
        step % 1000
    );
    json!({"ReadingStates": [{
        "EntitlementId": a.book,
        "LastModified": at,
        "PriorityTimestamp": at,
        "StatusInfo": {"LastModified": at, "Status": "Reading"},
        "Statistics": {"LastModified": at, "SpentReadingMinutes": step % 600, "RemainingTimeMinutes": 60},
        "CurrentBookmark": {"LastModified": at,
            "ProgressPercent": (step % 1_000_000) as f64 / 10_000.0,
            "ContentSourceProgressPercent": (step % 100) as f64,
            "Location": {"Value": format!("kobo.{}.1", step % 500), "Type": "KoboSpan",
                         "Source": "OEBPS/Text/chapter05.xhtml"}}
    }]})
}

fn body(a: &Account, step: u64) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4(),
        "device_id": a.device,
        "percent": (step % 1_000_000) as f64 / 10_000.0,
        "locator": format!("epubcfi(/6/4!/4/2/{step})"),
        "client_ts": "2026-11-23T07:28:28.123Z",
    })
}

/// One closed-loop HTTP client: sends the request `make(step)` builds, waits for the whole
/// answer, and repeats until `duration` has passed. Returns (ok, errors, latencies in µs).
async fn http_loop<F>(duration: Duration, make: F) -> (u64, u64, Vec<u64>)
where
    F: Fn(u64) -> reqwest::RequestBuilder,
{
    let (mut ok, mut err, mut lat) = (0, 0, Vec::new());
    let end = Instant::now() + duration;
    let mut step = 0;
    while Instant::now() < end {
        step += 1;
        let t = Instant::now();
        let done = match make(step).send().await {
            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
            _ => false,
        };
        if done {
            ok += 1;
            lat.push(t.elapsed().as_micros() as u64);
        } else {
            err += 1;
        }
    }
    (ok, err, lat)
}

/// Runs `concurrency` closed-loop workers for `duration`; each call returns success or not.
async fn phase<F, Fut>(name: &str, concurrency: usize, duration: Duration, make: F) -> Stats
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = (u64, u64, Vec<u64>)> + Send + 'static,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrency).map(|i| tokio::spawn(make(i))).collect();
    let (mut ok, mut errors, mut lat) = (0, 0, Vec::new());
    for h in handles {
        if let Ok((o, e, l)) = h.await {
            ok += o;
            errors += e;
            lat.extend(l);
        }
    }
    lat.sort_unstable();
    let _ = duration;
    Stats {
        name: name.to_string(),
        ok,
        errors,
        elapsed: started.elapsed(),
        latencies_us: lat,
    }
}

/// One reader, many writers: `writers` closed-loop clients of the same account over 20 of
/// its books, each book's writers sending positions further on from one counter (so some
/// arrive behind another writer's and are not applied). Counts answered and applied writes.
async fn hot_reader(
    http: &reqwest::Client,
    a: &Account,
    writers: usize,
    duration: Duration,
    out: Option<std::path::PathBuf>,
) -> Result<Stats, String> {
    let mut books = vec![a.book.clone()];
    for i in 1..20 {
        let b = post_json(
            http,
            format!("{}/v1/books", a.base),
            Some(&a.token),
            json!({"title": format!("Hot {i}"), "authors": ["Load"]}),
        )
        .await?;
        books.push(b["id"].as_str().ok_or(format!("book: {b}"))?.to_string());
    }
    if let Some(path) = out {
        // The same reader on every line, one line per book: wrk's script then writes as
        // this one hot reader.
        let lines: String = books
            .iter()
            .map(|b| format!("{} {} {} {b}\n", a.base, a.token, a.device))
            .collect();
        std::fs::write(&path, lines).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let counters: Arc<Vec<AtomicU64>> = Arc::new(books.iter().map(|_| AtomicU64::new(0)).collect());
    let applied = Arc::new(AtomicU64::new(0));
    let books = Arc::new(books);
    let stats = phase("hot reader", writers, duration, |i| {
        let (http, a, books, counters, applied) = (
            http.clone(),
            a.clone(),
            books.clone(),
            counters.clone(),
            applied.clone(),
        );
        async move {
            let b = i % books.len();
            let url = format!("{}/v1/books/{}/progress", a.base, books[b]);
            let (mut ok, mut err, mut lat) = (0, 0, Vec::new());
            let end = Instant::now() + duration;
            while Instant::now() < end {
                let step = counters[b].fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&a.token)
                    .json(&body(&a, step))
                    .send()
                    .await;
                let v = match r {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    _ => None,
                };
                match v {
                    Some(v) => {
                        ok += 1;
                        lat.push(t.elapsed().as_micros() as u64);
                        if v["applied"] == true {
                            applied.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => err += 1,
                }
            }
            (ok, err, lat)
        }
    })
    .await;
    println!(
        "(hot reader: {} applied, {:.0} applied writes/s)",
        applied.load(Ordering::Relaxed),
        applied.load(Ordering::Relaxed) as f64 / stats.elapsed.as_secs_f64()
    );
    Ok(stats)
}

/// SIGKILL of the node that owns a reader while another node takes the reader's writes:
/// prints the milliseconds from the kill to the first write sent after it that was applied
/// (a new owner took the reader over). The caller restarts the killed node between runs.
async fn failover(
    http: &reqwest::Client,
    bases: &[String],
    node_ids: &[String],
    args: &Args,
) -> Result<(), String> {
    let pids: Vec<i32> = args
        .pids
        .as_deref()
        .ok_or("the failover phase needs --pids")?
        .split(',')
        .map(|p| p.trim().parse().map_err(|_| format!("--pids: {p}")))
        .collect::<Result<_, _>>()?;
    if pids.len() != bases.len() || node_ids.len() != bases.len() {
        return Err("--pids and --node-ids need one entry per --url".into());
    }
    let name = format!("{}fo", args.prefix);
    let a = register(http, &bases[0], &name, &|_| true).await?;
    let who: Value = http
        .get(format!("{}/v1/users/me", bases[0]))
        .bearer_auth(&a.token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let user = who["id"].as_str().ok_or("users/me id")?;
    let key = format!("user:{user}");
    let owner =
        dogear_actors::cluster::rendezvous::owner(node_ids.iter().map(String::as_str), &key)
            .ok_or("no owner")?;
    let o = node_ids.iter().position(|n| n == owner).ok_or("owner")?;
    let via = (o + 1) % bases.len();
    let url = format!("{}/v1/books/{}/progress", bases[via], a.book);
    let mut step = 0u64;
    let write = |step: u64| {
        http.post(&url)
            .bearer_auth(&a.token)
            .timeout(Duration::from_secs(5))
            .json(&body(&a, step))
            .send()
    };
    // Warm: the owner runs the reader's actor.
    for _ in 0..20 {
        step += 1;
        let _ = write(step).await;
    }
    // SAFETY: sending SIGKILL to a pid the operator named.
    unsafe {
        libc::kill(pids[o], libc::SIGKILL);
    }
    let killed = Instant::now();
    loop {
        step += 1;
        let sent = Instant::now();
        if let Ok(r) = write(step).await
            && r.status().is_success()
            && let Ok(v) = r.json::<Value>().await
            && v["applied"] == true
        {
            println!(
                "failover: node {owner} killed; the first write applied after it: {:.0} ms (sent at +{:.0} ms)",
                killed.elapsed().as_secs_f64() * 1000.0,
                (sent - killed).as_secs_f64() * 1000.0
            );
            return Ok(());
        }
        if killed.elapsed() > Duration::from_secs(30) {
            return Err("no write applied within 30 s of the kill".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A Kobo's whole first sync of `--user`'s libraries, one page after another as a device
/// asks for them: pages, entries, and the seconds the requests took in all.
async fn kobo_full_sync(http: &reqwest::Client, base: &str, args: &Args) -> Result<(), String> {
    let (Some(user), Some(pw)) = (&args.user, &args.password) else {
        return Err("the kobosync phase needs --user and --password".into());
    };
    let r = post_json(
        http,
        format!("{base}/v1/auth/login"),
        None,
        json!({"username": user, "password": pw}),
    )
    .await?;
    let token = r["access_token"].as_str().ok_or(format!("login: {r}"))?;
    let k = post_json(
        http,
        format!("{base}/v1/kobo/tokens"),
        Some(token),
        json!({"device_name": format!("bench {}", uuid::Uuid::new_v4())}),
    )
    .await?;
    let endpoint = k["api_endpoint"].as_str().ok_or(format!("kobo: {k}"))?;
    let mut sync_token: Option<String> = None;
    let (mut pages, mut entries, mut lat) = (0usize, 0usize, Vec::new());
    let (mut wire, mut plain) = (0usize, 0usize);
    loop {
        // As a device asks: with gzip.
        let mut rb = http
            .get(format!("{endpoint}/v1/library/sync"))
            .header("accept-encoding", "gzip");
        if let Some(t) = &sync_token {
            rb = rb.header("x-kobo-synctoken", t);
        }
        let t = Instant::now();
        let r = rb.send().await.map_err(|e| e.to_string())?;
        let more = r
            .headers()
            .get("x-kobo-sync")
            .is_some_and(|v| v == "continue");
        let gz = r
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v == "gzip");
        sync_token = r
            .headers()
            .get("x-kobo-synctoken")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let raw = r.bytes().await.map_err(|e| e.to_string())?;
        lat.push(t.elapsed().as_micros() as u64);
        wire += raw.len();
        let text = if gz {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| e.to_string())?;
            out
        } else {
            raw.to_vec()
        };
        plain += text.len();
        let body: Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        pages += 1;
        entries += body.as_array().map_or(0, Vec::len);
        if !more {
            break;
        }
    }
    println!(
        "{:.1} MB of JSON, {:.1} MB on the wire (gzip)",
        plain as f64 / 1e6,
        wire as f64 / 1e6
    );
    let total: u64 = lat.iter().sum();
    lat.sort_unstable();
    println!(
        "Kobo first sync of {user}: {entries} entries in {pages} pages, {:.2} s of requests in all; page p50 {:.1} ms, max {:.1} ms",
        total as f64 / 1e6,
        lat[lat.len() / 2] as f64 / 1000.0,
        lat[lat.len() - 1] as f64 / 1000.0
    );
    // And the sync a device makes next, with nothing new.
    let mut rb = http.get(format!("{endpoint}/v1/library/sync"));
    if let Some(t) = &sync_token {
        rb = rb.header("x-kobo-synctoken", t);
    }
    let t = Instant::now();
    let r = rb.send().await.map_err(|e| e.to_string())?;
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    println!(
        "then a sync with nothing new: {} entries in {:.1} ms",
        body.as_array().map_or(0, Vec::len),
        t.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    if let Some(file) = &args.hash {
        let t = Instant::now();
        let (digest, size) = dogear_actors::import::hash::file(file)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "xxh3-64 {digest}: {size} bytes in {secs:.3} s = {:.0} MiB/s",
            size as f64 / secs / (1024.0 * 1024.0)
        );
        return Ok(());
    }
    let bases: Vec<String> = args
        .url
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    for b in &bases {
        check_loopback(b)?;
    }
    raise_fd_limit();
    let base = bases.first().cloned().ok_or("--url: no URL")?;
    let node_ids: Vec<String> = args
        .node_ids
        .as_deref()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_default();
    if args.placement.is_some() && node_ids.len() != bases.len() {
        return Err("--placement needs --node-ids, one per --url".into());
    }
    let duration = Duration::from_secs(args.duration);
    let phases: Vec<&str> = args.phases.split(',').map(str::trim).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()
        .map_err(|e| e.to_string())?;

    if let Some(pid) = args.pid {
        println!(
            "server pid {pid}: idle RSS before load {} KiB",
            rss_kib(pid).unwrap_or(0)
        );
    }
    let need_accounts = phases
        .iter()
        .any(|p| matches!(*p, "http" | "ws" | "sockets" | "kobo" | "hot"))
        || args.accounts_out.is_some();
    let mut accounts = Vec::new();
    if need_accounts {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..args.concurrency {
            let node = i % bases.len();
            let (http, base, name) = (
                http.clone(),
                bases[node].clone(),
                format!("{}{i}", args.prefix),
            );
            let (ids, placement) = (node_ids.clone(), args.placement.clone());
            tasks.push(tokio::spawn(async move {
                let wanted = move |user: &str| {
                    let Some(p) = placement.as_deref() else {
                        return true;
                    };
                    let key = format!("user:{user}");
                    let owner = dogear_actors::cluster::rendezvous::owner(
                        ids.iter().map(String::as_str),
                        &key,
                    );
                    (owner == Some(ids[node].as_str())) == (p == "local")
                };
                register(&http, &base, &name, &wanted).await
            }));
        }
        for t in tasks {
            accounts.push(t.await.map_err(|e| e.to_string())??);
        }
        println!(
            "registered {} users in {:.1} s",
            accounts.len(),
            t.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = &args.accounts_out {
        let lines: String = accounts
            .iter()
            .map(|a| {
                format!(
                    "{} {} {} {} {}\n",
                    a.base, a.token, a.device, a.book, a.kobo
                )
            })
            .collect();
        std::fs::write(path, lines).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {} accounts to {}", accounts.len(), path.display());
    }
    let accounts = Arc::new(accounts);

    println!();
    println!(
        "concurrency {}, {} s per phase",
        args.concurrency, args.duration
    );
    println!();
    println!(
        "| phase            |  requests | errors |    req/s   | p50 ms  | p95 ms  | p99 ms  |  max ms  |"
    );
    println!(
        "|------------------|-----------|--------|------------|---------|---------|---------|----------|"
    );
    let mut results: Vec<Stats> = Vec::new();
    for p in &phases {
        let stats = match *p {
            "books" => {
                let (Some(user), Some(pw)) = (&args.user, &args.password) else {
                    return Err("the books phase needs --user and --password".into());
                };
                let r = post_json(
                    &http,
                    format!("{base}/v1/auth/login"),
                    None,
                    json!({"username": user, "password": pw}),
                )
                .await?;
                let token = r["access_token"]
                    .as_str()
                    .ok_or(format!("login: {r}"))?
                    .to_string();
                let (http, base) = (http.clone(), base.clone());
                phase("GET /v1/books page", args.concurrency, duration, move |i| {
                    let (http, base, token) = (http.clone(), base.clone(), token.clone());
                    let sort = ["title", "author", "added", "series", ""][i % 5];
                    async move {
                        let (mut ok, mut err, mut lat) = (0, 0, Vec::new());
                        let end = Instant::now() + duration;
                        let mut cursor: Option<String> = None;
                        while Instant::now() < end {
                            let mut url = format!("{base}/v1/books?limit=50&sort={sort}");
                            if let Some(c) = &cursor {
                                url.push_str("&cursor=");
                                url.push_str(&c.replace('~', "%7E"));
                            }
                            let t = Instant::now();
                            match http.get(&url).bearer_auth(&token).send().await {
                                Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                                    Ok(v) => {
                                        ok += 1;
                                        lat.push(t.elapsed().as_micros() as u64);
                                        cursor = v["next_cursor"].as_str().map(str::to_string);
                                    }
                                    Err(_) => err += 1,
                                },
                                _ => err += 1,
                            }
                        }
                        (ok, err, lat)
                    }
                })
                .await
            }
            "kobosync" => {
                kobo_full_sync(&http, &base, &args).await?;
                continue;
            }
            "failover" => {
                failover(&http, &bases, &node_ids, &args).await?;
                continue;
            }
            "kobo" => {
                let (http, accounts) = (http.clone(), accounts.clone());
                phase("Kobo state PUT", args.concurrency, duration, move |i| {
                    let (http, a) = (http.clone(), accounts[i].clone());
                    let url = format!("{}/v1/library/{}/state", a.kobo, a.book);
                    http_loop(duration, move |step| {
                        http.put(&url).json(&kobo_body(&a, step))
                    })
                })
                .await
            }
            "health" => {
                let (http, bases) = (http.clone(), bases.clone());
                phase("GET /health", args.concurrency, duration, move |i| {
                    let base = &bases[i % bases.len()];
                    let (http, url) = (http.clone(), format!("{base}/health"));
                    http_loop(duration, move |_| http.get(&url))
                })
                .await
            }
            "http" => {
                let (http, accounts) = (http.clone(), accounts.clone());
                phase("POST progress", args.concurrency, duration, move |i| {
                    let (http, a) = (http.clone(), accounts[i].clone());
                    let url = format!("{}/v1/books/{}/progress", a.base, a.book);
                    http_loop(duration, move |step| {
                        http.post(&url).bearer_auth(&a.token).json(&body(&a, step))
                    })
                })
                .await
            }
            "ws" => {
                let accounts = accounts.clone();
                phase("WS progress", args.concurrency, duration, move |i| {
                    let a = accounts[i].clone();
                    let url = format!(
                        "{}/v1/sync?device_id={}&access_token={}",
                        a.base.replacen("http", "ws", 1),
                        a.device,
                        a.token
                    );
                    async move {
                        let (mut ok, mut err, mut lat) = (0, 0, Vec::new());
                        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
                            return (0, 1, lat);
                        };
                        let _hello = ws.next().await;
                        let end = Instant::now() + duration;
                        let mut step = 1_000_000 / 2;
                        while Instant::now() < end {
                            step += 1;
                            let mut b = body(&a, step);
                            b["type"] = json!("progress");
                            b["book_id"] = json!(a.book);
                            let t = Instant::now();
                            if ws.send(Message::text(b.to_string())).await.is_err() {
                                err += 1;
                                break;
                            }
                            match ws.next().await {
                                Some(Ok(Message::Text(t2))) if t2.as_str().contains("\"ack\"") => {
                                    ok += 1;
                                    lat.push(t.elapsed().as_micros() as u64);
                                }
                                _ => err += 1,
                            }
                        }
                        let _ = ws.close(None).await;
                        (ok, err, lat)
                    }
                })
                .await
            }
            "sockets" => {
                let Some(pid) = args.pid else {
                    println!("(sockets phase skipped: needs --pid)");
                    continue;
                };
                tokio::time::sleep(Duration::from_secs(1)).await;
                let before = proc_kib(pid, "RssAnon").unwrap_or(0);
                let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
                let failed = Arc::new(AtomicU64::new(0));
                let t = Instant::now();
                let mut tasks = Vec::new();
                let per = args.sockets.div_ceil(16);
                for chunk in 0..16 {
                    let (held, failed, accounts) = (held.clone(), failed.clone(), accounts.clone());
                    let n = per.min(args.sockets.saturating_sub(chunk * per));
                    tasks.push(tokio::spawn(async move {
                        for k in 0..n {
                            let a = &accounts[(chunk * per + k) % accounts.len()];
                            let url = format!(
                                "{}/v1/sync?device_id={}&access_token={}",
                                a.base.replacen("http", "ws", 1),
                                a.device,
                                a.token
                            );
                            match tokio_tungstenite::connect_async(&url).await {
                                Ok((mut ws, _)) => {
                                    let _hello = ws.next().await;
                                    held.lock().await.push(ws);
                                }
                                Err(_) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
                let open = held.lock().await.len();
                tokio::time::sleep(Duration::from_secs(2)).await;
                let after = proc_kib(pid, "RssAnon").unwrap_or(0);
                println!(
                    "| idle sockets     | {open:>9} | {:>6} | opened in {:.1} s; RssAnon {before} -> {after} KiB = {:.1} KiB per socket |",
                    failed.load(Ordering::Relaxed),
                    t.elapsed().as_secs_f64(),
                    (after.saturating_sub(before)) as f64 / open.max(1) as f64
                );
                drop(held);
                continue;
            }
            "hot" => {
                let hot_out = args
                    .accounts_out
                    .as_ref()
                    .map(|p| p.with_extension("hot.txt"));
                hot_reader(&http, &accounts[0], args.hot_writers, duration, hot_out).await?
            }
            other => return Err(format!("unknown phase {other}")),
        };
        stats.print();
        results.push(stats);
    }
    println!();
    if let Some(h) = results.iter().find(|s| s.name == "GET /health") {
        for s in results.iter().filter(|s| s.name != "GET /health") {
            println!(
                "{} / GET /health throughput: {:.1}%",
                s.name,
                100.0 * s.rate() / h.rate()
            );
        }
    }
    if let Some(pid) = args.pid {
        println!(
            "server at the end: VmRSS {} KiB, RssAnon {} KiB",
            rss_kib(pid).unwrap_or(0),
            proc_kib(pid, "RssAnon").unwrap_or(0)
        );
    }
    Ok(())
}
