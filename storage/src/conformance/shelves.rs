//! Shelves and their books, with tombstones.

use super::*;

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
        library_id: None,
        public: false,
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
    // A writer holding the shelf as it was before the rename is refused.
    let mut stale = put.clone();
    stale.name = "Lost".into();
    assert!(matches!(
        s.put_shelf(&stale).await,
        Err(StoreError::VersionConflict { .. })
    ));
    let listed = s.shelves(r.user.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "Holiday");
    assert!(listed[0].books.is_empty());
    let changed = s
        .shelves_changed(r.user.id, &[], put.change_seq, 10)
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
        .shelves_changed(r.user.id, &[], renamed.change_seq, 10)
        .await
        .unwrap();
    assert!(tomb[0].deleted_at.is_some(), "tombstones are in the feed");
    let other = seed_reader(s, "shelver2").await;
    assert!(
        s.shelves_changed(other.user.id, &[], 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A library's shelf: not among its maker's own, listed for the library, and in the
    // change feed of whoever asks with that library.
    let lib_shelf = Shelf {
        id: ShelfId::generate(),
        name: "Family picks".into(),
        library_id: Some(r.library.id),
        change_seq: 0,
        ..shelf.clone()
    };
    let lib_shelf = s.put_shelf(&lib_shelf).await.unwrap();
    assert!(s.shelves(r.user.id).await.unwrap().is_empty());
    let of_lib = s.library_shelves(&[r.library.id]).await.unwrap();
    assert_eq!(of_lib, vec![lib_shelf.clone()]);
    assert!(s.library_shelves(&[]).await.unwrap().is_empty());
    let seen = s
        .shelves_changed(other.user.id, &[r.library.id], 0, 10)
        .await
        .unwrap();
    assert_eq!(seen, vec![lib_shelf.clone()], "another member sees it");
    assert!(
        s.shelves_changed(r.user.id, &[], renamed.change_seq, 10)
            .await
            .unwrap()
            .iter()
            .all(|x| x.library_id.is_none()),
        "without the library, only one's own"
    );
}
