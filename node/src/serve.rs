//! Wiring: storage, actors and gateway started in order and stopped in reverse.

use crate::config::{Backend, Config, Durability, Registration};
use base64::Engine;
use dogear_actors::Dogear;
use dogear_actors::auth::{AuthSettings, JwtKeys};
use dogear_actors::cluster::tls::{Tls, TlsFiles};
use dogear_actors::cluster::{Cluster, ClusterSettings};
use dogear_actors::import::calibre::CalibreConfig;
use dogear_actors::import::folder::FolderConfig;
use dogear_actors::import::pipeline::ImportSettings;
use dogear_actors::placement::ActorSettings;
use dogear_gateway::{Ctx, GatewaySettings};
use dogear_storage::postgres::{self, PostgresOptions, PostgresStore};
use dogear_storage::sqlite::{self, SqliteOptions, SqliteStore};
use dogear_storage::{LibraryId, LibraryKind, Objects, Store};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn init_tracing(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Creates the data directory readable by this user alone (`0700`, files `0600`): the
/// database holds password hashes, token hashes and every reader's history. Files made later by
/// this process (the WAL, objects, staging) get the same modes through the umask.
fn prepare_data_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    let tighten = |p: &Path, mode: u32| -> Result<(), String> {
        let meta = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("cannot restrict {}: {e}", p.display()))?;
        }
        Ok(())
    };
    tighten(dir, 0o700)?;
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            tighten(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

/// The data directory's lock, held for the life of the process.
static DATA_LOCK: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// Takes an exclusive lock on `data_dir/dogear.lock`, so that two nodes never run actors for
/// the same readers on one database. The kernel releases it when this process ends, however
/// it ends, so a crash leaves nothing to clean up.
fn lock_data_dir(dir: &Path) -> Result<(), String> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("dogear.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(format!(
                "data directory {} is in use: another dogear process{who} holds the lock {}; \
                 stop it, or give this one another --data directory",
                dir.display(),
                path.display()
            ));
        }
        return Err(format!("cannot lock {}: {err}", path.display()));
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = write!(f, "{}", std::process::id());
    let _ = f.sync_all();
    let _ = DATA_LOCK.set(f);
    Ok(())
}

