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

/// A database left by the first release (schema 1, books without files) opens under this
/// build: migrated in place, its books keep their data and are found by the new search.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_database_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dogear.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        dogear_storage::sqlite::migrate_to(&mut conn, 1).unwrap();
        conn.execute_batch(
            "INSERT INTO users VALUES ('01a2089c-0000-7000-8000-000000000001', 'old', NULL, 'x', 0, 1);
             INSERT INTO libraries VALUES ('01a2089c-0000-7000-8000-000000000002', 'Old', 'personal',
                 '01a2089c-0000-7000-8000-000000000001', 1);
             INSERT INTO memberships VALUES ('01a2089c-0000-7000-8000-000000000002',
                 '01a2089c-0000-7000-8000-000000000001', 'owner');
             INSERT INTO books VALUES ('01a2089c-0000-7000-8000-000000000003',
                 '01a2089c-0000-7000-8000-000000000002', 'The Tempest', '[\"William Shakespeare\"]',
                 'en', '{}', 5, 5, NULL, 1);
             INSERT INTO books VALUES ('01a2089c-0000-7000-8000-000000000004',
                 '01a2089c-0000-7000-8000-000000000002', 'Arcadia', '[\"Tom Stoppard\"]',
                 NULL, '{}', 6, 6, NULL, 1);",
        )
        .unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        dogear_storage::sqlite::SCHEMA_VERSION
    );
    let lib: dogear_storage::LibraryId = "01a2089c-0000-7000-8000-000000000002".parse().unwrap();
    let q = |q: Option<&str>, sort| dogear_storage::BookQuery {
        libraries: vec![lib],
        q: q.map(String::from),
        sort,
        limit: 10,
        ..Default::default()
    };
    let found = store
        .list_books(&q(Some("shakespeare"), dogear_storage::BookSort::Id))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "old books are in the new full-text index");
    assert_eq!(found[0].title, "The Tempest");
    assert_eq!(found[0].meta, dogear_storage::BookMeta::default());
    let by_title = store
        .list_books(&q(None, dogear_storage::BookSort::Title))
        .await
        .unwrap();
    let titles: Vec<_> = by_title.iter().map(|b| b.title.as_str()).collect();
    assert_eq!(titles, ["Arcadia", "The Tempest"], "sort keys filled in");
}

/// Books stored before the browse counts existed (schema 8) are counted by the migration
/// that adds them, exactly as the triggers count books written after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_counts_are_filled_for_books_stored_before_them() {
    use dogear_storage::{BookFacet, LibraryId};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dogear.db");
    let lib = "01a2089c-0000-7000-8000-000000000002";
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        dogear_storage::sqlite::migrate_to(&mut conn, 8).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO users VALUES ('01a2089c-0000-7000-8000-000000000001', 'old', NULL, 'x', 0, 1);
             INSERT INTO libraries VALUES ('{lib}', 'Old', 'personal',
                 '01a2089c-0000-7000-8000-000000000001', 1);
             INSERT INTO books (id, library_id, title, authors, language, identifiers, added_at,
                 updated_at, deleted_at, version, meta) VALUES
             ('01a2089c-0000-7000-8000-000000000003', '{lib}', 'The Tempest',
                 '[\"William Shakespeare\"]', 'en', '{{}}', 5, 5, NULL, 1,
                 '{{\"formats\":[{{}}],\"tags\":[\"Drama\",\"Comedy\"],\"series\":\"Folio\"}}'),
             ('01a2089c-0000-7000-8000-000000000004', '{lib}', 'Hamlet',
                 '[\"william shakespeare\"]', 'en', '{{}}', 6, 6, NULL, 1,
                 '{{\"formats\":[{{}}],\"tags\":[\"drama\"]}}'),
             ('01a2089c-0000-7000-8000-000000000005', '{lib}', 'No file',
                 '[\"Tom Stoppard\"]', 'en', '{{}}', 7, 7, NULL, 1, '{{\"tags\":[\"Drama\"]}}'),
             ('01a2089c-0000-7000-8000-000000000006', '{lib}', 'Gone',
                 '[\"Tom Stoppard\"]', 'fr', '{{}}', 8, 8, 9, 2, '{{\"formats\":[{{}}]}}');"
        ))
        .unwrap();
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let lib: LibraryId = lib.parse().unwrap();
    let facet = |f| {
        let store = &store;
        async move { store.book_facets(&[lib], f).await.unwrap() }
    };
    let pairs = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(a, n)| (a.to_string(), *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        facet(BookFacet::Author).await,
        pairs(&[("William Shakespeare", 2)])
    );
    assert_eq!(
        facet(BookFacet::Tag).await,
        pairs(&[("Comedy", 1), ("Drama", 2)])
    );
    assert_eq!(facet(BookFacet::Series).await, pairs(&[("Folio", 1)]));
    assert_eq!(facet(BookFacet::Language).await, pairs(&[("en", 2)]));
}
