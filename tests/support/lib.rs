//! Helpers for end-to-end tests: start a real `dogear` process on a free loopback port with
//! its own data directory, and talk to it over real HTTP and WebSocket connections.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub use serde_json;
pub use tokio_tungstenite::tungstenite;

/// The `dogear` binary: `$DOGEAR_BIN`, or `target/<profile>/dogear` beside the test binary.
pub mod cluster;
pub mod kobo;
pub mod proxy;

pub fn dogear_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DOGEAR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/dogear
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("dogear");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p dogear), or set DOGEAR_BIN",
        bin.display()
    );
    bin
}

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub ws_base: String,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
}

impl Server {
    /// A fresh node with a fresh data directory.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A fresh node with extra `DOGEAR_*` environment settings.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut s = Server::spawn(&data, &env);
        s._tmp = Some(tmp);
        s
    }

    fn spawn(data: &Path, env: &[(String, String)]) -> Server {
        std::fs::create_dir_all(data).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("server.log"))
            .expect("log file");
        let mut cmd = Command::new(dogear_bin());
        cmd.arg("--data")
            .arg(data)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn dogear");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split(';').next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "dogear did not start; see {}",
                    data.join("server.log").display()
                )
            });
        Server {
            child: Some(child),
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
            data: data.to_path_buf(),
            _tmp: None,
            env: env.to_vec(),
        }
    }

    /// Sets (or replaces) an environment variable for the next `restart`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        for _ in 0..300 {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        None
    }

    /// Starts a new process on the same data directory (after kill9 or terminate).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        let mut next = Server::spawn(&self.data, &self.env);
        self.base = next.base.clone();
        self.ws_base = next.ws_base.clone();
        self.child = next.child.take();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let r = reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("metrics");
        r.text().await.expect("metrics body")
    }

    pub fn client(&self) -> Api {
        Api {
            http: http_client(),
            base: self.base.clone(),
            token: None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        // A failing test shows what each of its servers logged at warning level and above.
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- {} (warnings and errors)\n{}",
                self.base,
                tail.join("\n")
            );
        }
    }
}

