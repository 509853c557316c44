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

/// Progress events stored as text before schema 12 are converted in place: the same events
/// answer duplicates, the feed and the log head, and new writes follow them in the compact
/// form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_events_stored_as_text_are_kept_by_the_compact_schema() {
    use dogear_storage::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dogear.db");
    let user = UserId::generate();
    let (book, device) = (BookId::generate(), DeviceId::generate());
    let state = |pct: f64, version: u64| ProgressState {
        book_id: book,
        percent: Percent::new(pct).unwrap(),
        locator: Locator::new(format!("epubcfi(/6/{version})")),
        status: ReadStatus::Reading,
        device_id: device,
        client_ts: Timestamp::from_millis(1_000 + version as i64),
        updated_at: Timestamp::from_millis(2_000 + version as i64),
        version,
    };
    let digest = "5a".repeat(32);
    let old = [
        (
            1_i64,
            EventId::generate(),
            digest.clone(),
            true,
            state(10.0, 1),
        ),
        (
            2,
            EventId::generate(),
            "body-2".to_string(),
            false,
            state(10.0, 1),
        ),
    ];
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        dogear_storage::sqlite::migrate_to(&mut conn, 11).unwrap();
        for (seq, id, body, applied, st) in &old {
            conn.execute(
                "INSERT INTO progress_events VALUES (?1, ?2, 'progress_updated', ?3, ?4, ?5, ?6,
                     ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    user.to_string(),
                    seq,
                    id.to_string(),
                    book.to_string(),
                    device.to_string(),
                    body,
                    applied,
                    (!applied).then_some("behind"),
                    serde_json::to_string(st).unwrap(),
                    5_000 + seq
                ],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO progress_books VALUES (?1, ?2, 1, ?3, '{}')",
            rusqlite::params![
                user.to_string(),
                book.to_string(),
                serde_json::to_string(&old[0].4).unwrap()
            ],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(store.progress_head(user).await.unwrap(), 2);
    assert_eq!(
        store.progress_changes(user, 0, 10).await.unwrap(),
        vec![(1, old[0].4.clone())]
    );
    // Both old events answer their ids as before, bodies as they were sent.
    for (seq, id, body, applied, st) in &old {
        let again = ProgressWrite {
            user_id: user,
            expected_seq: 2,
            event: ProgressEvent {
                seq: 3,
                event_id: *id,
                book_id: book,
                device_id: device,
                body: "another".into(),
                applied: true,
                reason: None,
                state: state(50.0, 2),
                received_at: Timestamp::from_millis(9_000),
            },
            position: DevicePosition {
                device_id: device,
                book_id: book,
                percent: Percent::new(50.0).unwrap(),
                locator: None,
                client_ts: Timestamp::from_millis(9_000),
            },
        };
        match store.record_progress(&again).await.unwrap() {
            RecordOutcome::Duplicate(e) => {
                assert_eq!(
                    (e.seq, &e.body, e.applied, &e.state),
                    (*seq as u64, body, *applied, st)
                );
                assert_eq!(e.received_at, Timestamp::from_millis(5_000 + *seq));
            }
            other => panic!("event {seq} must answer as a duplicate, got {other:?}"),
        }
    }
    // A new write follows them, stored compactly, and reads back the same.
    let mut new = ProgressWrite {
        user_id: user,
        expected_seq: 2,
        event: ProgressEvent {
            seq: 3,
            event_id: EventId::generate(),
            book_id: book,
            device_id: device,
            body: digest.clone(),
            applied: true,
            reason: None,
            state: state(60.0, 2),
            received_at: Timestamp::from_millis(9_500),
        },
        position: DevicePosition {
            device_id: device,
            book_id: book,
            percent: Percent::new(60.0).unwrap(),
            locator: None,
            client_ts: Timestamp::from_millis(9_500),
        },
    };
    assert_eq!(
        store.record_progress(&new).await.unwrap(),
        RecordOutcome::Recorded
    );
    assert_eq!(
        store.progress_changes(user, 1, 10).await.unwrap(),
        vec![(3, new.event.state.clone())]
    );
    store.close().await.unwrap();
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let id = new.event.event_id;
    new.expected_seq = 3;
    new.event.seq = 4;
    match store.record_progress(&new).await.unwrap() {
        RecordOutcome::Duplicate(e) => {
            assert_eq!((e.seq, e.event_id, &e.body), (3, id, &digest));
            assert_eq!(e.state, state(60.0, 2));
        }
        other => panic!("the new event must answer as a duplicate, got {other:?}"),
    }
    store.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let kinds: Vec<(String, String, String)> = conn
        .prepare("SELECT typeof(event_id), typeof(body), typeof(state) FROM progress_events ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let k = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        kinds,
        [
            k("blob", "blob", "text"),
            k("blob", "text", "text"),
            k("blob", "blob", "blob")
        ]
    );
}
