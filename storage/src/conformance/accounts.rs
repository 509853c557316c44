//! Users, refresh tokens (rotation, reuse, family revocation) and devices.

use super::*;

pub(super) fn token(user: UserId, family: FamilyId, hash: &str, ttl_secs: i64) -> RefreshToken {
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
