//! Books: create, edit, tombstones, imported metadata, search, filters, sort orders and
//! their cursors, pages over several libraries, and the change feed devices sync from.

use super::*;

pub fn book(lib: LibraryId, title: &str, author: &str) -> Book {
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

pub(super) fn file(format: Format, hash: &str) -> BookFile {
    BookFile {
        format,
        size: 42,
        hash: hash.into(),
        location: FileLocation::Object {
            key: format!("files/{hash}"),
        },
        koreader: Some(crate::digest::md5_hex(hash.as_bytes())),
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

/// What a catalog asks of the book list: reversed orders (newest first, and the page before
/// a cursor), filters by language and by format, and browse lists of authors, series, tags
/// and languages with their counts, over several libraries.
pub async fn catalog_queries(s: &dyn Store) {
    let (u, lib) = new_user("conf_catalog");
    let (u2, second) = new_user("conf_catalog_2");
    s.create_user(&u, &lib).await.unwrap();
    s.create_user(&u2, &second).await.unwrap();
    let mut made = Vec::new();
    for (i, (t, a, lang, fmt, tags, series)) in [
        (
            "Alpha",
            "Ann",
            "en",
            Format::Epub,
            vec!["Drama"],
            Some("Cycle"),
        ),
        (
            "Bravo",
            "bob",
            "fr",
            Format::Pdf,
            vec!["drama", "Poetry"],
            Some("Cycle"),
        ),
        ("Charlie", "Ann", "EN", Format::Cbz, vec![], None),
        ("Delta", "Cy", "de", Format::Epub, vec!["Poetry"], None),
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = book(if i == 3 { second.id } else { lib.id }, t, a);
        b.language = Some(lang.into());
        b.added_at = Timestamp::from_millis(1_000 + i as i64);
        b.meta.formats = vec![file(fmt, &format!("{i:016x}"))];
        b.meta.tags = tags.into_iter().map(str::to_string).collect();
        b.meta.series = series.map(str::to_string);
        s.create_book(&b).await.unwrap();
        made.push(b);
    }
    // A book without a file: listed, but not in a catalog's lists or counts.
    let mut echo = book(lib.id, "Echo", "Ann");
    echo.added_at = Timestamp::from_millis(500);
    s.create_book(&echo).await.unwrap();
    let q = |sort, descending, after: Option<BookAfter>| BookQuery {
        libraries: vec![lib.id, second.id],
        sort,
        descending,
        after,
        limit: 2,
        with_files: true,
        ..Default::default()
    };
    let titles = |books: Vec<Book>| books.into_iter().map(|b| b.title).collect::<Vec<_>>();
    let newest = s.list_books(&q(BookSort::Added, true, None)).await.unwrap();
    assert_eq!(titles(newest.clone()), ["Delta", "Charlie"], "newest first");
    let last = &newest[1];
    let after = BookAfter {
        key: last.sort_key(BookSort::Added),
        id: last.id,
    };
    assert_eq!(
        titles(
            s.list_books(&q(BookSort::Added, true, Some(after)))
                .await
                .unwrap()
        ),
        ["Bravo", "Alpha"],
        "the next page of a reversed order"
    );
    let c = &made[2];
    let before = BookAfter {
        key: c.sort_key(BookSort::Title),
        id: c.id,
    };
    assert_eq!(
        titles(
            s.list_books(&q(BookSort::Title, true, Some(before)))
                .await
                .unwrap()
        ),
        ["Bravo", "Alpha"],
        "the books before a cursor, read backwards"
    );
    let filtered = |language: Option<&str>, format: Option<Format>| {
        let query = BookQuery {
            libraries: vec![lib.id, second.id],
            sort: BookSort::Title,
            language: language.map(str::to_string),
            format,
            limit: 10,
            ..Default::default()
        };
        async move { titles(s.list_books(&query).await.unwrap()) }
    };
    assert_eq!(
        filtered(Some("en"), None).await,
        ["Alpha", "Charlie", "Echo"]
    );
    let with_files = BookQuery {
        libraries: vec![lib.id],
        sort: BookSort::Title,
        with_files: true,
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        titles(s.list_books(&with_files).await.unwrap()),
        ["Alpha", "Bravo", "Charlie"],
        "only books with a file"
    );
    assert_eq!(filtered(None, Some(Format::Epub)).await, ["Alpha", "Delta"]);
    assert_eq!(
        filtered(Some("fr"), Some(Format::Epub)).await,
        Vec::<String>::new()
    );
    let libs = [lib.id, second.id];
    let facets = |f| async move { s.book_facets(&libs, f).await.unwrap() };
    let pairs = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(a, n)| (a.to_string(), *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        facets(BookFacet::Author).await,
        pairs(&[("Ann", 2), ("bob", 1), ("Cy", 1)])
    );
    assert_eq!(
        facets(BookFacet::Tag).await,
        pairs(&[("Drama", 2), ("Poetry", 2)]),
        "values differing in case are one, as the filters take them"
    );
    assert_eq!(facets(BookFacet::Series).await, pairs(&[("Cycle", 2)]));
    assert_eq!(
        facets(BookFacet::Language).await,
        pairs(&[("de", 1), ("EN", 2), ("fr", 1)])
    );
    assert_eq!(
        s.book_facets(&[lib.id], BookFacet::Author).await.unwrap(),
        pairs(&[("Ann", 2), ("bob", 1)]),
        "only the libraries asked for"
    );
    // A tombstone counts for nothing, and moves the version of its library only.
    let (v1, v2) = (
        s.books_version(&[lib.id]).await.unwrap(),
        s.books_version(&[second.id]).await.unwrap(),
    );
    assert!(v1 > 0 && v2 > 0);
    assert_eq!(s.books_version(&libs).await.unwrap(), v1.max(v2));
    assert_eq!(s.books_version(&[LibraryId::generate()]).await.unwrap(), 0);
    let mut gone = made[1].clone();
    gone.deleted_at = Some(Timestamp::now());
    gone.version += 1;
    s.update_book(&gone).await.unwrap();
    assert!(s.books_version(&[lib.id]).await.unwrap() > v1);
    assert_eq!(s.books_version(&[second.id]).await.unwrap(), v2);
    assert_eq!(facets(BookFacet::Series).await, pairs(&[("Cycle", 1)]));
    assert_eq!(
        facets(BookFacet::Tag).await,
        pairs(&[("Drama", 1), ("Poetry", 1)])
    );
    // An edit moves its book from one value to another; a book given its first file starts
    // to count, one that loses its last file stops.
    let mut charlie = made[2].clone();
    charlie.authors = vec!["Cy".into(), "Dee".into()];
    charlie.meta.tags = vec!["poetry".into()];
    charlie.version += 1;
    s.update_book(&charlie).await.unwrap();
    echo.meta.formats = vec![file(Format::Epub, "00000000000000ee")];
    echo.version += 1;
    s.update_book(&echo).await.unwrap();
    let mut delta = made[3].clone();
    delta.meta.formats.clear();
    delta.version += 1;
    s.update_book(&delta).await.unwrap();
    assert_eq!(
        facets(BookFacet::Author).await,
        pairs(&[("Ann", 2), ("Cy", 1), ("Dee", 1)])
    );
    assert_eq!(
        facets(BookFacet::Tag).await,
        pairs(&[("Drama", 1), ("poetry", 1)]),
        "a value's spelling follows the books that have it"
    );
    assert_eq!(facets(BookFacet::Language).await, pairs(&[("EN", 3)]));
}
