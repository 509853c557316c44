//! Configuration: built-in defaults, then the TOML file, then `DOGEAR_*` environment
//! variables, then command-line flags. Every problem is reported as one line naming the key.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub storage: Storage,
    pub auth: Auth,
    pub actors: Actors,
    pub import: Import,
    pub kobo: Kobo,
    pub koreader: Koreader,
    pub audit: Audit,
    pub log: Log,
    pub cluster: ClusterCfg,
    pub redis: Redis,
}

/// `[redis]`: optional; what nodes share that need not be durable.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Redis {
    /// `redis://host:port/db`; empty: no Redis (limits count per node).
    pub url: String,
}

/// `[cluster]`: several nodes sharing PostgreSQL and an S3 object store, each key owned by
/// one live node. An empty `node_id` means one node on its own.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterCfg {
    /// This node's id: unique in the cluster, stable across restarts. Empty: no cluster.
    pub node_id: String,
    /// Where this node accepts peers (`host:port`).
    pub listen: String,
    /// The address peers are told to dial to reach this node; empty: `listen`.
    pub advertise: String,
    /// Peers dialled at start and redialled when lost (usually every other node).
    pub seeds: Vec<String>,
    /// Names the cluster; nodes with another cookie are refused. Set it from the environment
    /// (`DOGEAR_CLUSTER__COOKIE`). It is not a secret handshake.
    pub cookie: String,
    /// How often each node checks every other.
    pub heartbeat_ms: u64,
    /// A peer silent this long is `down` and its keys move to the others.
    pub failure_timeout_ms: u64,
    /// Mutual TLS between nodes: this node's certificate chain (PEM). Empty: plain TCP.
    pub tls_cert: String,
    /// Its private key (PEM).
    pub tls_key: String,
    /// The CA (PEM) that signs every node's certificate; peers without one are refused.
    pub tls_ca: String,
    /// The name (DNS subject alternative name) every node's certificate carries.
    pub tls_server_name: String,
}

impl Default for ClusterCfg {
    fn default() -> Self {
        ClusterCfg {
            node_id: String::new(),
            listen: "127.0.0.1:7101".into(),
            advertise: String::new(),
            seeds: Vec::new(),
            cookie: String::new(),
            heartbeat_ms: 500,
            failure_timeout_ms: 3000,
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_ca: String::new(),
            tls_server_name: "dogear-cluster".into(),
        }
    }
}

impl std::fmt::Debug for ClusterCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCfg")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("cookie", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ClusterCfg {
    pub fn enabled(&self) -> bool {
        !self.node_id.trim().is_empty()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kobo {
    /// Most entries in one library-sync page (1-100).
    pub page_size: usize,
    /// `local`: Dogear answers the device's OAuth calls itself (devices without a Kobo
    /// account or internet); `kobo`: the device keeps refreshing its token with Kobo.
    pub oauth: KoboOauth,
}

impl Default for Kobo {
    fn default() -> Self {
        Kobo {
            page_size: 100,
            oauth: KoboOauth::Local,
        }
    }
}

/// `[audit]`: the audit log of shared libraries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// Days a deleted library's audit log is kept after the deletion (fractions allowed);
    /// 0 keeps it for ever. Live libraries' logs are always kept.
    pub retention_days: f64,
}

