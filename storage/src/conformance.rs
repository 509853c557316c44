//! The conformance suite every backend must pass. It speaks only through [`Store`], so a new
//! backend (PostgreSQL, ScyllaDB) runs it unchanged: call [`run_all`] on a fresh, empty store.
//! Each check panics with a message naming the rule that was broken.

use crate::error::StoreError;
use crate::ids::*;
use crate::records::*;
use crate::store::{RecordOutcome, RotateOutcome, Store};
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// Runs every check against `store`, which must be empty and open. Closes it at the end.
pub async fn run_all(store: &dyn Store) {
    users(store).await;
    refresh_tokens(store).await;
    devices(store).await;
    books(store).await;
    book_metadata(store).await;
    multi_library_pages(store).await;
    imports(store).await;
    progress(store).await;
    change_feeds(store).await;
    shelves(store).await;
    kobo_devices(store).await;
    closing(store).await;
}

/// A user with a personal library, as registration creates them.
pub fn new_user(name: &str) -> (User, Library) {
    let now = Timestamp::now();
    let user = User {
        id: UserId::generate(),
        username: name.to_string(),
        email: Some(format!("{name}@example.org")),
        password_hash: "$argon2id$fake".into(),
        is_admin: false,
        created_at: now,
    };
    let lib = Library {
        id: LibraryId::generate(),
        name: format!("{name}'s library"),
        kind: LibraryKind::Personal,
        owner_id: user.id,
        created_at: now,
    };
    (user, lib)
}

/// A stored user with a personal library, one device and one book: enough for a test to
/// write progress through the actors.
pub struct Seeded {
    pub user: User,
    pub library: Library,
    pub device: Device,
    pub book: Book,
}

pub async fn seed_reader(s: &dyn Store, name: &str) -> Seeded {
    let (user, library) = new_user(name);
    s.create_user(&user, &library).await.expect("create user");
    let device = Device {
        id: DeviceId::generate(),
        user_id: user.id,
        name: "e-reader".into(),
        kind: DeviceKind::Kobo,
        created_at: Timestamp::now(),
    };
    s.create_device(&device).await.expect("create device");
    let book = book(library.id, "Hamlet", "William Shakespeare");
    s.create_book(&book).await.expect("create book");
    Seeded {
        user,
        library,
        device,
        book,
    }
}

fn token(user: UserId, family: FamilyId, hash: &str, ttl_secs: i64) -> RefreshToken {
    let now = Timestamp::now();
    RefreshToken {
        hash: hash.into(),
        user_id: user,
        family_id: family,
        created_at: now,
        expires_at: now.plus_secs(ttl_secs),
    }
}

pub async fn users(s: &dyn Store) {
    assert_eq!(s.first_admin().await.unwrap(), None, "no admin yet");
    let (u, lib) = new_user("conf_alice");
    s.create_user(&u, &lib).await.expect("create user");
    let (mut admin, admin_lib) = new_user("conf_admin");
    admin.is_admin = true;
    admin.created_at = Timestamp::from_millis(u.created_at.millis() + 1);
    s.create_user(&admin, &admin_lib).await.unwrap();
    let (mut later, later_lib) = new_user("conf_admin_later");
    later.is_admin = true;
    later.created_at = Timestamp::from_millis(u.created_at.millis() + 2);
    s.create_user(&later, &later_lib).await.unwrap();
    assert_eq!(
        s.first_admin().await.unwrap().as_deref(),
        Some("conf_admin"),
        "the earliest admin"
    );
    assert_eq!(s.user(u.id).await.unwrap().as_ref(), Some(&u), "user by id");
    assert_eq!(
        s.user_by_name("conf_alice").await.unwrap().as_ref(),
        Some(&u),
        "user by name"
    );
    assert_eq!(
        s.user_by_name("nobody").await.unwrap(),
        None,
        "unknown user"
    );
    let (dup, dup_lib) = new_user("conf_alice");
    match s.create_user(&dup, &dup_lib).await {
        Err(StoreError::Conflict("username")) => {}
        other => panic!("duplicate username must be Conflict(username), got {other:?}"),
    }
    assert!(
        s.library(dup_lib.id).await.unwrap().is_none(),
        "a refused user must leave no library behind"
    );
    let libs = s.libraries_of(u.id).await.unwrap();
    assert_eq!(
        libs,
        vec![(lib.clone(), Role::Owner)],
        "personal library with owner role"
    );
    let members = s.memberships(lib.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].user_id, u.id);
}

