//! KOReader: logins tied to devices, the digest index books keep across edits, and positions
//! kept per (user, digest) that only move forward.

use super::*;

pub async fn koreader(s: &dyn Store) {
    let r = seed_reader(s, "koreaderist").await;
    let dev = Device {
        id: DeviceId::generate(),
        user_id: r.user.id,
        name: "PocketBook".into(),
        kind: DeviceKind::Koreader,
        created_at: Timestamp::now(),
    };
    let login = KoreaderLogin {
        username: "koreaderist-ab12".into(),
        device_id: dev.id,
        user_id: r.user.id,
        key_hash: "$argon2id$fake".into(),
        created_at: dev.created_at,
    };
    s.create_koreader_device(&dev, &login).await.unwrap();
    assert_eq!(
        s.koreader_login("koreaderist-ab12").await.unwrap(),
        Some(login.clone())
    );
    assert_eq!(s.koreader_login("nobody").await.unwrap(), None);
    assert_eq!(
        s.koreader_logins(r.user.id).await.unwrap(),
        vec![login.clone()]
    );
    // The name is unique; a refused login leaves no device behind.
    let dev2 = Device {
        id: DeviceId::generate(),
        ..dev.clone()
    };
    let clash = KoreaderLogin {
        device_id: dev2.id,
        ..login.clone()
    };
    match s.create_koreader_device(&dev2, &clash).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a taken KOReader name must conflict, got {other:?}"),
    }
    assert!(
        !s.devices(r.user.id)
            .await
            .unwrap()
            .iter()
            .any(|d| d.id == dev2.id)
    );

    // Digests: every file's and every served name's, kept after the book changes.
    let mut b = book(r.library.id, "Moby Dick", "Herman Melville");
    b.meta.formats = vec![file(Format::Epub, "0123456789abcdef")];
    s.create_book(&b).await.unwrap();
    let content = b.meta.formats[0].koreader.clone().unwrap();
    let by_name = crate::md5_hex(b"Moby Dick - Herman Melville.epub");
    assert_eq!(s.koreader_books(&content).await.unwrap(), vec![b.id]);
    assert_eq!(s.koreader_books(&by_name).await.unwrap(), vec![b.id]);
    assert_eq!(s.koreader_books("0000").await.unwrap(), vec![]);
    let mut renamed = b.clone();
    renamed.title = "Moby-Dick".into();
    renamed.version += 1;
    s.update_book(&renamed).await.unwrap();
    assert_eq!(s.koreader_books(&by_name).await.unwrap(), vec![b.id]);
    let new_name = crate::md5_hex(b"Moby-Dick - Herman Melville.epub");
    assert_eq!(s.koreader_books(&new_name).await.unwrap(), vec![b.id]);
    // The same file in another book: the digest names both.
    let mut twin = book(r.library.id, "Moby Dick (copy)", "Herman Melville");
    twin.meta.formats = vec![file(Format::Epub, "0123456789abcdef")];
    s.create_book(&twin).await.unwrap();
    let mut both = vec![b.id, twin.id];
    both.sort();
    assert_eq!(s.koreader_books(&content).await.unwrap(), both);

    // Positions per (user, digest), forward only.
    let at = |pct: f64, progress: &str| KoreaderPosition {
        user_id: r.user.id,
        document: "d1".into(),
        progress: progress.into(),
        percentage: pct,
        device: "PocketBook".into(),
        device_id: Some("ABC".into()),
        written_by: dev.id,
        book_id: None,
        updated_at: Timestamp::now(),
    };
    assert!(s.put_koreader_position(&at(0.4, "/a")).await.unwrap());
    assert!(s.put_koreader_position(&at(0.5, "/b")).await.unwrap());
    assert!(!s.put_koreader_position(&at(0.3, "/c")).await.unwrap());
    let got = s.koreader_position(r.user.id, "d1").await.unwrap().unwrap();
    assert_eq!((got.percentage, got.progress.as_str()), (0.5, "/b"));
    assert_eq!(s.koreader_position(r.user.id, "d2").await.unwrap(), None);
    let waiting = s
        .unattached_koreader_positions(&["d1".into(), "zz".into()])
        .await
        .unwrap();
    assert_eq!(waiting, vec![got.clone()]);
    s.attach_koreader_position(r.user.id, "d1", b.id)
        .await
        .unwrap();
    assert!(
        s.unattached_koreader_positions(&["d1".into()])
            .await
            .unwrap()
            .is_empty()
    );
    let got = s.koreader_position(r.user.id, "d1").await.unwrap().unwrap();
    assert_eq!(got.book_id, Some(b.id));

    // Books stored before digests were computed are found, to be given theirs.
    let mut old = book(r.library.id, "Old Import", "Someone");
    let mut f = file(Format::Pdf, "00000000000000aa");
    f.koreader = None;
    old.meta.formats = vec![f];
    s.create_book(&old).await.unwrap();
    let missing: Vec<BookId> = s
        .books_without_koreader(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert!(missing.contains(&old.id), "{missing:?}");
    assert!(!missing.contains(&b.id), "a book with digests");
    assert!(!missing.contains(&r.book.id), "a book without files");
    assert!(
        !s.books_without_koreader(Some(old.id), 100)
            .await
            .unwrap()
            .iter()
            .any(|x| x.id == old.id),
        "after the cursor"
    );

    // Deleting the device revokes the login.
    assert!(s.delete_device(r.user.id, dev.id).await.unwrap());
    assert_eq!(s.koreader_login("koreaderist-ab12").await.unwrap(), None);
}

/// Tokens in OPDS catalog URLs: made with their device, found by hash, listed, gone with the
/// device; a hash is unique.
pub async fn opds_tokens(s: &dyn Store) {
    let r = seed_reader(s, "opdsist").await;
    let dev = Device {
        id: DeviceId::generate(),
        user_id: r.user.id,
        name: "Moon+ Reader".into(),
        kind: DeviceKind::Other,
        created_at: Timestamp::now(),
    };
    let tok = OpdsToken {
        device_id: dev.id,
        user_id: r.user.id,
        token_hash: "opds-h-1".into(),
        created_at: dev.created_at,
    };
    s.create_opds_device(&dev, &tok).await.unwrap();
    assert_eq!(s.opds_token("opds-h-1").await.unwrap(), Some(tok.clone()));
    assert_eq!(s.opds_token("opds-h-2").await.unwrap(), None);
    assert_eq!(s.opds_tokens(r.user.id).await.unwrap(), vec![tok.clone()]);
    let dev2 = Device {
        id: DeviceId::generate(),
        ..dev.clone()
    };
    let clash = OpdsToken {
        device_id: dev2.id,
        ..tok.clone()
    };
    assert!(matches!(
        s.create_opds_device(&dev2, &clash).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.delete_device(r.user.id, dev.id).await.unwrap());
    assert_eq!(s.opds_token("opds-h-1").await.unwrap(), None);
    assert!(s.opds_tokens(r.user.id).await.unwrap().is_empty());
}