/// The configured store, migrated and ready, and how to name it in the start-up line.
pub(crate) async fn open_store(cfg: &Config) -> Result<(Arc<dyn Store>, String), String> {
    match cfg.storage.backend {
        Backend::Sqlite => {
            let dir = &cfg.storage.data_dir;
            prepare_data_dir(dir)?;
            let opts = SqliteOptions {
                durability: match cfg.storage.durability {
                    Durability::Full => sqlite::Durability::Full,
                    Durability::Normal => sqlite::Durability::Normal,
                },
                max_batch: cfg.storage.max_batch,
                readers: cfg.storage.readers,
            };
            let path = dir.join("dogear.db");
            let store = SqliteStore::open(&path, opts)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let durability = match cfg.storage.durability {
                Durability::Full => "full",
                Durability::Normal => "normal",
            };
            Ok((
                Arc::new(store),
                format!(
                    "sqlite, schema v{}, durability {durability}",
                    sqlite::SCHEMA_VERSION
                ),
            ))
        }
        Backend::Postgres => {
            let url = cfg.storage.postgres_url.trim();
            let opts = PostgresOptions {
                pool_size: cfg.storage.postgres_pool_size,
                statement_timeout: Duration::from_secs(cfg.storage.postgres_statement_timeout_secs),
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect(url, opts).await.map_err(|e| {
                format!(
                    "cannot open PostgreSQL at {} (key `storage.postgres_url`): {e}",
                    redact_url(url)
                )
            })?;
            Ok((
                Arc::new(store),
                format!(
                    "postgres {}, schema v{}",
                    redact_url(url),
                    postgres::SCHEMA_VERSION
                ),
            ))
        }
    }
}

/// The URL without its password, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

/// The configured secret, or the one kept in the data directory (made on first start).
fn jwt_keys(cfg: &Config) -> Result<JwtKeys, String> {
    if let Some(s) = &cfg.auth.jwt_secret {
        return Ok(JwtKeys::from_secret(s.as_bytes()));
    }
    let path = cfg.storage.data_dir.join("jwt.secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => Ok(JwtKeys::from_secret(s.trim().as_bytes())),
        Ok(_) => Err(format!(
            "{} is too short; delete it to make a new one",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut buf = [0u8; 48];
            getrandom::fill(&mut buf).map_err(|e| format!("no randomness: {e}"))?;
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf);
            write_private(&path, &secret)?;
            Ok(JwtKeys::from_secret(secret.as_bytes()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, content: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(content.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn auth_settings(cfg: &Config) -> AuthSettings {
    AuthSettings {
        access_ttl_secs: cfg.auth.access_ttl_secs,
        refresh_ttl_secs: cfg.auth.refresh_ttl_days * 24 * 3600,
        registration_open: cfg.auth.registration == Registration::Open,
        login_max_failures: cfg.auth.login_max_failures,
        login_window_secs: cfg.auth.login_window_secs,
        refresh_grace_secs: cfg.auth.refresh_grace_secs,
        reader_token_secs: cfg.auth.reader_token_secs,
    }
}

fn install_metrics() -> Result<PrometheusHandle, String> {
    let secs = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let sizes = [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &secs)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("dogear_storage_batch_size".into()), &sizes)
        })
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))
}

/// Lets one process hold many idle sockets: raise the open-file limit to its hard maximum.
/// The configured connection cap, lowered to fit the file limit: every connection is a file
/// descriptor, and the database, the object store and the watchers need some too.
fn max_connections(configured: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        return configured;
    }
    let room = (lim.rlim_cur as usize).saturating_sub(256).max(16);
    if configured > room {
        tracing::warn!(
            configured,
            allowed = room,
            "server.max_connections is above what the file limit allows; using the lower number"
        );
    }
    configured.min(room)
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

pub async fn serve(cfg: Config) -> Result<(), String> {
    raise_fd_limit();
    let metrics = install_metrics()?;
    dogear_gateway::describe_metrics();
    // The recorder keeps every histogram sample until drained; without periodic upkeep a
    // node nobody scrapes grows without bound.
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let (app, objects, described) = start_app(&cfg, true).await?;
    let app = Arc::new(app);
    let folders = folder_sources(&cfg, app.importer().store()).await?;
    let calibres = calibre_sources(&cfg, app.importer().store()).await?;
    app.start_imports(folders, calibres)
        .await
        .map_err(|e| format!("starting imports: {e}"))?;
    if cfg.audit.retention_days > 0.0 {
        // Deleted libraries' audit logs past the retention: checked a few times per period
        // (at most hourly), on every node alike (removing them twice removes nothing more).
        let retention = Duration::from_secs_f64(cfg.audit.retention_days * 86_400.0);
        let period = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3_600));
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                every.tick().await;
                match app.purge_audit(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(entries = n, "audit logs of deleted libraries removed"),
                    Err(e) => tracing::warn!(error = %e, "audit retention not applied"),
                }
            }
        });
    }
    {
        // Answers of idempotent requests past their time, every few minutes on every node.
        let app = app.clone();
        let period = Duration::from_secs(cfg.actors.idempotency_ttl_secs / 4)
            .clamp(Duration::from_secs(15), Duration::from_secs(600));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                every.tick().await;
                if let Err(e) = app.purge_idempotent_answers().await {
                    tracing::warn!(error = %e, "expired idempotency keys not removed");
                }
            }
        });
    }
    {
        // Books stored by an older Dogear get the digests KOReader knows them by.
        let app = app.clone();
        tokio::spawn(async move {
            match app.backfill_koreader_digests().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(books = n, "KOReader digests computed for older books"),
                Err(e) => {
                    tracing::warn!(error = %e, "KOReader digests of older books not computed")
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.server.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = Arc::new(Ctx {
        app: app.clone(),
        metrics,
        settings: GatewaySettings {
            max_body_bytes: cfg.server.max_body_bytes,
            max_upload_bytes: cfg.import.max_upload_bytes,
            ws_ping_interval: Duration::from_secs(cfg.server.ws_ping_interval_secs),
            public_url: Some(cfg.server.public_url.trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty()),
            kobo_page_size: cfg.kobo.page_size,
            kobo_local_oauth: cfg.kobo.oauth == crate::config::KoboOauth::Local,
            koreader_registration: cfg.koreader.registration,
        },
        shutdown: stop_rx,
    });
    let data = std::fs::canonicalize(&cfg.storage.data_dir).unwrap_or(cfg.storage.data_dir.clone());
    println!(
        "dogear {} listening on http://{addr}; data in {} ({described}, objects {objects})",
        env!("CARGO_PKG_VERSION"),
        data.display(),
    );
    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = dogear_gateway::ConnLimits {
        header_read_timeout: Duration::from_secs(cfg.server.header_read_timeout_secs),
        keep_alive: cfg.server.keep_alive,
        max_connections: max_connections(cfg.server.max_connections),
    };
    let server = tokio::spawn(dogear_gateway::serve(listener, ctx, limits, async move {
        let _ = signal_rx.await;
    }));
    shutdown_signal().await;
    tracing::info!("shutting down: closing sockets, finishing requests");
    let _ = stop_tx.send(true);
    let _ = signal_tx.send(());
    let grace = Duration::from_secs(cfg.server.shutdown_grace_secs);
    if tokio::time::timeout(grace, server).await.is_err() {
        tracing::warn!("requests still running after {grace:?}; stopping anyway");
    }
    app.leave_cluster();
    app.shutdown().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Opens the store and the object store and starts the actors (not the import sources).
/// Also returns how the object store and the store are described at start-up.
pub async fn start_app(
    cfg: &Config,
    join_cluster: bool,
) -> Result<(Dogear, String, String), String> {
    prepare_data_dir(&cfg.storage.data_dir)?;
    lock_data_dir(&cfg.storage.data_dir)?;
    let (store, described_store) = open_store(cfg).await?;
    let keys = jwt_keys(cfg)?;
    let actors = ActorSettings {
        idle_timeout: Duration::from_secs(cfg.actors.idle_timeout_secs),
        socket_queue: cfg.actors.socket_queue,
        max_clock_skew: Duration::from_secs(cfg.actors.max_clock_skew_secs),
        idempotency_ttl: Duration::from_secs(cfg.actors.idempotency_ttl_secs),
    };
    let objects = if cfg.storage.objects.trim().is_empty() {
        Objects::local(&cfg.storage.data_dir.join("objects"))
    } else {
        let presign =
            (cfg.storage.presign_secs > 0).then(|| Duration::from_secs(cfg.storage.presign_secs));
        Objects::from_url(cfg.storage.objects.trim(), presign)
    }
    .map_err(|e| format!("config: key `storage.objects`: {e}"))?;
    let described = objects.describe().to_string();
    let staging = cfg.storage.data_dir.join("staging");
    clean_staging(&staging);
    let workers = match cfg.import.workers {
        // Four per core: the CPU stages run on one thread per core anyway; the other jobs
        // meanwhile wait for the disk, the object store or their commit.
        0 => {
            4 * std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
        n => n,
    };
    let imports = ImportSettings {
        staging_dir: staging,
        workers,
        max_attempts: cfg.import.max_attempts,
        max_upload: cfg.import.max_upload_bytes,
    };
    let cluster = match join_cluster && cfg.cluster.enabled() {
        true => Some(start_cluster(cfg).await?),
        false => None,
    };
    let redis = match cfg.redis.url.trim() {
        "" => None,
        url => Some(Arc::new(
            dogear_storage::shared::Shared::connect(url)
                .map_err(|e| format!("config: key `redis.url`: {e}"))?,
        )),
    };
    let app = Dogear::start(
        store,
        keys,
        auth_settings(cfg),
        actors,
        objects,
        imports,
        dogear_actors::Sharing { cluster, redis },
    )
    .await
    .map_err(|e| format!("starting actors: {e}"))?;
    Ok((app, described, described_store))
}

async fn start_cluster(cfg: &Config) -> Result<Cluster, String> {
    let c = &cfg.cluster;
    let listen: std::net::SocketAddr = c
        .listen
        .parse()
        .map_err(|_| "config: key `cluster.listen`: must be an address like 127.0.0.1:7101")?;
    let advertise = match c.advertise.trim() {
        "" => c.listen.clone(),
        a => a.to_string(),
    };
    let tls = match c.tls_cert.trim() {
        "" => None,
        cert => Some(Arc::new(
            Tls::load(&TlsFiles {
                cert: cert.into(),
                key: c.tls_key.trim().into(),
                ca: c.tls_ca.trim().into(),
                server_name: c.tls_server_name.trim().to_string(),
            })
            .map_err(|e| format!("config: key {e}"))?,
        )),
    };
    if tls.is_none() {
        tracing::warn!(
            "the cluster port speaks plain TCP: keep cluster.listen on a private network, or set cluster.tls_*"
        );
    }
    let cluster = Cluster::start(ClusterSettings {
        node_id: c.node_id.trim().to_string(),
        listen,
        advertise,
        seeds: c.seeds.clone(),
        cookie: c.cookie.clone(),
        heartbeat: Duration::from_millis(c.heartbeat_ms),
        failure_timeout: Duration::from_millis(c.failure_timeout_ms),
        tls,
    })
    .await
    .map_err(|e| format!("cannot start the cluster: {e}"))?;
    // Serve only once the members are known (at most `failure_timeout_ms`).
    cluster.settled().await;
    tracing::info!(members = ?cluster.live(), "joined the cluster");
    Ok(cluster)
}

/// Removes conversion leftovers of a stopped node; staged uploads stay (their jobs resume).
fn clean_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("kepub") | Some("epub")
        ) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A configured `library`: a library id, or a user name meaning that user's personal one.
pub async fn resolve_library(
    store: &Arc<dyn Store>,
    key: &str,
    value: &str,
) -> Result<LibraryId, String> {
    if let Ok(id) = value.parse::<LibraryId>() {
        return match store.library(id).await.map_err(|e| e.to_string())? {
            Some(l) => Ok(l.id),
            None => Err(format!(
                "config: key `{key}`: no library has the id {value}"
            )),
        };
    }
    let user = store
        .user_by_name(value)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!("config: key `{key}`: {value:?} is neither a library id nor a user name")
        })?;
    store
        .libraries_of(user.id)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|(l, _)| l.kind == LibraryKind::Personal && l.owner_id == user.id)
        .map(|(l, _)| l.id)
        .ok_or_else(|| format!("config: key `{key}`: user {value} has no personal library"))
}

async fn folder_sources(cfg: &Config, store: &Arc<dyn Store>) -> Result<Vec<FolderConfig>, String> {
    let mut out = Vec::new();
    for (i, f) in cfg.import.folders.iter().enumerate() {
        let key = format!("import.folders[{i}]");
        let path = std::fs::canonicalize(&f.path)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| {
                format!(
                    "config: key `{key}.path`: {} is not a folder",
                    f.path.display()
                )
            })?;
        out.push(FolderConfig {
            path,
            library: resolve_library(store, &format!("{key}.library"), &f.library).await?,
            watch: f.watch,
            scan_interval: Duration::from_secs(cfg.import.scan_interval_secs),
        });
    }
    Ok(out)
}