pub async fn refresh_tokens(s: &dyn Store) {
    let (u, lib) = new_user("conf_tok");
    s.create_user(&u, &lib).await.unwrap();
    let fam = FamilyId::generate();
    s.insert_refresh_token(&token(u.id, fam, "h1", 60))
        .await
        .unwrap();
    let now = Timestamp::now();
    let r = s
        .rotate_refresh_token("h1", "h2", now, now.plus_secs(60))
        .await
        .unwrap();
    assert_eq!(
        r,
        RotateOutcome::Rotated { user_id: u.id },
        "fresh token rotates"
    );
    let r = s
        .rotate_refresh_token("h1", "h3", now, now.plus_secs(60))
        .await
        .unwrap();
    assert_eq!(r, RotateOutcome::Reused, "spent token is reuse");
    let r = s
        .rotate_refresh_token("h2", "h4", now, now.plus_secs(60))
        .await
        .unwrap();
    assert_eq!(r, RotateOutcome::Reused, "reuse revokes the whole family");
    let r = s
        .rotate_refresh_token("nope", "h5", now, now.plus_secs(60))
        .await
        .unwrap();
    assert_eq!(r, RotateOutcome::Invalid, "unknown token");
    let fam2 = FamilyId::generate();
    s.insert_refresh_token(&token(u.id, fam2, "old", -1))
        .await
        .unwrap();
    let r = s
        .rotate_refresh_token("old", "h6", now, now.plus_secs(60))
        .await
        .unwrap();
    assert_eq!(r, RotateOutcome::Invalid, "expired token");
    let fam3 = FamilyId::generate();
    s.insert_refresh_token(&token(u.id, fam3, "live", 60))
        .await
        .unwrap();
    s.revoke_refresh_family("live").await.unwrap();
    let r = s
        .rotate_refresh_token("live", "h7", now, now.plus_secs(60))
        .await
        .unwrap();
    assert_eq!(
        r,
        RotateOutcome::Reused,
        "revoked (logged out) token cannot rotate"
    );
}

pub async fn devices(s: &dyn Store) {
    let (u, lib) = new_user("conf_dev");
    let (other, other_lib) = new_user("conf_dev_other");
    s.create_user(&u, &lib).await.unwrap();
    s.create_user(&other, &other_lib).await.unwrap();
    let d = Device {
        id: DeviceId::generate(),
        user_id: u.id,
        name: "Kobo Libra".into(),
        kind: DeviceKind::Kobo,
        created_at: Timestamp::now(),
    };
    s.create_device(&d).await.unwrap();
    assert_eq!(s.devices(u.id).await.unwrap(), vec![d.clone()]);
    assert!(
        s.devices(other.id).await.unwrap().is_empty(),
        "devices are per user"
    );
    assert!(
        !s.delete_device(other.id, d.id).await.unwrap(),
        "only the owner deletes"
    );
    assert!(s.delete_device(u.id, d.id).await.unwrap());
    assert!(s.devices(u.id).await.unwrap().is_empty());
}

fn book(lib: LibraryId, title: &str, author: &str) -> Book {
    let now = Timestamp::now();
    Book {
        id: BookId::generate(),
        library_id: lib,
        title: title.into(),
        authors: vec![author.into()],
        language: Some("en".into()),
        identifiers: BTreeMap::from([("isbn".to_string(), "9780000000000".to_string())]),
        added_at: now,
        updated_at: now,
        deleted_at: None,
        version: 1,
        meta: BookMeta::default(),
    }
}

