//! Kobo devices: tokens, per-device sync state, the ledger of what a device was given, and
//! the collections it holds.

use super::*;

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
        expected: None,
    };
    s.save_kobo_sync(dev.id, &w).await.unwrap();
    // Another page built from the same (empty) position is refused, and leaves nothing.
    let stale = KoboSyncWrite {
        state: "{\"p\":9}".into(),
        ledger: vec![entry(BookId::generate(), r.library.id)],
        ..w.clone()
    };
    assert!(matches!(
        s.save_kobo_sync(dev.id, &stale).await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(
        s.kobo_ledger(dev.id, &[stale.ledger[0].book_id])
            .await
            .unwrap(),
        vec![],
        "a refused page writes no ledger"
    );
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
        expected: Some("{\"p\":1}".into()),
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
