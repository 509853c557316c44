//! Shared libraries: an action and its audit entry are written together or not at all, the
//! log is numbered and chained per library, an invitation's uses are counted at the store,
//! and a deleted library disappears for its members while its log stays.

use super::new_user;
use crate::error::StoreError;
use crate::ids::*;
use crate::records::*;
use crate::sharing::{AuditAction, AuditDraft, Invite, SharingOp, check_chain};
use crate::store::Store;
use crate::time::Timestamp;

pub async fn sharing(s: &dyn Store) {
    let (owner, personal) = new_user("conf_share_owner");
    let (friend, friend_lib) = new_user("conf_share_friend");
    let (late, late_lib) = new_user("conf_share_late");
    for (u, l) in [
        (&owner, &personal),
        (&friend, &friend_lib),
        (&late, &late_lib),
    ] {
        s.create_user(u, l).await.unwrap();
    }
    let lib = Library {
        id: LibraryId::generate(),
        name: "Family".into(),
        kind: LibraryKind::Shared,
        owner_id: owner.id,
        created_at: Timestamp::now(),
        pending_owner: None,
    };
    let draft = |action| AuditDraft::new(lib.id, owner.id, action);
    let first = s
        .sharing_write(
            &[
                SharingOp::PutLibrary(lib.clone()),
                SharingOp::PutMember(Membership {
                    library_id: lib.id,
                    user_id: owner.id,
                    role: Role::Owner,
                }),
            ],
            &AuditDraft {
                addr: Some("192.0.2.1".into()),
                ..draft(AuditAction::LibraryCreated)
            },
        )
        .await
        .unwrap();
    assert_eq!((first.seq, first.prev_hash.as_str()), (1, ""));
    assert_eq!(s.library(lib.id).await.unwrap(), Some(lib.clone()));
    let mine = s.libraries_of(owner.id).await.unwrap();
    assert_eq!(mine.len(), 2, "personal and shared");
    assert_eq!(mine[0].0.kind, LibraryKind::Personal, "personal first");
    assert_eq!(mine[1], (lib.clone(), Role::Owner));

    let invite = Invite {
        id: InviteId::generate(),
        library_id: lib.id,
        code_hash: "conf-share-code-hash".into(),
        role: Role::Reader,
        created_by: owner.id,
        created_at: Timestamp::now(),
        expires_at: None,
        max_uses: Some(1),
        uses: 0,
        revoked_at: None,
    };
    s.sharing_write(
        &[SharingOp::PutInvite(invite.clone())],
        &AuditDraft {
            invite_id: Some(invite.id),
            role: Some(Role::Reader),
            ..draft(AuditAction::InviteCreated)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.invite_by_code("conf-share-code-hash").await.unwrap(),
        Some(invite.clone())
    );
    assert_eq!(s.invite(invite.id).await.unwrap(), Some(invite.clone()));
    let redeem = |user: UserId| {
        let ops = vec![
            SharingOp::Redeem(invite.id, Timestamp::now()),
            SharingOp::PutMember(Membership {
                library_id: lib.id,
                user_id: user,
                role: Role::Reader,
            }),
        ];
        let audit = AuditDraft {
            target_user: Some(user),
            invite_id: Some(invite.id),
            ..AuditDraft::new(lib.id, user, AuditAction::InviteRedeemed)
        };
        async move { s.sharing_write(&ops, &audit).await }
    };
    redeem(friend.id).await.unwrap();
    match redeem(late.id).await {
        Err(StoreError::Conflict("invite")) => {}
        other => panic!("a used-up invitation must refuse, got {other:?}"),
    }
    assert!(
        !s.memberships(lib.id)
            .await
            .unwrap()
            .iter()
            .any(|m| m.user_id == late.id),
        "nothing of a refused action is written"
    );
    assert_eq!(s.invites(lib.id).await.unwrap()[0].uses, 1);
    assert_eq!(
        s.libraries_of(friend.id).await.unwrap()[1],
        (lib.clone(), Role::Reader)
    );

    // An invitation past its expiry refuses too.
    let expired = Invite {
        id: InviteId::generate(),
        code_hash: "conf-share-expired".into(),
        expires_at: Some(Timestamp::from_millis(1_000)),
        max_uses: None,
        ..invite.clone()
    };
    s.sharing_write(
        &[SharingOp::PutInvite(expired.clone())],
        &draft(AuditAction::InviteCreated),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.sharing_write(
            &[SharingOp::Redeem(expired.id, Timestamp::now())],
            &draft(AuditAction::InviteRedeemed)
        )
        .await,
        Err(StoreError::Conflict("invite"))
    ));

    let renamed = Library {
        name: "The Family".into(),
        pending_owner: Some(friend.id),
        ..lib.clone()
    };
    s.sharing_write(
        &[SharingOp::PutLibrary(renamed.clone())],
        &AuditDraft {
            name: Some("The Family".into()),
            ..draft(AuditAction::LibraryRenamed)
        },
    )
    .await
    .unwrap();
    assert_eq!(s.library(lib.id).await.unwrap(), Some(renamed.clone()));
    s.sharing_write(
        &[
            SharingOp::PutMember(Membership {
                library_id: lib.id,
                user_id: friend.id,
                role: Role::Editor,
            }),
            SharingOp::RemoveMember(lib.id, late.id),
        ],
        &AuditDraft {
            target_user: Some(friend.id),
            role: Some(Role::Editor),
            ..draft(AuditAction::RoleChanged)
        },
    )
    .await
    .unwrap();
    assert_eq!(s.libraries_of(friend.id).await.unwrap()[1].1, Role::Editor);

    // A book deleted with its entry, together; a stale write leaves neither.
    let b = super::books::book(lib.id, "Shared tale", "Anon");
    s.create_book(&b).await.unwrap();
    let tomb = Book {
        deleted_at: Some(Timestamp::now()),
        version: b.version + 1,
        ..b.clone()
    };
    s.sharing_write(
        &[SharingOp::UpdateBook(Box::new(tomb.clone()))],
        &AuditDraft {
            book_id: Some(b.id),
            ..draft(AuditAction::BookDeleted)
        },
    )
    .await
    .unwrap();
    assert!(s.book(b.id).await.unwrap().unwrap().deleted_at.is_some());
    let stale = Book {
        title: "Again".into(),
        ..tomb.clone()
    };
    assert!(matches!(
        s.sharing_write(
            &[SharingOp::UpdateBook(Box::new(stale))],
            &draft(AuditAction::BookDeleted),
        )
        .await,
        Err(StoreError::VersionConflict { .. })
    ));

    // Deleted: gone for every member, its invitations revoked, its log kept.
    s.sharing_write(
        &[SharingOp::DeleteLibrary(lib.id, Timestamp::now())],
        &draft(AuditAction::LibraryDeleted),
    )
    .await
    .unwrap();
    assert_eq!(s.library(lib.id).await.unwrap(), None);
    assert_eq!(s.libraries_of(friend.id).await.unwrap().len(), 1);
    assert!(s.memberships(lib.id).await.unwrap().is_empty());
    assert!(
        s.invites(lib.id)
            .await
            .unwrap()
            .iter()
            .all(|i| i.revoked_at.is_some())
    );
    let log = s.audit_entries(lib.id, 0, 100).await.unwrap();
    let actions: Vec<_> = log.iter().map(|e| e.draft.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::LibraryCreated,
            AuditAction::InviteCreated,
            AuditAction::InviteRedeemed,
            AuditAction::InviteCreated,
            AuditAction::LibraryRenamed,
            AuditAction::RoleChanged,
            AuditAction::BookDeleted,
            AuditAction::LibraryDeleted,
        ],
        "refused actions leave no entry"
    );
    assert_eq!(log[0].draft.addr.as_deref(), Some("192.0.2.1"));
    assert_eq!(log[2].draft.actor, friend.id);
    let (mut seq, mut prev) = (1, String::new());
    check_chain(&log, &mut seq, &mut prev).expect("the chain as stored verifies");
    assert_eq!(seq, 9);
    let (mut seq2, mut prev2) = (1, String::new());
    check_chain(&log[..3], &mut seq2, &mut prev2).unwrap();
    check_chain(
        &s.audit_entries(lib.id, 3, 100).await.unwrap(),
        &mut seq2,
        &mut prev2,
    )
    .expect("pages walk as one chain");
    let mut forged = log.clone();
    forged[4].draft.name = Some("Someone else's".into());
    let (mut seq3, mut prev3) = (1, String::new());
    let brk = check_chain(&forged, &mut seq3, &mut prev3).unwrap_err();
    assert_eq!(brk.seq, 5, "the edited entry is named");
    assert!(
        s.audited_libraries().await.unwrap().contains(&lib.id),
        "a deleted library's log is still listed"
    );

    // Retention: a deleted library's log goes once it was deleted long enough ago; a live
    // library's never does.
    let live = Library {
        id: LibraryId::generate(),
        name: "Live".into(),
        ..lib.clone()
    };
    s.sharing_write(
        &[SharingOp::PutLibrary(live.clone())],
        &AuditDraft::new(live.id, owner.id, AuditAction::LibraryCreated),
    )
    .await
    .unwrap();
    let long_ago = Timestamp::from_millis(Timestamp::now().millis() - 60_000);
    assert_eq!(
        s.purge_audit(long_ago).await.unwrap(),
        0,
        "deleted too recently"
    );
    assert_eq!(s.audit_entries(lib.id, 0, 100).await.unwrap().len(), 8);
    let later = Timestamp::from_millis(Timestamp::now().millis() + 1);
    assert!(s.purge_audit(later).await.unwrap() >= 8);
    assert!(s.audit_entries(lib.id, 0, 100).await.unwrap().is_empty());
    assert!(!s.audited_libraries().await.unwrap().contains(&lib.id));
    assert_eq!(
        s.audit_entries(live.id, 0, 100).await.unwrap().len(),
        1,
        "a live library's log stays"
    );
}