pub async fn books(s: &dyn Store) {
    let (u, lib) = new_user("conf_books");
    let (other, other_lib) = new_user("conf_books_other");
    s.create_user(&u, &lib).await.unwrap();
    s.create_user(&other, &other_lib).await.unwrap();
    let mut all = Vec::new();
    for (t, a) in [
        ("Hamlet", "Shakespeare"),
        ("Macbeth", "Shakespeare"),
        ("Dubliners", "Joyce"),
    ] {
        let b = book(lib.id, t, a);
        s.create_book(&b).await.unwrap();
        all.push(b);
    }
    s.create_book(&book(other_lib.id, "Hidden", "Other"))
        .await
        .unwrap();
    assert_eq!(
        s.book(all[0].id).await.unwrap().as_ref(),
        Some(&all[0]),
        "book round-trips"
    );

    let q = |q: Option<&str>, after: Option<BookId>, limit| BookQuery {
        libraries: vec![lib.id],
        q: q.map(String::from),
        after: after.map(|id| BookAfter {
            key: String::new(),
            id,
        }),
        limit,
        ..Default::default()
    };
    let listed = s.list_books(&q(None, None, 10)).await.unwrap();
    assert_eq!(listed.len(), 3, "only the asked libraries' books");
    let page1 = s.list_books(&q(None, None, 2)).await.unwrap();
    let page2 = s.list_books(&q(None, Some(page1[1].id), 2)).await.unwrap();
    assert_eq!(page1.len() + page2.len(), 3, "paging by id covers all");
    assert!(page2.iter().all(|b| b.id > page1[1].id));
    let found = s.list_books(&q(Some("shakes"), None, 10)).await.unwrap();
    assert_eq!(found.len(), 2, "q matches authors case-insensitively");
    let found = s.list_books(&q(Some("MAC"), None, 10)).await.unwrap();
    assert_eq!(found.len(), 1, "q matches titles case-insensitively");
    let found = s.list_books(&q(Some("%"), None, 10)).await.unwrap();
    assert!(found.is_empty(), "LIKE wildcards in q are literal");

    let mut edited = all[0].clone();
    edited.title = "Hamlet, Prince of Denmark".into();
    edited.version = 2;
    s.update_book(&edited).await.unwrap();
    assert_eq!(
        s.book(edited.id).await.unwrap().unwrap().title,
        edited.title
    );
    let mut stale = all[0].clone();
    stale.version = 2;
    match s.update_book(&stale).await {
        Err(StoreError::VersionConflict {
            expected: 1,
            found: 2,
        }) => {}
        other => panic!("a stale writer must get VersionConflict, got {other:?}"),
    }
    let mut gone = edited.clone();
    gone.deleted_at = Some(Timestamp::now());
    gone.version = 3;
    s.update_book(&gone).await.unwrap();
    assert_eq!(
        s.list_books(&q(None, None, 10)).await.unwrap().len(),
        2,
        "tombstones are not listed"
    );
    assert!(
        s.book(gone.id).await.unwrap().unwrap().deleted_at.is_some(),
        "tombstone kept"
    );
    match s.update_book(&book(lib.id, "Never stored", "x")).await {
        Err(StoreError::NotFound) | Err(StoreError::VersionConflict { .. }) => {}
        other => panic!("updating a missing book must fail, got {other:?}"),
    }
}

fn file(format: Format, hash: &str) -> BookFile {
    BookFile {
        format,
        size: 42,
        hash: hash.into(),
        location: FileLocation::Object {
            key: format!("files/{hash}"),
        },
    }
}

