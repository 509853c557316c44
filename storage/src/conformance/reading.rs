//! Readers' records of books, idempotent answers and account management.

use super::books::book;
use super::*;
use crate::reading::*;

fn record(user: UserId, book: BookId, version: u64) -> UserBook {
    UserBook {
        version,
        updated_at: Timestamp::now(),
        ..UserBook::empty(user, book)
    }
}

pub async fn user_books(s: &dyn Store) {
    let (u, lib) = new_user("mine-reader");
    s.create_user(&u, &lib).await.unwrap();
    let a = book(lib.id, "Alpha", "A. Author");
    let b = book(lib.id, "Beta", "B. Author");
    let c = book(lib.id, "Gamma", "C. Author");
    for x in [&a, &b, &c] {
        s.create_book(x).await.unwrap();
    }
    assert_eq!(s.user_book(u.id, a.id).await.unwrap(), None, "nothing yet");

    let mut ra = record(u.id, a.id, 1);
    ra.status = Some(BookStatus::Reading);
    ra.rating = Rating::from_stars(4.5);
    ra.review = Some("A long review\nwith lines".into());
    let mut rb = record(u.id, b.id, 1);
    rb.favourite = true;
    s.put_user_books(u.id, &[ra.clone(), rb.clone()], None)
        .await
        .unwrap();
    assert_eq!(s.user_book(u.id, a.id).await.unwrap(), Some(ra.clone()));

    // Versions: a second create and a stale update are refused, with nothing written.
    let again = record(u.id, a.id, 1);
    assert!(matches!(
        s.put_user_books(u.id, &[again], None).await,
        Err(StoreError::VersionConflict { .. })
    ));
    let mut ra2 = ra.clone();
    ra2.version = 2;
    ra2.status = Some(BookStatus::Finished);
    let mut stale = rb.clone();
    stale.version = 3;
    assert!(
        s.put_user_books(u.id, &[ra2.clone(), stale], None)
            .await
            .is_err(),
        "a stale record refuses its whole write"
    );
    assert_eq!(
        s.user_book(u.id, a.id).await.unwrap(),
        Some(ra.clone()),
        "nothing of a refused write is kept"
    );
    s.put_user_books(u.id, std::slice::from_ref(&ra2), None)
        .await
        .unwrap();
    assert_eq!(s.user_book(u.id, a.id).await.unwrap(), Some(ra2.clone()));

    // Paging by book id.
    let all = s.user_books(u.id, None, 10).await.unwrap();
    let mut ids = vec![a.id, b.id];
    ids.sort();
    assert_eq!(all.iter().map(|r| r.book_id).collect::<Vec<_>>(), ids);
    let rest = s.user_books(u.id, Some(ids[0]), 10).await.unwrap();
    assert_eq!(rest.len(), 1);

    // Filters on book lists.
    let list = |m: MineFilter| {
        let q = BookQuery {
            libraries: vec![lib.id],
            limit: 10,
            mine: Some(MineFilter {
                user: Some(u.id),
                ..m
            }),
            ..Default::default()
        };
        async move {
            let mut titles: Vec<String> = s
                .list_books(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|b| b.title)
                .collect();
            titles.sort();
            titles
        }
    };
    let status = |st| MineFilter {
        status: Some(st),
        ..Default::default()
    };
    assert_eq!(list(status(BookStatus::Finished)).await, ["Alpha"]);
    assert!(list(status(BookStatus::Reading)).await.is_empty());
    let fav = |f| MineFilter {
        favourite: Some(f),
        ..Default::default()
    };
    assert_eq!(list(fav(true)).await, ["Beta"]);
    assert_eq!(
        list(fav(false)).await,
        ["Alpha", "Gamma"],
        "a book without a record is not a favourite"
    );
    let rated = |r| MineFilter {
        rated: Some(r),
        ..Default::default()
    };
    assert_eq!(list(rated(true)).await, ["Alpha"]);
    assert_eq!(list(rated(false)).await, ["Beta", "Gamma"]);
    // Another reader's records do not filter this reader's lists.
    let (other, other_lib) = new_user("mine-other");
    s.create_user(&other, &other_lib).await.unwrap();
    let q = BookQuery {
        libraries: vec![lib.id],
        limit: 10,
        mine: Some(MineFilter {
            user: Some(other.id),
            status: Some(BookStatus::Finished),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(s.list_books(&q).await.unwrap().is_empty());
}

pub async fn idempotent_answers(s: &dyn Store) {
    let (u, lib) = new_user("idem-reader");
    s.create_user(&u, &lib).await.unwrap();
    let b = book(lib.id, "Keyed", "K. Author");
    s.create_book(&b).await.unwrap();
    let now = Timestamp::now();
    let answer = |key: &str, body: &str, expires: Timestamp| IdempotentAnswer {
        user_id: u.id,
        key: key.into(),
        fingerprint: format!("fp-{body}"),
        status: 200,
        body: body.into(),
        created_at: now,
        expires_at: expires,
    };
    let first = answer("k1", "first", now.plus_secs(60));
    let r = record(u.id, b.id, 1);
    s.put_user_books(u.id, std::slice::from_ref(&r), Some(&first))
        .await
        .unwrap();
    assert_eq!(
        s.idempotent_answer(u.id, "k1", now).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(s.idempotent_answer(u.id, "k2", now).await.unwrap(), None);
    // The key is taken: a second answer under it writes nothing at all.
    let mut r2 = r.clone();
    r2.version = 2;
    r2.favourite = true;
    assert!(matches!(
        s.put_user_books(
            u.id,
            &[r2],
            Some(&answer("k1", "second", now.plus_secs(60)))
        )
        .await,
        Err(StoreError::Conflict("idempotency key"))
    ));
    assert_eq!(s.user_book(u.id, b.id).await.unwrap(), Some(r.clone()));
    // Another user's key space is their own.
    let (v, vlib) = new_user("idem-other");
    s.create_user(&v, &vlib).await.unwrap();
    assert_eq!(s.idempotent_answer(v.id, "k1", now).await.unwrap(), None);
    // Expired answers are not answered, may be replaced, and are purged.
    let old = answer("k3", "old", now.plus_secs(-1));
    s.put_user_books(u.id, &[], Some(&old)).await.unwrap();
    assert_eq!(s.idempotent_answer(u.id, "k3", now).await.unwrap(), None);
    let newer = answer("k3", "newer", now.plus_secs(60));
    s.put_user_books(u.id, &[], Some(&newer)).await.unwrap();
    assert_eq!(
        s.idempotent_answer(u.id, "k3", now)
            .await
            .unwrap()
            .map(|a| a.body),
        Some("newer".into())
    );
    let expiring = answer("k4", "expiring", now.plus_secs(5));
    s.put_user_books(u.id, &[], Some(&expiring)).await.unwrap();
    assert!(s.purge_idempotent_answers(now.plus_secs(10)).await.unwrap() >= 1);
    assert_eq!(
        s.idempotent_answer(u.id, "k4", now).await.unwrap(),
        None,
        "purged"
    );
}

pub async fn account_management(s: &dyn Store) {
    let (u, lib) = new_user("acct-a");
    s.create_user(&u, &lib).await.unwrap();
    let (v, vlib) = new_user("acct-b");
    s.create_user(&v, &vlib).await.unwrap();
    let before = Timestamp::now().plus_secs(-1);

    // Renames, and a taken name refused.
    let mut u2 = u.clone();
    u2.username = "acct-a2".into();
    u2.display_name = Some("Anne".into());
    u2.email = None;
    assert!(s.update_user(&u2).await.unwrap());
    assert_eq!(s.user(u.id).await.unwrap(), Some(u2.clone()));
    assert_eq!(s.user_by_name("acct-a").await.unwrap(), None);
    let mut taken = u2.clone();
    taken.username = "acct-b".into();
    assert!(matches!(
        s.update_user(&taken).await,
        Err(StoreError::Conflict("username"))
    ));
    assert!(
        s.users()
            .await
            .unwrap()
            .iter()
            .any(|x| x.username == "acct-a2")
    );

    // Token cut-offs: a raised epoch and a disabled account are listed.
    assert!(
        !s.token_cutoffs(before)
            .await
            .unwrap()
            .iter()
            .any(|(id, _)| *id == u.id),
        "a rename cuts nothing off"
    );
    u2.token_epoch = 3;
    s.update_user(&u2).await.unwrap();
    let mut v2 = v.clone();
    v2.disabled_at = Some(Timestamp::now());
    s.update_user(&v2).await.unwrap();
    let cut = s.token_cutoffs(before).await.unwrap();
    assert!(cut.contains(&(u.id, 3)), "{cut:?}");
    assert!(cut.contains(&(v.id, u64::MAX)), "{cut:?}");

    // Sessions revoked.
    let t = RefreshToken {
        hash: "acct-refresh".into(),
        user_id: u.id,
        family_id: FamilyId::generate(),
        created_at: Timestamp::now(),
        expires_at: Timestamp::now().plus_secs(3600),
    };
    s.insert_refresh_token(&t).await.unwrap();
    s.revoke_user_sessions(u.id).await.unwrap();
    assert!(matches!(
        s.rotate_refresh_token(
            "acct-refresh",
            "acct-next",
            Timestamp::now(),
            Timestamp::now().plus_secs(60)
        )
        .await
        .unwrap(),
        RotateOutcome::Reused
    ));

    // Deletion: refused while the user owns a shared library.
    let shared = Library {
        id: LibraryId::generate(),
        name: "Club".into(),
        kind: LibraryKind::Shared,
        owner_id: u.id,
        created_at: Timestamp::now(),
        pending_owner: None,
    };
    s.sharing_write(
        &[
            crate::sharing::SharingOp::PutLibrary(shared.clone()),
            crate::sharing::SharingOp::PutMember(Membership {
                library_id: shared.id,
                user_id: u.id,
                role: Role::Owner,
            }),
        ],
        &crate::sharing::AuditDraft::new(
            shared.id,
            u.id,
            crate::sharing::AuditAction::LibraryCreated,
        ),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.delete_user(u.id, Timestamp::now()).await,
        Err(StoreError::Conflict("libraries"))
    ));
    s.sharing_write(
        &[crate::sharing::SharingOp::DeleteLibrary(
            shared.id,
            Timestamp::now(),
        )],
        &crate::sharing::AuditDraft::new(
            shared.id,
            u.id,
            crate::sharing::AuditAction::LibraryDeleted,
        ),
    )
    .await
    .unwrap();

    // What is theirs goes; what another book uses stays.
    let mut mine = book(lib.id, "Mine", "M. Author");
    mine.meta.formats = vec![super::books::file(Format::Epub, "aaaa000000000001")];
    s.create_book(&mine).await.unwrap();
    let mut shared_file = book(vlib.id, "Theirs", "T. Author");
    shared_file.meta.formats = vec![super::books::file(Format::Epub, "aaaa000000000002")];
    let mut mine2 = book(lib.id, "Mine too", "M. Author");
    mine2.meta.formats = shared_file.meta.formats.clone();
    s.create_book(&shared_file).await.unwrap();
    s.create_book(&mine2).await.unwrap();
    let device = Device {
        id: DeviceId::generate(),
        user_id: u.id,
        name: "phone".into(),
        kind: DeviceKind::Mobile,
        created_at: Timestamp::now(),
    };
    s.create_device(&device).await.unwrap();
    let mut r = record(u.id, mine.id, 1);
    r.favourite = true;
    s.put_user_books(u.id, &[r], None).await.unwrap();
    let note = s
        .put_doc(&UserDoc {
            user_id: u.id,
            kind: DocKind::Note,
            id: DocId::generate(),
            book_id: None,
            version: 1,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            deleted_at: None,
            change_seq: 0,
            body: "{}".into(),
        })
        .await
        .unwrap();
    let gone = s
        .delete_user(u.id, Timestamp::now())
        .await
        .unwrap()
        .expect("deleted");
    let keys: Vec<String> = gone
        .iter()
        .filter_map(|l| match l {
            FileLocation::Object { key } => Some(key.clone()),
            FileLocation::External { .. } => None,
        })
        .collect();
    let mut mine_keys = Default::default();
    mine.meta.object_keys(&mut mine_keys);
    let mut kept_keys = Default::default();
    shared_file.meta.object_keys(&mut kept_keys);
    assert!(mine_keys.iter().all(|k| keys.contains(k)), "{keys:?}");
    assert!(kept_keys.iter().all(|k| !keys.contains(k)), "{keys:?}");
    assert_eq!(s.user(u.id).await.unwrap(), None);
    assert_eq!(s.user_by_name("acct-a2").await.unwrap(), None);
    assert!(s.devices(u.id).await.unwrap().is_empty());
    assert!(s.libraries_of(u.id).await.unwrap().is_empty());
    assert_eq!(s.book(mine.id).await.unwrap(), None);
    assert!(s.book(shared_file.id).await.unwrap().is_some());
    assert!(s.user_books(u.id, None, 10).await.unwrap().is_empty());
    assert_eq!(s.doc(u.id, note.id).await.unwrap(), None);
    assert!(
        s.token_cutoffs(before)
            .await
            .unwrap()
            .contains(&(u.id, u64::MAX))
    );
    assert!(!s.users().await.unwrap().iter().any(|x| x.id == u.id));
    assert_eq!(
        s.delete_user(u.id, Timestamp::now()).await.unwrap(),
        None,
        "twice"
    );
    // The name is free again.
    let (again, again_lib) = new_user("acct-a2");
    s.create_user(&again, &again_lib).await.unwrap();
}

pub async fn docs(s: &dyn Store) {
    let (u, lib) = new_user("docs-reader");
    s.create_user(&u, &lib).await.unwrap();
    let b = book(lib.id, "Annotated", "A. Author");
    s.create_book(&b).await.unwrap();
    let now = Timestamp::now();
    let doc = |kind, book_id, body: &str| UserDoc {
        user_id: u.id,
        kind,
        id: DocId::generate(),
        book_id,
        version: 1,
        created_at: now,
        updated_at: now,
        deleted_at: None,
        change_seq: 0,
        body: body.into(),
    };
    let note = s
        .put_doc(&doc(DocKind::Note, None, r#"{"title":"n"}"#))
        .await
        .unwrap();
    let hl = s
        .put_doc(&doc(DocKind::Annotation, Some(b.id), r#"{"text":"a"}"#))
        .await
        .unwrap();
    let todo = s
        .put_doc(&doc(DocKind::Todo, Some(b.id), r#"{"title":"t"}"#))
        .await
        .unwrap();
    assert!(note.change_seq < hl.change_seq && hl.change_seq < todo.change_seq);
    assert_eq!(s.doc(u.id, note.id).await.unwrap(), Some(note.clone()));

    // Versions: a stale or skipped version and an id of another kind are refused.
    let mut stale = note.clone();
    stale.body = r#"{"title":"stale"}"#.into();
    assert!(matches!(
        s.put_doc(&stale).await,
        Err(StoreError::VersionConflict { found: 1, .. })
    ));
    let mut again = note.clone();
    again.version = 2;
    again.kind = DocKind::Todo;
    assert!(matches!(
        s.put_doc(&again).await,
        Err(StoreError::Conflict("document id"))
    ));
    let mut edited = note.clone();
    edited.version = 2;
    edited.body = r#"{"title":"n2"}"#.into();
    let edited = s.put_doc(&edited).await.unwrap();
    assert!(
        edited.change_seq > todo.change_seq,
        "a write takes the next number"
    );

    // Tombstones: out of lists, in pulls.
    let mut gone = hl.clone();
    gone.version = 2;
    gone.deleted_at = Some(Timestamp::now());
    let gone = s.put_doc(&gone).await.unwrap();
    let q = |kind, after, deleted, book| DocQuery {
        user: u.id,
        kind,
        book,
        after,
        deleted,
        limit: 10,
    };
    assert!(
        s.docs(&q(DocKind::Annotation, 0, false, None))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.docs(&q(DocKind::Annotation, 0, true, None))
            .await
            .unwrap(),
        vec![gone.clone()]
    );
    assert!(
        s.docs(&q(DocKind::Annotation, gone.change_seq, true, None))
            .await
            .unwrap()
            .is_empty(),
        "nothing after the checkpoint"
    );
    assert_eq!(
        s.docs(&q(DocKind::Todo, 0, false, Some(b.id)))
            .await
            .unwrap(),
        vec![todo.clone()]
    );
    assert!(
        s.docs(&q(DocKind::Todo, 0, false, Some(BookId::generate())))
            .await
            .unwrap()
            .is_empty()
    );
    let notes = s.docs(&q(DocKind::Note, 0, true, None)).await.unwrap();
    assert_eq!(notes, vec![edited.clone()]);
    // Another user's documents are theirs; ids are per user.
    let (v, vlib) = new_user("docs-other");
    s.create_user(&v, &vlib).await.unwrap();
    assert_eq!(s.doc(v.id, note.id).await.unwrap(), None);
    let mut same_id = edited.clone();
    same_id.user_id = v.id;
    same_id.version = 1;
    let theirs = s.put_doc(&same_id).await.unwrap();
    assert_eq!(theirs.change_seq, 1, "their own numbers");
    assert_eq!(s.doc(u.id, note.id).await.unwrap(), Some(edited));
}

pub async fn relations(s: &dyn Store) {
    let (a, al) = new_user("rel-a");
    let (b, bl) = new_user("rel-b");
    let (c, cl) = new_user("rel-c");
    for (u, l) in [(&a, &al), (&b, &bl), (&c, &cl)] {
        s.create_user(u, l).await.unwrap();
    }
    let rel = |from: &User, to: &User, kind| Relation {
        from: from.id,
        to: to.id,
        kind,
        created_at: Timestamp::now(),
    };
    s.relate(&[
        RelationOp::Put(rel(&a, &b, RelationKind::Follow)),
        RelationOp::Put(rel(&c, &b, RelationKind::Request)),
        RelationOp::Put(rel(&b, &a, RelationKind::Follow)),
    ])
    .await
    .unwrap();
    // Putting one that exists changes nothing.
    s.relate(&[RelationOp::Put(rel(&a, &b, RelationKind::Follow))])
        .await
        .unwrap();
    assert_eq!(s.relations_between(a.id, b.id).await.unwrap().len(), 2);
    assert_eq!(s.relations_between(b.id, a.id).await.unwrap().len(), 2);
    let followers = s
        .relations_of(b.id, RelationKind::Follow, true)
        .await
        .unwrap();
    assert_eq!(followers.len(), 1);
    assert_eq!(followers[0].username, "rel-a");
    assert_eq!(followers[0].relation.from, a.id);
    let asks = s
        .relations_of(b.id, RelationKind::Request, true)
        .await
        .unwrap();
    assert_eq!(asks[0].username, "rel-c");
    let following = s
        .relations_of(a.id, RelationKind::Follow, false)
        .await
        .unwrap();
    assert_eq!(following[0].username, "rel-b");
    // Deleted in one transaction with a put; a deleted account leaves the lists.
    s.relate(&[
        RelationOp::Delete {
            from: a.id,
            to: b.id,
            kind: RelationKind::Follow,
        },
        RelationOp::Put(rel(&b, &a, RelationKind::Block)),
    ])
    .await
    .unwrap();
    let mut left: Vec<(UserId, RelationKind)> = s
        .relations_between(a.id, b.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.from, r.kind))
        .collect();
    left.sort_by_key(|(_, k)| k.as_str());
    assert_eq!(
        left,
        vec![(b.id, RelationKind::Block), (b.id, RelationKind::Follow)],
        "a's follow gone, b's follow and block there"
    );
    s.delete_user(c.id, Timestamp::now()).await.unwrap();
    assert!(
        s.relations_of(b.id, RelationKind::Request, true)
            .await
            .unwrap()
            .is_empty()
    );
}
