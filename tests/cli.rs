//! The `dogear` command line: help, version, config errors, `user add`, shutdown.

use dogear_e2e::{Server, Socket, run_cli as run, serde_json::json};
use std::time::Duration;

#[test]
fn help_and_version() {
    let (code, out, _) = run(&["--version"], &[], None);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("dogear {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run(&["--help"], &[], None);
    assert_eq!(code, 0);
    for word in ["serve", "user", "--config", "--data"] {
        assert!(out.contains(word), "help mentions {word}: {out}");
    }
    let (code, out, _) = run(&["user", "add", "--help"], &[], None);
    assert_eq!(code, 0);
    assert!(out.contains("--password-stdin") && out.contains("--admin"));
}

#[test]
fn bad_config_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[server]\nlisen = \"127.0.0.1:1\"\n", "lisen"),
        ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
        (
            "[storage]\ndurability = \"sometimes\"\n",
            "storage.durability",
        ),
        ("[server\n", "line 1"),
        (
            "[actors]\nidle_timeout_secs = \"soon\"\n",
            "actors.idle_timeout_secs",
        ),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = run(&["--config", path.to_str().unwrap(), "serve"], &[], None);
        assert_eq!(code, 2, "{text}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle), "{text} -> {err}");
        assert!(!err.contains("panicked") && !err.contains("backtrace"));
    }
    let (code, _, err) = run(&["serve"], &[("DOGEAR_ACTORS__SOCKET_QUEUE", "lots")], None);
    assert_eq!(code, 2);
    assert!(err.contains("DOGEAR_ACTORS__SOCKET_QUEUE"), "{err}");
    let (code, _, err) = run(
        &["--config", "/nonexistent/dogear.toml", "serve"],
        &[],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/dogear.toml"), "{err}");
}

#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();
    // `user add` loads the same config as `serve`: a valid file lets it run.
    let (code, _, err) = run(
        &[
            "--config",
            example,
            "--data",
            data,
            "user",
            "add",
            "probe",
            "--password-stdin",
        ],
        &[],
        Some("long enough password\n"),
    );
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn user_add_then_login() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let (code, out, err) = run(
        &[
            "--data",
            d,
            "user",
            "add",
            "root",
            "--admin",
            "--password-stdin",
        ],
        &[],
        Some("s3cret-passphrase\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("created user root") && out.contains("admin"),
        "{out}"
    );
    let (code, _, err) = run(
        &["--data", d, "user", "add", "root", "--password-stdin"],
        &[],
        Some("another-pass\n"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("taken"), "{err}");
    let (code, _, err) = run(
        &["--data", d, "user", "add", "shorty", "--password-stdin"],
        &[],
        Some("short\n"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("password"), "{err}");
    let (code, _, err) = run(&["--data", d, "user", "add", "nopw"], &[], None);
    assert_ne!(code, 0);
    assert!(err.contains("--password-stdin"), "{err}");

    // Accounts made on the command line work with closed registration too.
    let mut server = Server::start_with(&[("DOGEAR_AUTH__REGISTRATION", "closed")]);
    server.kill9();
    let data_dir = server.data.clone();
    std::fs::remove_dir_all(&data_dir).unwrap();
    std::fs::rename(&data, &data_dir).unwrap();
    server.restart();
    let api = server.client();
    let r = api
        .post(
            "/v1/auth/login",
            json!({"username": "root", "password": "s3cret-passphrase"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn sigterm_closes_sockets_and_exits_zero() {
    let mut server = Server::start();
    let me = dogear_e2e::Reader::new(&server, "term").await;
    let (mut ws, _) = Socket::connect(&server, me.token(), &me.device).await;
    let pid = server.pid();
    let closer = tokio::spawn(async move { ws.close_code(Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let code = tokio::task::spawn_blocking(move || {
        let c = server.terminate();
        (c, server)
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0), "pid {pid} exit code");
    assert_eq!(
        closer.await.unwrap(),
        Some(1001),
        "sockets are told the server is going away"
    );
    let log = code.1.log();
    assert!(log.contains("stopped cleanly"), "{log}");
}