/// `[koreader]`: KOReader's progress sync (`/koreader`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Koreader {
    /// Let KOReader's "Register" create a Dogear account (with a KOReader login) when
    /// registration is open too. Off: KOReader users create a login in Dogear instead.
    pub registration: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KoboOauth {
    Local,
    Kobo,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Import {
    /// Files imported at once (0: one per core).
    pub workers: usize,
    pub max_upload_bytes: u64,
    /// Attempts for a file that fails for a passing reason (disk, object store).
    pub max_attempts: u32,
    /// How often watched folders and Calibre libraries are rescanned, events or not.
    pub scan_interval_secs: u64,
    pub folders: Vec<FolderSource>,
    pub calibre: Vec<CalibreSource>,
}

impl Default for Import {
    fn default() -> Self {
        Import {
            workers: 0,
            max_upload_bytes: 512 << 20,
            max_attempts: 5,
            scan_interval_secs: 300,
            folders: Vec::new(),
            calibre: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSource {
    pub path: PathBuf,
    /// A library id, or a user name for that user's personal library.
    pub library: String,
    #[serde(default = "yes")]
    pub watch: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibreSource {
    /// The Calibre library folder (the one holding metadata.db).
    pub path: PathBuf,
    pub library: String,
    #[serde(default = "yes")]
    pub watch: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: SocketAddr,
    /// The URL devices reach this server at (`https://books.example.org`), used in the
    /// URLs handed to Kobos. Empty: taken from each request's X-Forwarded-* or Host.
    pub public_url: String,
    pub max_body_bytes: usize,
    pub ws_ping_interval_secs: u64,
    /// Seconds to let in-flight requests finish at shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds a connection has to send a complete request head, counted from when it is
    /// ready for one (new, or idle after its last response): idle and dripping clients close.
    pub header_read_timeout_secs: u64,
    /// Keep connections open for further requests (HTTP keep-alive).
    pub keep_alive: bool,
    /// Open HTTP connections at most (lowered to fit the process's file limit).
    pub max_connections: usize,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            max_body_bytes: 1 << 20,
            ws_ping_interval_secs: 30,
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 10,
            keep_alive: true,
            max_connections: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One file in `data_dir`: one node, nothing to set up.
    Sqlite,
    /// A PostgreSQL server at `postgres_url`, shared by every node of a cluster.
    Postgres,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Full,
    Normal,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub backend: Backend,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub max_batch: usize,
    pub readers: usize,
    /// Where book files and covers go: empty for `data_dir/objects`, a folder, or
    /// `s3://bucket/prefix` (credentials and endpoint from the AWS_* environment).
    pub objects: String,
    /// Above 0: downloads of S3-stored files redirect to a presigned URL valid this long.
    pub presign_secs: u64,
    /// `postgres://user:password@host:port/database`, for `backend = "postgres"`.
    pub postgres_url: String,
    /// Connections to PostgreSQL this node keeps at most.
    pub postgres_pool_size: usize,
    /// A PostgreSQL statement (or lock wait) running longer is cancelled: the request fails
    /// with `503` instead of holding a connection.
    pub postgres_statement_timeout_secs: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            backend: Backend::Sqlite,
            data_dir: PathBuf::from("./data"),
            durability: Durability::Full,
            max_batch: 512,
            readers: 4,
            objects: String::new(),
            presign_secs: 0,
            postgres_url: String::new(),
            postgres_pool_size: 16,
            postgres_statement_timeout_secs: 10,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub access_ttl_secs: i64,
    pub refresh_ttl_days: i64,
    pub registration: Registration,
    pub login_max_failures: usize,
    pub login_window_secs: u64,
    /// A refresh token presented again this soon after its rotation gets the same new pair.
    pub refresh_grace_secs: u64,
    /// How long a web reader's token opens one book's parts.
    pub reader_token_secs: i64,
    /// HS256 secret for access tokens. Unset: a random one is kept in `data_dir/jwt.secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("refresh_ttl_days", &self.refresh_ttl_days)
            .field("registration", &self.registration)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Open,
    Closed,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            access_ttl_secs: 15 * 60,
            refresh_ttl_days: 30,
            registration: Registration::Open,
            login_max_failures: 5,
            login_window_secs: 15 * 60,
            refresh_grace_secs: 10,
            reader_token_secs: 12 * 3600,
            jwt_secret: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Actors {
    pub idle_timeout_secs: u64,
    pub socket_queue: usize,
    /// A client clock more than this far ahead of the server's is replaced by the server's.
    pub max_clock_skew_secs: u64,
    /// How long the answer to a request with an `Idempotency-Key` is kept for its retries.
    pub idempotency_ttl_secs: u64,
}

impl Default for Actors {
    fn default() -> Self {
        Actors {
            idle_timeout_secs: 600,
            socket_queue: 256,
            max_clock_skew_secs: 300,
            idempotency_ttl_secs: 86_400,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter: `info`, `dogear=debug,warp=info`, ... (`RUST_LOG` wins if set).
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
        }
    }
}

/// Flags given on the command line; `None` keeps what the file and environment said.
#[derive(Default)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
}

/// Loads the configuration. `Err` is one line for the operator.
pub fn load(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &Overrides,
) -> Result<Config, String> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
            text.parse::<toml::Table>().map_err(|e| {
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                    .unwrap_or(1);
                format!(
                    "config {} line {line}: {}",
                    path.display(),
                    e.message().trim()
                )
            })?
        }
        None => toml::Table::new(),
    };
    let defaults = toml::Table::try_from(Config::default()).map_err(|e| e.to_string())?;
    for (name, value) in env {
        let Some(key) = env_key(name) else { continue };
        set_path(&mut table, &defaults, &key, value)
            .map_err(|e| format!("environment {name}: {e}"))?;
    }
    let source = file.map_or("defaults".to_string(), |p| p.display().to_string());
    let mut cfg: Config = serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().message().trim().to_string();
        if path == "." {
            format!("config {source}: {inner}")
        } else {
            format!("config {source}: key `{path}`: {inner}")
        }
    })?;
    if let Some(d) = &flags.data {
        cfg.storage.data_dir = d.clone();
    }
    if let Some(l) = flags.listen {
        cfg.server.listen = l;
    }
    validate(&cfg)?;
    Ok(cfg)
}