async fn calibre_sources(
    cfg: &Config,
    store: &Arc<dyn Store>,
) -> Result<Vec<CalibreConfig>, String> {
    let mut out = Vec::new();
    for (i, c) in cfg.import.calibre.iter().enumerate() {
        let key = format!("import.calibre[{i}]");
        let path = std::fs::canonicalize(&c.path)
            .ok()
            .filter(|p| p.join("metadata.db").is_file())
            .ok_or_else(|| {
                format!(
                    "config: key `{key}.path`: {} is not a Calibre library (no metadata.db)",
                    c.path.display()
                )
            })?;
        out.push(CalibreConfig {
            path,
            library: resolve_library(store, &format!("{key}.library"), &c.library).await?,
            watch: c.watch,
            scan_interval: Duration::from_secs(cfg.import.scan_interval_secs),
        });
    }
    Ok(out)
}

pub async fn add_user(
    cfg: Config,
    name: &str,
    password: &str,
    email: Option<&str>,
    admin: bool,
) -> Result<(), String> {
    prepare_data_dir(&cfg.storage.data_dir)?;
    let (store, _) = open_store(&cfg).await?;
    let keys = jwt_keys(&cfg)?;
    let accounts = dogear_actors::auth::Accounts::new(store.clone(), keys, auth_settings(&cfg));
    let result = accounts
        .create_user(name, password, email, admin, true)
        .await;
    let _ = store.close().await;
    let user = result.map_err(|e| e.to_string())?;
    println!(
        "created user {} ({}){}",
        user.username,
        user.id,
        if admin { " as admin" } else { "" }
    );
    Ok(())
}