/// Imported metadata round-trips; search, filters, every sort order and its cursor work.
pub async fn book_metadata(s: &dyn Store) {
    let (u, lib) = new_user("conf_meta");
    s.create_user(&u, &lib).await.unwrap();
    let mut made = Vec::new();
    for (i, (title, author, sort, series, tags)) in [
        (
            "The Tempest",
            "William Shakespeare",
            "Shakespeare, William",
            None,
            vec!["Drama"],
        ),
        (
            "Henry V",
            "William Shakespeare",
            "Shakespeare, William",
            Some(("Henriad", 4.0)),
            vec!["History"],
        ),
        (
            "Richard II",
            "William Shakespeare",
            "Shakespeare, William",
            Some(("Henriad", 1.0)),
            vec!["History", "Drama"],
        ),
        (
            "Dubliners",
            "James Joyce",
            "Joyce, James",
            None,
            vec!["Stories"],
        ),
        (
            "Émile",
            "Jean-Jacques Rousseau",
            "Rousseau, Jean-Jacques",
            None,
            vec![],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = book(lib.id, title, author);
        b.added_at = Timestamp::from_millis(1_000_000 + i as i64);
        b.meta = BookMeta {
            author_sorts: vec![sort.into()],
            series: series.map(|s| s.0.to_string()),
            series_index: series.map(|s| s.1),
            tags: tags.into_iter().map(String::from).collect(),
            formats: vec![file(Format::Epub, &format!("{i:016x}"))],
            source: Some(BookSource::Upload),
            description: Some("words".into()),
            ..Default::default()
        };
        s.create_book(&b).await.unwrap();
        made.push(b);
    }
    assert_eq!(
        s.book(made[1].id).await.unwrap().as_ref(),
        Some(&made[1]),
        "metadata round-trips"
    );
    let titles = |books: Vec<Book>| books.into_iter().map(|b| b.title).collect::<Vec<_>>();
    let query = |sort, after: Option<BookAfter>, limit| BookQuery {
        libraries: vec![lib.id],
        sort,
        after,
        limit,
        ..Default::default()
    };
    let by_title = titles(
        s.list_books(&query(BookSort::Title, None, 10))
            .await
            .unwrap(),
    );
    assert_eq!(
        by_title,
        ["Dubliners", "Henry V", "Richard II", "The Tempest", "Émile"],
        "sorted by title without the article"
    );
    let by_series = titles(
        s.list_books(&query(BookSort::Series, None, 10))
            .await
            .unwrap(),
    );
    assert_eq!(
        &by_series[..2],
        ["Richard II", "Henry V"],
        "series order by index first"
    );
    let by_added = titles(
        s.list_books(&query(BookSort::Added, None, 10))
            .await
            .unwrap(),
    );
    assert_eq!(by_added[0], "The Tempest");
    // Page through every order two at a time: the pages must cover all, in order.
    for sort in [
        BookSort::Id,
        BookSort::Title,
        BookSort::Author,
        BookSort::Added,
        BookSort::Series,
    ] {
        let whole = s.list_books(&query(sort, None, 10)).await.unwrap();
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = s.list_books(&query(sort, after.clone(), 2)).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(BookAfter {
                key: last.sort_key(sort),
                id: last.id,
            });
            paged.extend(page);
        }
        assert_eq!(
            titles(paged),
            titles(whole),
            "paging {sort:?} covers the list in order"
        );
    }
    let find = |q: BookQuery| async move { titles(s.list_books(&q).await.unwrap()) };
    let base = || BookQuery {
        libraries: vec![lib.id],
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        find(BookQuery {
            q: Some("henriad".into()),
            ..base()
        })
        .await
        .len(),
        2,
        "q searches series"
    );
    assert_eq!(
        find(BookQuery {
            q: Some("histor".into()),
            ..base()
        })
        .await
        .len(),
        2,
        "q searches tags by prefix"
    );
    assert_eq!(
        find(BookQuery {
            q: Some("emile".into()),
            ..base()
        })
        .await,
        ["Émile"],
        "q ignores diacritics"
    );
    assert_eq!(
        find(BookQuery {
            q: Some("joyce dubliners".into()),
            ..base()
        })
        .await,
        ["Dubliners"],
        "every word must match"
    );
    assert!(
        find(BookQuery {
            q: Some("\"OR*(".into()),
            ..base()
        })
        .await
        .is_empty(),
        "FTS syntax is not interpreted"
    );
    assert_eq!(
        find(BookQuery {
            author: Some("james joyce".into()),
            ..base()
        })
        .await,
        ["Dubliners"]
    );
    assert_eq!(
        find(BookQuery {
            series: Some("HENRIAD".into()),
            ..base()
        })
        .await
        .len(),
        2
    );
    assert_eq!(
        find(BookQuery {
            tag: Some("drama".into()),
            ..base()
        })
        .await
        .len(),
        2
    );

    let mut edited = made[3].clone();
    edited.meta.tags = vec!["Modernism".into()];
    edited.version = 2;
    s.update_book(&edited).await.unwrap();
    assert_eq!(
        find(BookQuery {
            q: Some("modernism".into()),
            ..base()
        })
        .await,
        ["Dubliners"],
        "search follows edits"
    );
    assert!(
        find(BookQuery {
            q: Some("stories".into()),
            ..base()
        })
        .await
        .is_empty()
    );
}