fn validate(cfg: &Config) -> Result<(), String> {
    let checks: [(bool, &str, &str); 19] = [
        (
            (60..=31_536_000).contains(&cfg.actors.idempotency_ttl_secs),
            "actors.idempotency_ttl_secs",
            "must be from 60 seconds to 365 days",
        ),
        (
            cfg.audit.retention_days.is_finite()
                && cfg.audit.retention_days >= 0.0
                && cfg.audit.retention_days <= 36_500.0,
            "audit.retention_days",
            "must be a number of days from 0 (keep for ever) to 36500",
        ),
        (
            cfg.storage.backend != Backend::Postgres || !cfg.storage.postgres_url.trim().is_empty(),
            "storage.postgres_url",
            "must be set when storage.backend is \"postgres\"",
        ),
        (
            cfg.storage.postgres_pool_size > 0,
            "storage.postgres_pool_size",
            "must be positive",
        ),
        (
            cfg.storage.postgres_statement_timeout_secs > 0,
            "storage.postgres_statement_timeout_secs",
            "must be positive",
        ),
        (
            cfg.server.header_read_timeout_secs > 0,
            "server.header_read_timeout_secs",
            "must be positive",
        ),
        (
            cfg.server.max_connections > 0,
            "server.max_connections",
            "must be positive",
        ),
        (
            (1..=100).contains(&cfg.kobo.page_size),
            "kobo.page_size",
            "must be between 1 and 100",
        ),
        (
            cfg.server.public_url.is_empty()
                || ((cfg.server.public_url.starts_with("http://")
                    || cfg.server.public_url.starts_with("https://"))
                    && !cfg.server.public_url.contains(char::is_whitespace)),
            "server.public_url",
            "must be an http:// or https:// URL",
        ),
        (
            cfg.import.max_upload_bytes > 0,
            "import.max_upload_bytes",
            "must be positive",
        ),
        (
            cfg.import.max_attempts > 0,
            "import.max_attempts",
            "must be positive",
        ),
        (
            cfg.import.scan_interval_secs > 0,
            "import.scan_interval_secs",
            "must be positive",
        ),
        (
            cfg.auth.access_ttl_secs > 0,
            "auth.access_ttl_secs",
            "must be positive",
        ),
        (
            cfg.auth.refresh_ttl_days > 0,
            "auth.refresh_ttl_days",
            "must be positive",
        ),
        (
            (1..=7 * 24 * 3600).contains(&cfg.auth.reader_token_secs),
            "auth.reader_token_secs",
            "must be 1 second to 7 days",
        ),
        (
            cfg.actors.idle_timeout_secs > 0,
            "actors.idle_timeout_secs",
            "must be positive",
        ),
        (
            cfg.actors.socket_queue > 0,
            "actors.socket_queue",
            "must be positive",
        ),
        (
            cfg.storage.max_batch > 0,
            "storage.max_batch",
            "must be positive",
        ),
        (
            cfg.server.ws_ping_interval_secs > 0,
            "server.ws_ping_interval_secs",
            "must be positive",
        ),
    ];
    for (ok, key, msg) in checks {
        if !ok {
            return Err(format!("config: key `{key}`: {msg}"));
        }
    }
    if let Some(s) = &cfg.auth.jwt_secret
        && s.len() < 32
    {
        return Err("config: key `auth.jwt_secret`: must be at least 32 characters".into());
    }
    if cfg.cluster.enabled() {
        validate_cluster(cfg)?;
    }
    let redis = cfg.redis.url.trim();
    if !redis.is_empty() && !redis.starts_with("redis://") {
        return Err("config: key `redis.url`: must be a redis://host:port URL".into());
    }
    Ok(())
}

