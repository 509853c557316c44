//! The conformance suite against PostgreSQL, unchanged, plus what only a shared server can
//! show: several stores (nodes) migrating the same database at once, and two stores racing
//! for the same version of a key with exactly one winning.
//!
//! Runs against the server `scripts/test.sh` starts (`DOGEAR_TEST_POSTGRES`, a URL whose
//! user may create databases); each test makes its own database.

use dogear_storage::conformance;
use dogear_storage::postgres::{PostgresOptions, PostgresStore};
use dogear_storage::*;
use tokio_postgres::NoTls;

/// A new, empty database on the test server; returns its URL.
async fn fresh_database() -> String {
    let admin = std::env::var("DOGEAR_TEST_POSTGRES").expect(
        "DOGEAR_TEST_POSTGRES is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    );
    let (client, conn) = tokio_postgres::connect(&admin, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').expect("URL with a database").0;
    format!("{base}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_starting_together_migrate_once() {
    let url = fresh_database().await;
    let starts = (0..3).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PostgresStore::connect(&url, PostgresOptions::default()).await })
    });
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().expect("every node starts"));
    }
    for s in &stores {
        assert_eq!(
            s.schema_version().await.unwrap(),
            dogear_storage::postgres::SCHEMA_VERSION
        );
    }
    // What one node writes, another reads.
    let (u, lib) = conformance::new_user("shared");
    stores[0].create_user(&u, &lib).await.unwrap();
    assert_eq!(stores[2].user(u.id).await.unwrap(), Some(u));
}

/// Two nodes that both believe they own a reader write the same next seq at the same time:
/// exactly one write is applied, the other is refused as a version conflict, and the log
/// holds one event for that seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_owners_cannot_apply_the_same_version() {
    let url = fresh_database().await;
    let a = std::sync::Arc::new(
        PostgresStore::connect(&url, PostgresOptions::default())
            .await
            .unwrap(),
    );
    let b = std::sync::Arc::new(
        PostgresStore::connect(&url, PostgresOptions::default())
            .await
            .unwrap(),
    );
    let r = conformance::seed_reader(&*a, "fenced").await;
    for round in 0..20u64 {
        let head = a.progress_head(r.user.id).await.unwrap();
        assert_eq!(head, round, "one event per round");
        let wa = conformance::progress::write_at(&r, head, 10.0 + round as f64);
        let wb = conformance::progress::write_at(&r, head, 50.0 + round as f64);
        let (ra, rb) = tokio::join!(
            {
                let a = a.clone();
                async move { a.record_progress(&wa).await }
            },
            {
                let b = b.clone();
                async move { b.record_progress(&wb).await }
            }
        );
        let ok = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Ok(RecordOutcome::Recorded)))
            .count();
        let refused = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::VersionConflict { .. })))
            .count();
        assert_eq!((ok, refused), (1, 1), "round {round}: {ra:?} / {rb:?}");
    }
    let changes = a.progress_changes(r.user.id, 0, 100).await.unwrap();
    let seqs: Vec<u64> = changes.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "gapless, no seq twice");
}