/// Pages over several libraries merge in order.
pub async fn multi_library_pages(s: &dyn Store) {
    let (a, la) = new_user("conf_multi_a");
    let (b, lb) = new_user("conf_multi_b");
    s.create_user(&a, &la).await.unwrap();
    s.create_user(&b, &lb).await.unwrap();
    for (i, t) in ["Delta", "Alpha", "Echo", "Charlie", "Bravo"]
        .iter()
        .enumerate()
    {
        let lib = if i % 2 == 0 { la.id } else { lb.id };
        s.create_book(&book(lib, t, "X")).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .list_books(&BookQuery {
                libraries: vec![la.id, lb.id],
                sort: BookSort::Title,
                after: after.clone(),
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(BookAfter {
            key: last.sort_key(BookSort::Title),
            id: last.id,
        });
        seen.extend(page.into_iter().map(|b| b.title));
    }
    assert_eq!(
        seen,
        ["Alpha", "Bravo", "Charlie", "Delta", "Echo"],
        "merged across libraries"
    );
}

/// Deduplication by content hash, the job queue and source files.
pub async fn imports(s: &dyn Store) {
    let (u, lib) = new_user("conf_imports");
    let (_, other_lib) = new_user("conf_imports_other");
    s.create_user(&u, &lib).await.unwrap();
    let now = Timestamp::now();
    let job = |path: &str| ImportJob {
        id: JobId::generate(),
        library_id: lib.id,
        user_id: Some(u.id),
        source: BookSource::Folder,
        source_key: Some("folder:test".into()),
        path: path.into(),
        filename: path.into(),
        staged: false,
        state: JobState::Queued,
        attempts: 0,
        run_at: now,
        book_id: None,
        duplicate_of: None,
        error: None,
        warnings: vec![],
        created_at: now,
        updated_at: now,
    };
    let j1 = job("a.epub");
    let mut later = job("b.epub");
    later.run_at = Timestamp::from_millis(now.millis() + 60_000);
    s.upsert_job(&j1).await.unwrap();
    s.upsert_job(&later).await.unwrap();
    assert_eq!(s.next_job_at().await.unwrap(), Some(now));
    let claimed = s.claim_jobs(now, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "only due jobs are claimed");
    assert_eq!(claimed[0].state, JobState::Running);
    assert!(
        s.claim_jobs(now, 10).await.unwrap().is_empty(),
        "a claimed job is not claimed twice"
    );
    assert_eq!(s.requeue_running_jobs().await.unwrap(), 1);
    assert_eq!(
        s.job(j1.id).await.unwrap().unwrap().state,
        JobState::Queued,
        "requeued after a restart"
    );

    let mut b = book(lib.id, "Hashed", "A");
    b.meta.formats = vec![file(Format::Epub, "00000000000000aa")];
    let src = SourceFile {
        source: "folder:test".into(),
        path: "a.epub".into(),
        library_id: lib.id,
        hash: "00000000000000aa".into(),
        size: 42,
        mtime: 7,
        book_id: Some(b.id),
    };
    let mut done = j1.clone();
    done.state = JobState::Done;
    done.book_id = Some(b.id);
    assert_eq!(
        s.register_import(&b, Some(&src), Some(&done))
            .await
            .unwrap(),
        RegisterOutcome::Created
    );
    assert_eq!(
        s.job(j1.id).await.unwrap().unwrap().book_id,
        Some(b.id),
        "job finished with the book"
    );
    assert_eq!(
        s.source_files("folder:test").await.unwrap(),
        vec![src.clone()]
    );
    assert_eq!(s.source_files_of_book(b.id).await.unwrap().len(), 1);
    assert_eq!(
        s.book_by_hash(lib.id, "00000000000000aa").await.unwrap(),
        Some(b.id)
    );
    assert_eq!(
        s.book_by_hash(other_lib.id, "00000000000000aa")
            .await
            .unwrap(),
        None,
        "per library"
    );
    let mut again = book(lib.id, "Same bytes", "B");
    again.meta.formats = vec![file(Format::Epub, "00000000000000aa")];
    assert_eq!(
        s.register_import(&again, None, None).await.unwrap(),
        RegisterOutcome::Duplicate(b.id),
        "same hash in the same library is a duplicate"
    );
    assert!(
        s.book(again.id).await.unwrap().is_none(),
        "nothing written for a duplicate"
    );
    let mut gone = b.clone();
    gone.deleted_at = Some(Timestamp::now());
    gone.version = 2;
    s.update_book(&gone).await.unwrap();
    assert_eq!(
        s.book_by_hash(lib.id, "00000000000000aa").await.unwrap(),
        None,
        "a tombstone frees its hash"
    );
    let mut moved = src.clone();
    moved.path = "sub/a.epub".into();
    s.put_source_files(&[moved.clone()], &[("folder:test".into(), "a.epub".into())])
        .await
        .unwrap();
    assert_eq!(s.source_files("folder:test").await.unwrap(), vec![moved]);
    let all = s.list_jobs(&[lib.id], None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![later.id, j1.id],
        "newest first"
    );
    let done_only = s
        .list_jobs(&[lib.id], Some(JobState::Done), None, 10)
        .await
        .unwrap();
    assert_eq!(done_only.len(), 1);
    assert_eq!(done_only[0].id, j1.id);
    let older = s
        .list_jobs(&[lib.id], None, Some(later.id), 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 1, "paging by id");
    assert!(
        s.list_jobs(&[other_lib.id], None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let counts = s.job_counts().await.unwrap();
    assert!(
        counts.contains(&(JobState::Done, 1)) && counts.contains(&(JobState::Queued, 1)),
        "{counts:?}"
    );
}

fn state(b: BookId, d: DeviceId, pct: f64, version: u64) -> ProgressState {
    ProgressState {
        book_id: b,
        percent: Percent::new(pct).unwrap(),
        locator: Locator::new(format!("epubcfi(/6/{pct})")),
        status: ReadStatus::Reading,
        device_id: d,
        client_ts: Timestamp::now(),
        updated_at: Timestamp::now(),
        version,
    }
}

fn write(user: UserId, seq: u64, applied: bool, st: ProgressState) -> ProgressWrite {
    let event = ProgressEvent {
        seq,
        event_id: EventId::generate(),
        book_id: st.book_id,
        device_id: st.device_id,
        body: format!("body-{seq}"),
        applied,
        reason: (!applied).then_some(Reason::Behind),
        state: st.clone(),
        received_at: Timestamp::now(),
    };
    ProgressWrite {
        user_id: user,
        expected_seq: seq - 1,
        position: DevicePosition {
            device_id: st.device_id,
            book_id: st.book_id,
            percent: st.percent,
            locator: st.locator.clone(),
            client_ts: st.client_ts,
        },
        event,
    }
}

pub async fn progress(s: &dyn Store) {
    let (u, lib) = new_user("conf_progress");
    let (other, other_lib) = new_user("conf_progress_other");
    s.create_user(&u, &lib).await.unwrap();
    s.create_user(&other, &other_lib).await.unwrap();
    let b = BookId::generate();
    let d1 = DeviceId::generate();
    let d2 = DeviceId::generate();
    assert_eq!(
        s.progress_head(u.id).await.unwrap(),
        0,
        "empty log has head 0"
    );
    assert_eq!(s.progress_state(u.id, b).await.unwrap(), None);

    let w1 = write(u.id, 1, true, state(b, d1, 10.0, 1));
    assert_eq!(
        s.record_progress(&w1).await.unwrap(),
        RecordOutcome::Recorded
    );
    assert_eq!(s.progress_head(u.id).await.unwrap(), 1);
    assert_eq!(
        s.progress_state(u.id, b).await.unwrap(),
        Some(w1.event.state.clone())
    );

    // The same event id again: nothing written, the first event returned.
    let mut again = w1.clone();
    again.expected_seq = 1;
    again.event.seq = 2;
    match s.record_progress(&again).await.unwrap() {
        RecordOutcome::Duplicate(e) => {
            assert_eq!(e.seq, 1);
            assert_eq!(e.body, w1.event.body);
            assert!(e.applied);
        }
        other => panic!("a repeated event id must be Duplicate, got {other:?}"),
    }
    assert_eq!(
        s.progress_head(u.id).await.unwrap(),
        1,
        "duplicate leaves the head"
    );

    // A stale owner (expects head 0) is refused.
    let stale = write(u.id, 1, true, state(b, d2, 50.0, 2));
    match s.record_progress(&stale).await {
        Err(StoreError::VersionConflict {
            expected: 0,
            found: 1,
        }) => {}
        other => panic!("a write on an old head must be VersionConflict, got {other:?}"),
    }
    // A state version that skips one is refused, and nothing of that write stays.
    let skip = write(u.id, 2, true, state(b, d2, 50.0, 5));
    assert!(matches!(
        s.record_progress(&skip).await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(
        s.progress_head(u.id).await.unwrap(),
        1,
        "a refused write leaves no event"
    );

    // Not applied (behind): logged and the device position kept, the state unchanged.
    let mut behind = write(u.id, 2, false, w1.event.state.clone());
    behind.position.device_id = d2;
    behind.position.percent = Percent::new(3.0).unwrap();
    assert_eq!(
        s.record_progress(&behind).await.unwrap(),
        RecordOutcome::Recorded
    );
    assert_eq!(
        s.progress_state(u.id, b).await.unwrap(),
        Some(w1.event.state.clone())
    );
    let positions = s.device_positions(u.id, b).await.unwrap();
    assert_eq!(positions.len(), 2, "both devices' last positions are kept");
    assert!(
        positions
            .iter()
            .any(|p| p.device_id == d2 && p.percent.get() == 3.0)
    );

    let w3 = write(u.id, 3, true, state(b, d2, 60.0, 2));
    assert_eq!(
        s.record_progress(&w3).await.unwrap(),
        RecordOutcome::Recorded
    );
    let b2 = BookId::generate();
    let w4 = write(u.id, 4, true, state(b2, d1, 1.0, 1));
    s.record_progress(&w4).await.unwrap();

    let changes = s.progress_changes(u.id, 0, 100).await.unwrap();
    let seqs: Vec<u64> = changes.iter().map(|(q, _)| *q).collect();
    assert_eq!(
        seqs,
        vec![1, 3, 4],
        "changes are applied events only, in order"
    );
    assert_eq!(changes[1].1, w3.event.state);
    let after = s.progress_changes(u.id, 3, 100).await.unwrap();
    assert_eq!(after.len(), 1, "changes after a cursor");
    assert_eq!(
        s.progress_changes(u.id, 0, 1).await.unwrap().len(),
        1,
        "limit"
    );
    assert_eq!(
        s.progress_states(u.id, None, 10).await.unwrap().len(),
        2,
        "one state per book"
    );
    let first = s.progress_states(u.id, None, 1).await.unwrap();
    assert_eq!(first.len(), 1, "states honour the limit");
    let rest = s
        .progress_states(u.id, Some(first[0].book_id), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1, "states page by book id");
    assert!(rest[0].book_id > first[0].book_id);
    assert!(
        s.progress_states(other.id, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "progress is per user"
    );
    assert!(
        s.progress_changes(other.id, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.progress_head(other.id).await.unwrap(), 0);
    // Event ids are scoped to their user.
    let mut theirs = w1.clone();
    theirs.user_id = other.id;
    theirs.expected_seq = 0;
    assert_eq!(
        s.record_progress(&theirs).await.unwrap(),
        RecordOutcome::Recorded
    );

    // Many concurrent writers for different users all commit (group commit).
    let mut users = Vec::new();
    for i in 0..32 {
        let (cu, cl) = new_user(&format!("conf_many_{i}"));
        s.create_user(&cu, &cl).await.unwrap();
        users.push(cu.id);
    }
    let futs = users.iter().map(|&uid| async move {
        s.record_progress(&write(uid, 1, true, state(b, d1, 5.0, 1)))
            .await
    });
    for r in futures_join_all(futs).await {
        assert_eq!(r.unwrap(), RecordOutcome::Recorded);
    }
    for uid in users {
        assert_eq!(s.progress_head(uid).await.unwrap(), 1);
    }
}

/// Books' change numbers: every write takes a larger one, in commit order, and the feed
/// returns tombstones too, so a device can page through "what changed since".
pub async fn change_feeds(s: &dyn Store) {
    let r = seed_reader(s, "feeds").await;
    let lib = r.library.id;
    let all = s.books_changed(lib, 0, 100).await.unwrap();
    assert_eq!(all.len(), 1, "the seeded book is in the feed");
    let (first_seq, _) = all[0];
    let a = book(lib, "A", "X");
    let b = book(lib, "B", "Y");
    s.create_book(&a).await.unwrap();
    s.create_book(&b).await.unwrap();
    let after = s.books_changed(lib, first_seq, 100).await.unwrap();
    let ids: Vec<BookId> = after.iter().map(|(_, b)| b.id).collect();
    assert_eq!(ids, vec![a.id, b.id], "changes come in write order");
    assert!(
        after[0].0 > first_seq && after[1].0 > after[0].0,
        "numbers grow"
    );
    let mut a2 = a.clone();
    a2.version = 2;
    a2.deleted_at = Some(Timestamp::now());
    s.update_book(&a2).await.unwrap();
    let last = after[1].0;
    let tail = s.books_changed(lib, last, 100).await.unwrap();
    assert_eq!(tail.len(), 1, "only the tombstoned book changed");
    assert_eq!(tail[0].1.id, a.id);
    assert!(tail[0].1.deleted_at.is_some(), "tombstones are in the feed");
    let paged = s.books_changed(lib, 0, 2).await.unwrap();
    assert_eq!(paged.len(), 2, "limit");
    let other = seed_reader(s, "feeds2").await;
    assert_eq!(
        s.books_changed(other.library.id, 0, 100)
            .await
            .unwrap()
            .len(),
        1,
        "feeds are per library"
    );
    let states = s
        .progress_states_of(r.user.id, &[r.book.id, a.id])
        .await
        .unwrap();
    assert!(states.is_empty(), "no progress yet");
}

pub async fn shelves(s: &dyn Store) {
    let r = seed_reader(s, "shelver").await;
    let now = Timestamp::now();
    let shelf = Shelf {
        id: ShelfId::generate(),
        user_id: r.user.id,
        name: "Beach".into(),
        books: vec![r.book.id],
        created_at: now,
        updated_at: now,
        deleted_at: None,
        change_seq: 0,
    };
    let put = s.put_shelf(&shelf).await.unwrap();
    assert!(put.change_seq > 0, "a change number is assigned");
    assert_eq!(
        s.shelf(shelf.id).await.unwrap().unwrap().books,
        vec![r.book.id]
    );
    let mut renamed = put.clone();
    renamed.name = "Holiday".into();
    renamed.books.clear();
    let renamed = s.put_shelf(&renamed).await.unwrap();
    assert!(renamed.change_seq > put.change_seq);
    let listed = s.shelves(r.user.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "Holiday");
    assert!(listed[0].books.is_empty());
    let changed = s
        .shelves_changed(r.user.id, put.change_seq, 10)
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    let mut gone = renamed.clone();
    gone.deleted_at = Some(Timestamp::now());
    s.put_shelf(&gone).await.unwrap();
    assert!(
        s.shelves(r.user.id).await.unwrap().is_empty(),
        "deleted: not listed"
    );
    let tomb = s
        .shelves_changed(r.user.id, renamed.change_seq, 10)
        .await
        .unwrap();
    assert!(tomb[0].deleted_at.is_some(), "tombstones are in the feed");
    let other = seed_reader(s, "shelver2").await;
    assert!(
        s.shelves_changed(other.user.id, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn kobo_devices(s: &dyn Store) {
    let r = seed_reader(s, "koboist").await;
    let dev = Device {
        id: DeviceId::generate(),
        user_id: r.user.id,
        name: "Libra".into(),
        kind: DeviceKind::Kobo,
        created_at: Timestamp::now(),
    };
    let tok = KoboToken {
        device_id: dev.id,
        user_id: r.user.id,
        token_hash: "h-1".into(),
        created_at: dev.created_at,
    };
    s.create_kobo_device(&dev, &tok).await.unwrap();
    assert_eq!(s.kobo_token("h-1").await.unwrap(), Some(tok.clone()));
    assert_eq!(s.kobo_token("h-2").await.unwrap(), None);
    assert_eq!(s.kobo_tokens(r.user.id).await.unwrap(), vec![tok.clone()]);
    assert!(
        s.devices(r.user.id)
            .await
            .unwrap()
            .iter()
            .any(|d| d.id == dev.id)
    );
    assert_eq!(s.kobo_sync_state(dev.id).await.unwrap(), None);
    let other_lib = LibraryId::generate();
    let entry = |b: BookId, lib: LibraryId| KoboLedgerEntry {
        book_id: b,
        library_id: lib,
        fingerprint: "f1".into(),
        removed: false,
        archived: false,
    };
    let (b1, b2) = (r.book.id, BookId::generate());
    let shelf = ShelfId::generate();
    let w = KoboSyncWrite {
        reset: false,
        state: "{\"p\":1}".into(),
        ledger: vec![entry(b1, r.library.id), entry(b2, other_lib)],
        tags: vec![(shelf, true)],
    };
    s.save_kobo_sync(dev.id, &w).await.unwrap();
    assert_eq!(
        s.kobo_sync_state(dev.id).await.unwrap().as_deref(),
        Some("{\"p\":1}")
    );
    assert_eq!(s.kobo_ledger(dev.id, &[b1, b2]).await.unwrap().len(), 2);
    let outside = s
        .kobo_ledger_outside(dev.id, &[r.library.id], 10)
        .await
        .unwrap();
    assert_eq!(
        outside,
        vec![entry(b2, other_lib)],
        "books of other libraries"
    );
    assert_eq!(s.kobo_tags(dev.id).await.unwrap(), vec![shelf]);
    assert!(s.set_kobo_archived(dev.id, b1, true).await.unwrap());
    assert!(
        !s.set_kobo_archived(dev.id, BookId::generate(), true)
            .await
            .unwrap()
    );
    assert!(s.kobo_ledger(dev.id, &[b1]).await.unwrap()[0].archived);
    // A page after a reset replaces the ledger.
    let reset = KoboSyncWrite {
        reset: true,
        state: "{}".into(),
        ledger: vec![entry(b2, other_lib)],
        tags: vec![(shelf, false)],
    };
    s.save_kobo_sync(dev.id, &reset).await.unwrap();
    let left = s.kobo_ledger(dev.id, &[b1, b2]).await.unwrap();
    assert_eq!(left, vec![entry(b2, other_lib)]);
    assert!(s.kobo_tags(dev.id).await.unwrap().is_empty());
    // Deleting the device revokes its token and forgets its sync state.
    assert!(s.delete_device(r.user.id, dev.id).await.unwrap());
    assert_eq!(s.kobo_token("h-1").await.unwrap(), None);
    assert_eq!(s.kobo_sync_state(dev.id).await.unwrap(), None);
    assert!(s.kobo_ledger(dev.id, &[b2]).await.unwrap().is_empty());
}

pub async fn closing(s: &dyn Store) {
    s.ping().await.expect("ping on an open store");
    s.close().await.expect("close");
    assert!(s.ping().await.is_err(), "a closed store refuses reads");
    let (u, lib) = new_user("conf_late");
    assert!(
        s.create_user(&u, &lib).await.is_err(),
        "a closed store refuses writes"
    );
}

/// Runs futures concurrently on the current task without a dependency on `futures`.
async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, h) in handles.iter_mut().enumerate() {
            if let Some(f) = h {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        outputs[i] = Some(v);
                        *h = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