/// What a cluster needs shared: refuses per-node pieces by name, at start.
fn validate_cluster(cfg: &Config) -> Result<(), String> {
    let c = &cfg.cluster;
    let fail = |key: &str, msg: &str| Err(format!("config: key `{key}`: {msg}"));
    if !c
        .node_id
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
        || c.node_id.len() > 64
    {
        return fail(
            "cluster.node_id",
            "must be 1-64 letters, digits, '-', '_' or '.'",
        );
    }
    if c.listen.parse::<SocketAddr>().is_err() {
        return fail("cluster.listen", "must be an address like 127.0.0.1:7101");
    }
    if c.cookie.trim().is_empty() {
        return fail(
            "cluster.cookie",
            "must be set in a cluster (the same on every node; DOGEAR_CLUSTER__COOKIE)",
        );
    }
    if c.heartbeat_ms == 0 || c.failure_timeout_ms < 2 * c.heartbeat_ms {
        return fail(
            "cluster.failure_timeout_ms",
            "must be at least twice cluster.heartbeat_ms (and the heartbeat positive)",
        );
    }
    let tls = [&c.tls_cert, &c.tls_key, &c.tls_ca];
    if tls.iter().any(|p| !p.trim().is_empty()) && tls.iter().any(|p| p.trim().is_empty()) {
        return fail(
            "cluster.tls_cert",
            "TLS between nodes needs cluster.tls_cert, cluster.tls_key and cluster.tls_ca together",
        );
    }
    if cfg.storage.backend != Backend::Postgres {
        return fail(
            "storage.backend",
            "a cluster needs a store every node shares: set \"postgres\" (each node's SQLite file would be its own)",
        );
    }
    if !cfg.storage.objects.trim().starts_with("s3://") {
        return fail(
            "storage.objects",
            "a cluster needs an object store every node reaches: set s3://bucket/prefix (a local folder is this node's alone)",
        );
    }
    if cfg.auth.jwt_secret.is_none() {
        return fail(
            "auth.jwt_secret",
            "must be set, the same on every node of a cluster (a token signed by one node is checked by all)",
        );
    }
    Ok(())
}

/// `DOGEAR_LISTEN` and `DOGEAR_DATA` are shorthands; `DOGEAR_SECTION__KEY` sets any key.
fn env_key(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix("DOGEAR_")?;
    match rest {
        "LISTEN" => Some(vec!["server".into(), "listen".into()]),
        "DATA" => Some(vec!["storage".into(), "data_dir".into()]),
        "CONFIG" | "LOG" | "BIN" => None,
        _ if rest.contains("__") => {
            Some(rest.split("__").map(|p| p.to_ascii_lowercase()).collect())
        }
        _ => None,
    }
}

