//! The conformance suite against the embedded SQLite backend, on a real file, plus what only
//! a file-backed store can show: data and schema survive a reopen.

use dogear_storage::conformance;
use dogear_storage::sqlite::{Durability, SqliteOptions, SqliteStore};
use dogear_storage::{Store, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("dogear.db"), SqliteOptions::default()).unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_normal_durability_passes_too() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        durability: Durability::Normal,
        max_batch: 3,
        readers: 1,
    };
    let store = SqliteStore::open(&dir.path().join("dogear.db"), opts).unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopen_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dogear.db");
    let (u, lib) = conformance::new_user("reopen");
    {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.create_user(&u, &lib).await.unwrap();
        store.close().await.unwrap();
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(store.user(u.id).await.unwrap(), Some(u.clone()));
    match store.create_user(&u, &lib).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(
        store.schema_version().await.unwrap(),
        dogear_storage::sqlite::SCHEMA_VERSION,
        "the reopened file carries the latest schema version"
    );
}