/// The answer to a request: status, headers and parsed JSON (Null for an empty body).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// Reads a whole response: JSON body parsed (a string if it is not JSON).
    pub async fn of(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Asserts the error shape: `{"error":{"code","message"}}` with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) -> &str {
        assert_eq!(self.status, status, "status; body {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "code; body {}", self.body);
        self.body["error"]["message"]
            .as_str()
            .expect("error message")
    }
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Api {
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// The same caller, sending one more header with every request.
    pub fn with_header(&self, name: &'static str, value: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(name, value.parse().expect("header value"));
        Api {
            http: reqwest::Client::builder()
                .default_headers(headers)
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
            ..self.clone()
        }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        Resp::of(rb.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, Some(&body.to_string())).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send("PATCH", path, Some(&body.to_string())).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None).await
    }

    /// `POST /v1/books/upload` with the file as the raw body.
    pub async fn upload(&self, bytes: Vec<u8>, filename: &str, library: Option<&str>) -> Resp {
        let mut url = format!("{}/v1/books/upload", self.base);
        if let Some(l) = library {
            url.push_str(&format!("?library_id={l}"));
        }
        let mut rb = self.http.post(url).body(bytes).header(
            "content-disposition",
            format!("attachment; filename*=UTF-8''{}", encode(filename)),
        );
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.expect("upload");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            headers,
            body,
        }
    }

    /// A GET whose body is bytes, with extra request headers.
    pub async fn get_bytes(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let mut rb = self.http.get(format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let h = r.headers().clone();
        (status, h, r.bytes().await.expect("body").to_vec())
    }

    /// Polls `GET /v1/imports/{id}` until the job is done or failed.
    pub async fn wait_job(&self, job: &str) -> Value {
        for _ in 0..1200 {
            let r = self.get(&format!("/v1/imports/{job}")).await;
            assert_eq!(r.status, 200, "{}", r.body);
            if r.body["state"] == "done" || r.body["state"] == "failed" {
                return r.body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("import {job} did not finish in 60 s");
    }

    /// Every book the caller sees (all pages).
    pub async fn all_books(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/books?limit=7&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", encode(c)));
            }
            let r = self.get(&path).await;
            assert_eq!(r.status, 200, "{}", r.body);
            out.extend(r.body["items"].as_array().expect("items").iter().cloned());
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }
}

/// Percent-encodes everything but unreserved characters.
/// An HTTP client whose pooled connections are dropped after 5 s idle: the server closes a
/// keep-alive connection that sends nothing for `server.header_read_timeout_secs` (10 s),
/// and a pooled connection it closed would fail the next request with "incomplete message"
/// (seen when a slow KEPUB download kept the other connection idle past 10 s).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `tests/fixtures`: the books, the Calibre library and the captures the tests use.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// `fixtures/expected.json`.
pub fn expected() -> Value {
    let raw = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    serde_json::from_str(&raw).expect("expected.json parses")
}

/// Waits until `f` returns `Some`, polling every 100 ms for up to `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..secs * 10 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// A registered user with one device and one book, ready to write progress.
pub struct Reader {
    pub api: Api,
    pub user_id: String,
    pub username: String,
    pub refresh: String,
    pub device: String,
    pub book: String,
}

impl Reader {
    pub async fn new(server: &Server, name: &str) -> Reader {
        let anon = server.client();
        let r = anon
            .post(
                "/v1/auth/register",
                json!({"username": name, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status, 201, "register {name}: {}", r.body);
        let api = anon.with_token(r.body["access_token"].as_str().unwrap());
        let device = api
            .post("/v1/devices", json!({"name": "e-reader", "kind": "kobo"}))
            .await;
        assert_eq!(device.status, 201, "{}", device.body);
        let book = api
            .post(
                "/v1/books",
                json!({"title": "Hamlet", "authors": ["William Shakespeare"]}),
            )
            .await;
        assert_eq!(book.status, 201, "{}", book.body);
        Reader {
            user_id: r.body["user"]["id"].as_str().unwrap().to_string(),
            username: name.to_string(),
            refresh: r.body["refresh_token"].as_str().unwrap().to_string(),
            device: device.body["id"].as_str().unwrap().to_string(),
            book: book.body["id"].as_str().unwrap().to_string(),
            api,
        }
    }

    pub async fn add_device(&self, kind: &str) -> String {
        let d = self
            .api
            .post("/v1/devices", json!({"name": kind, "kind": kind}))
            .await;
        assert_eq!(d.status, 201, "{}", d.body);
        d.body["id"].as_str().unwrap().to_string()
    }

    pub async fn add_book(&self, title: &str) -> String {
        let b = self
            .api
            .post("/v1/books", json!({"title": title, "authors": ["Anon"]}))
            .await;
        assert_eq!(b.status, 201, "{}", b.body);
        b.body["id"].as_str().unwrap().to_string()
    }

    pub async fn write(&self, book: &str, body: Value) -> Resp {
        self.api
            .post(&format!("/v1/books/{book}/progress"), body)
            .await
    }

    pub fn token(&self) -> &str {
        self.api.token.as_deref().unwrap()
    }
}

pub fn event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A progress body at `percent` from `device`, with the device clock at `ts_ms`.
pub fn progress(device: &str, percent: f64, ts_ms: i64) -> Value {
    json!({
        "event_id": event_id(),
        "device_id": device,
        "percent": percent,
        "locator": format!("epubcfi(/6/4!/4/2[p{percent}])"),
        "client_ts": ts(ts_ms),
    })
}

/// RFC 3339 UTC with milliseconds for `ms` since 2026-01-01.
pub fn ts(ms: i64) -> String {
    let base = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let t = base + ms;
    let secs = t.div_euclid(1000);
    let millis = t.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client of `/v1/sync`.
pub struct Socket {
    pub ws: WsStream,
}

impl Socket {
    /// Connects with the bearer header and reads the `hello`; returns it too.
    pub async fn connect(server: &Server, token: &str, device: &str) -> (Socket, Value) {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("{}/v1/sync?device_id={device}", server.ws_base)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("ws connect");
        let mut s = Socket { ws };
        let hello = s.next_json().await.expect("hello");
        assert_eq!(hello["type"], "hello", "{hello}");
        (s, hello)
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("ws send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("ws send");
    }

    /// The next JSON text frame within 10 s (pings skipped); `None` on close or timeout.
    pub async fn next_json(&mut self) -> Option<Value> {
        self.next_json_within(Duration::from_secs(10)).await
    }

    pub async fn next_json_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match m {
                Message::Text(t) => {
                    return Some(serde_json::from_str(t.as_str()).expect("json frame"));
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until the close frame and returns its code.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }
}

/// The entries of a zip file by name, inflated.
pub fn zip_entries(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    // A tiny reader for a test: the central directory lists every entry.
    let mut out = std::collections::BTreeMap::new();
    let eocd = bytes
        .windows(4)
        .rposition(|w| w == [0x50, 0x4b, 0x05, 0x06])
        .expect("EOCD");
    let count = u16::from_le_bytes([bytes[eocd + 10], bytes[eocd + 11]]) as usize;
    let mut p = u32::from_le_bytes(bytes[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    for _ in 0..count {
        assert_eq!(&bytes[p..p + 4], [0x50, 0x4b, 0x01, 0x02]);
        let method = u16::from_le_bytes([bytes[p + 10], bytes[p + 11]]);
        let csize = u32::from_le_bytes(bytes[p + 20..p + 24].try_into().unwrap()) as usize;
        let nlen = u16::from_le_bytes([bytes[p + 28], bytes[p + 29]]) as usize;
        let elen = u16::from_le_bytes([bytes[p + 30], bytes[p + 31]]) as usize;
        let clen = u16::from_le_bytes([bytes[p + 32], bytes[p + 33]]) as usize;
        let local = u32::from_le_bytes(bytes[p + 42..p + 46].try_into().unwrap()) as usize;
        let name = String::from_utf8(bytes[p + 46..p + 46 + nlen].to_vec()).unwrap();
        let lnlen = u16::from_le_bytes([bytes[local + 26], bytes[local + 27]]) as usize;
        let lelen = u16::from_le_bytes([bytes[local + 28], bytes[local + 29]]) as usize;
        let data = &bytes[local + 30 + lnlen + lelen..local + 30 + lnlen + lelen + csize];
        let content = match method {
            0 => data.to_vec(),
            8 => {
                let mut v = Vec::new();
                flate_inflate(data, &mut v);
                v
            }
            m => panic!("method {m}"),
        };
        out.insert(name, content);
        p += 46 + nlen + elen + clen;
    }
    out
}

fn flate_inflate(data: &[u8], out: &mut Vec<u8>) {
    out.extend(python_filter(
        "import sys,zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read(), -15))",
        data,
    ));
}

/// Gzip-compressed bytes, inflated.
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    python_filter(
        "import sys,gzip; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))",
        data,
    )
}

/// Runs `data` through a python one-liner (stdin to stdout): the system's zlib, to keep the
/// test crate free of a compression dependency.
fn python_filter(script: &str, data: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert!(child.wait().unwrap().success(), "{script}");
    out
}

/// A node configured with `config` (TOML), with user `name` registered first (while
/// registration is open), and that user's client pointed at the restarted node.
pub async fn node_with(config: &str, name: &str, extra_env: &[(&str, &str)]) -> (Server, Reader) {
    let mut server = Server::start_with(extra_env);
    let me = Reader::new(&server, name).await;
    server.terminate();
    let path = server.data.parent().unwrap().join("dogear.toml");
    std::fs::write(&path, config).unwrap();
    server.set_env("DOGEAR_CONFIG", path.to_str().unwrap());
    server.restart();
    let api = Api {
        base: server.base.clone(),
        ..me.api.clone()
    };
    let me = Reader { api, ..me };
    (server, me)
}

/// Copies a folder tree (fixtures are read-only; sources need a copy they may change).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A new, empty database on the PostgreSQL server `scripts/test.sh` starts
/// (`DOGEAR_TEST_POSTGRES`, a URL whose user may create databases); returns its URL.
pub async fn fresh_postgres() -> String {
    let admin = std::env::var("DOGEAR_TEST_POSTGRES").expect(
        "DOGEAR_TEST_POSTGRES is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    );
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(conn);
    let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').expect("URL with a database").0;
    format!("{base}/{name}")
}

/// The value of the sample `series` (name and labels exactly as exposed) in Prometheus
/// text, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Creates the administrator `root` (password `correct horse battery`) with
/// `dogear user add` in a throwaway data directory, against the store `env` configures.
pub fn add_admin(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().unwrap_or(".");
    let (code, out, err) = run_cli(
        &[
            "--data",
            data,
            "user",
            "add",
            "root",
            "--admin",
            "--password-stdin",
        ],
        env,
        Some("correct horse battery\n"),
    );
    assert_eq!(code, 0, "user add: {out}{err}");
}

/// Runs the `dogear` binary to completion: exit code, stdout, stderr.
pub fn run_cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(dogear_bin());
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn dogear");
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("dogear ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Posts forward progress writes to `book` from `device` until the server stops answering,
/// and keeps each body the server acknowledged as applied in `acked`. `writer` (0 or 1)
/// interleaves the percents of two streams on one book.
/// Posts one progress body; the answer while the server answers `200`, `None` once it
/// stops (killed, or refusing).
pub async fn post_progress(api: &Api, book: &str, body: &Value) -> Option<Value> {
    let r = api
        .http
        .post(format!("{}/v1/books/{book}/progress", api.base))
        .bearer_auth(api.token.as_deref().unwrap_or_default())
        .json(body)
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json::<Value>().await.ok()
}

pub fn write_stream(
    api: Api,
    book: String,
    device: String,
    writer: i64,
    acked: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for step in 0..100_000i64 {
            let pct = ((step * 2 + writer) as f64 * 0.001).min(100.0);
            let body = progress(&device, pct, step);
            let Some(v) = post_progress(&api, &book, &body).await else {
                return;
            };
            if v["applied"] == true
                && let Ok(mut a) = acked.lock()
            {
                a.push(body);
            }
        }
    })
}