/// Sets `key` to `raw`, typed like the default at that key (strings stay strings).
fn set_path(
    table: &mut toml::Table,
    defaults: &toml::Table,
    key: &[String],
    raw: &str,
) -> Result<(), String> {
    let (last, parents) = key.split_last().ok_or("empty key")?;
    let mut t = table;
    let mut d = Some(defaults);
    for p in parents {
        d = d.and_then(|d| d.get(p)).and_then(|v| v.as_table());
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a section"))?;
    }
    let value = match d.and_then(|d| d.get(last)) {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            raw.parse()
                .map_err(|_| format!("`{}` must be an integer", key.join(".")))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            raw.parse()
                .map_err(|_| format!("`{}` must be true or false", key.join(".")))?,
        ),
        Some(toml::Value::Float(_)) => toml::Value::Float(
            raw.parse()
                .map_err(|_| format!("`{}` must be a number", key.join(".")))?,
        ),
        // Lists of strings (`cluster.seeds`) are written comma-separated.
        Some(toml::Value::Array(_)) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| toml::Value::String(x.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    };
    t.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile_dir::Dir, PathBuf) {
        let dir = tempfile_dir::Dir::new();
        let p = dir.0.join("c.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    /// A tiny temp dir so the node crate needs no test dependency.
    mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!("dogear-cfg-{}", uuid_like()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        fn uuid_like() -> String {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            format!("{}-{}", std::process::id(), t.as_nanos())
        }
    }

    #[test]
    fn layers_apply_in_order() {
        let (_d, p) =
            write("[server]\nlisten = \"127.0.0.1:9000\"\n[actors]\nidle_timeout_secs = 5\n");
        let env = vec![
            (
                "DOGEAR_ACTORS__IDLE_TIMEOUT_SECS".to_string(),
                "7".to_string(),
            ),
            ("DOGEAR_DATA".to_string(), "/tmp/x".to_string()),
            (
                "DOGEAR_AUTH__JWT_SECRET".to_string(),
                "12345678901234567890123456789012".to_string(),
            ),
        ];
        let cfg = load(Some(&p), &env, &Overrides::default()).unwrap();
        assert_eq!(cfg.server.listen.port(), 9000);
        assert_eq!(cfg.actors.idle_timeout_secs, 7);
        assert_eq!(cfg.storage.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(
            cfg.auth.jwt_secret.as_deref(),
            Some("12345678901234567890123456789012")
        );
        let flags = Overrides {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            data: None,
        };
        assert_eq!(
            load(Some(&p), &env, &flags).unwrap().server.listen.port(),
            1
        );
    }

    /// Every key of the config struct, as `section.key` (`import.folders[].path` inside
    /// arrays of tables).
    fn every_key() -> Vec<String> {
        fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(inner) => walk(&key, inner, out),
                    toml::Value::Array(items)
                        if !items.is_empty() && items.iter().all(|i| i.is_table()) =>
                    {
                        for item in items.iter().filter_map(|i| i.as_table()).take(1) {
                            walk(&format!("{key}[]"), item, out);
                        }
                    }
                    _ => out.push(key),
                }
            }
        }
        let mut cfg = Config::default();
        cfg.auth.jwt_secret = Some("x".repeat(32));
        cfg.import.folders.push(FolderSource {
            path: "/books".into(),
            library: "ada".into(),
            watch: true,
        });
        cfg.import.calibre.push(CalibreSource {
            path: "/calibre".into(),
            library: "ada".into(),
            watch: true,
        });
        let mut out = Vec::new();
        walk("", &toml::Table::try_from(cfg).unwrap(), &mut out);
        out
    }

    /// `docs/configuration.md` and the annotated `cluster.toml` cannot drift from the struct:
    /// a key added to `Config` without its documentation fails here.
    #[test]
    fn every_key_is_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let doc = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
        let example = std::fs::read_to_string(root.join("cluster.toml")).unwrap();
        let keys = every_key();
        assert!(keys.len() > 30, "{keys:?}");
        for key in &keys {
            assert!(
                doc.contains(&format!("`{key}`")),
                "docs/configuration.md does not document `{key}`"
            );
            let last = key.rsplit('.').next().unwrap();
            assert!(
                example.lines().any(|l| l
                    .trim_start_matches(['#', ' '])
                    .starts_with(&format!("{last} ="))),
                "cluster.toml has no line for `{key}`"
            );
        }
        // And nothing documented that does not exist.
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let key = line[3..].split('`').next().unwrap();
            assert!(
                keys.iter().any(|k| k == key),
                "docs/configuration.md documents unknown `{key}`"
            );
        }
    }

    #[test]
    fn errors_are_one_line_naming_the_key() {
        let (_d, p) = write("[server]\nlisten = \"nowhere\"\n");
        let e = load(Some(&p), &[], &Overrides::default()).unwrap_err();
        assert!(e.contains("server.listen"), "{e}");
        let (_d, p) = write("[server]\nlisen = \"127.0.0.1:1\"\n");
        let e = load(Some(&p), &[], &Overrides::default()).unwrap_err();
        assert!(e.contains("server") && e.contains("lisen"), "{e}");
        let (_d, p) = write("[server\nlisten = 1\n");
        let e = load(Some(&p), &[], &Overrides::default()).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let env = vec![(
            "DOGEAR_ACTORS__SOCKET_QUEUE".to_string(),
            "many".to_string(),
        )];
        let e = load(None, &env, &Overrides::default()).unwrap_err();
        assert!(
            e.contains("DOGEAR_ACTORS__SOCKET_QUEUE") && e.contains("actors.socket_queue"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        let (_d, p) = write("[auth]\naccess_ttl_secs = 0\n");
        let e = load(Some(&p), &[], &Overrides::default()).unwrap_err();
        assert!(e.contains("auth.access_ttl_secs"), "{e}");
    }
}
