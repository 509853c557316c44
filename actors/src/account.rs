//! Accounts people manage themselves (profile, password, deletion, export) and that
//! administrators manage (list, disable, enable, delete, reset a password). The rules for
//! names, emails and passwords are those of registration (`auth::accounts`).
//!
//! Cutting a session off: every access token carries the user's token epoch; a password
//! change, a reset or disabling raises it (and revokes every refresh token), deleting makes
//! the account refuse every token. This node refuses at once, other nodes when they hear of
//! it (Redis, when the nodes share one) or at their next look at the store (every 2 s).

use crate::app::Dogear;
use crate::auth::{Session, validate_email, validate_password, validate_username};
use crate::error::AppError;
use crate::library_actor::LibraryOp;
use crate::messages::{Caller, SharingAction, UserOp, UserReply};
use dogear_storage::{LibraryKind, Role, StoreError, Timestamp, User, UserId};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Write;

/// A change to one's own account: each field absent (unchanged) or given (`display_name`
/// and `email` may be cleared with `null`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfilePatch {
    pub username: Option<String>,
    pub email: Option<Option<String>>,
    pub display_name: Option<Option<String>>,
    pub visibility: Option<dogear_storage::Visibility>,
}

use crate::app::REVOCATIONS;

fn valid_display_name(name: &str) -> Result<Option<String>, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name.len() > 128 || name.chars().any(char::is_control) {
        return Err(AppError::bad(
            "display_name",
            "must be at most 128 bytes of text",
        ));
    }
    Ok(Some(name.to_string()))
}

impl Dogear {
    async fn live_user(&self, id: UserId) -> Result<User, AppError> {
        self.store
            .user(id)
            .await?
            .ok_or(AppError::NotFound(Cow::Borrowed("user")))
    }

    /// Stores a changed account; a taken name is `409 username_taken`.
    async fn save_user(&self, user: &User) -> Result<(), AppError> {
        match self.store.update_user(user).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AppError::NotFound(Cow::Borrowed("user"))),
            Err(StoreError::Conflict(_)) => Err(AppError::UsernameTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses the user's tokens of epochs before `epoch` here and on every node.
    async fn announce_cutoff(&self, user: UserId, epoch: u64) {
        self.accounts().cut_off(user, epoch);
        if let Some(r) = self.redis()
            && let Err(e) = r
                .publish(REVOCATIONS, &format!("user:{user}:{epoch}"))
                .await
        {
            metrics::counter!("dogear_redis_fallbacks_total", "what" => "revocations").increment(1);
            tracing::warn!(error = %e, "redis unavailable: other nodes cut the session off at their next look at the store");
        }
    }

    pub async fn update_profile(
        &self,
        user: UserId,
        patch: ProfilePatch,
    ) -> Result<User, AppError> {
        let mut u = self.me(user).await?;
        if let Some(name) = patch.username {
            validate_username(&name)?;
            u.username = name;
        }
        if let Some(email) = patch.email {
            u.email = match email.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(e) => {
                    validate_email(e)?;
                    Some(e.to_string())
                }
            };
        }
        if let Some(d) = patch.display_name {
            u.display_name = match d {
                None => None,
                Some(d) => valid_display_name(&d)?,
            };
        }
        self.save_user(&u).await?;
        match patch.visibility {
            Some(v) if v != u.visibility => self.set_visibility(user, v).await,
            _ => Ok(u),
        }
    }

    /// Changes the password after checking the current one (a wrong one counts as a failed
    /// login). Every session of the user ends, on every node; the caller gets a new one.
    pub async fn change_password(
        &self,
        user: UserId,
        current: &str,
        new: &str,
        addr: Option<&str>,
    ) -> Result<Session, AppError> {
        let mut u = self.me(user).await?;
        self.accounts()
            .confirm_password(&u, current, "current_password", addr)
            .await?;
        validate_password(new)
            .map_err(|_| AppError::bad("new_password", "must be 8-1024 characters"))?;
        u.password_hash = crate::auth::hash_secret(new.to_string()).await?;
        self.set_password(u).await
    }

    async fn set_password(&self, mut u: User) -> Result<Session, AppError> {
        u.token_epoch = u.token_epoch.saturating_add(1);
        self.save_user(&u).await?;
        self.store.revoke_user_sessions(u.id).await?;
        self.announce_cutoff(u.id, u.token_epoch).await;
        self.accounts().session_for(&u).await
    }

    /// Deletes the account and everything that is the user's alone (`Store::delete_user`),
    /// after checking `password` (an administrator deleting another account gives none).
    /// Shared libraries the user owns must have been transferred or deleted: `409` naming
    /// them. Libraries the user is a member of are left first, in their audit logs.
    pub async fn delete_account(
        &self,
        user: UserId,
        password: Option<&str>,
        addr: Option<&str>,
    ) -> Result<(), AppError> {
        let u = self.live_user(user).await?;
        if let Some(pw) = password {
            self.accounts()
                .confirm_password(&u, pw, "password", addr)
                .await?;
        }
        let libraries = self.store.libraries_of(user).await?;
        let owned: Vec<String> = libraries
            .iter()
            .filter(|(l, r)| l.kind == LibraryKind::Shared && *r == Role::Owner)
            .map(|(l, _)| format!("{:?}", l.name))
            .collect();
        if !owned.is_empty() {
            return Err(AppError::Conflict(Cow::Owned(format!(
                "transfer or delete the shared libraries you own first: {}",
                owned.join(", ")
            ))));
        }
        let caller = Caller {
            user,
            device: None,
            addr: addr.map(str::to_string),
        };
        for (l, _) in libraries
            .iter()
            .filter(|(l, _)| l.kind == LibraryKind::Shared)
        {
            self.placement
                .ask_library(
                    l.id,
                    LibraryOp::Sharing(caller.clone(), SharingAction::RemoveMember(user)),
                )
                .await?;
        }
        let (devices, keys) = match self.placement.ask_user(user, UserOp::Erase).await? {
            UserReply::Erased { devices, keys } => (devices, keys),
            other => {
                return Err(AppError::Unavailable(format!(
                    "unexpected answer {other:?}"
                )));
            }
        };
        self.announce_cutoff(user, u64::MAX).await;
        for d in devices {
            self.forget_device_everywhere(d).await;
        }
        let objects = self.importer.objects().clone();
        for key in keys {
            if let Err(e) = objects.delete(&key).await {
                tracing::warn!(error = %e, %key, "a deleted account's file was not removed");
            }
        }
        tracing::info!(%user, "account deleted");
        Ok(())
    }

    /// Everything stored about the user, as a zip of JSON files (one per kind of record).
    pub async fn export_account(&self, user: UserId) -> Result<Vec<u8>, AppError> {
        use serde_json::{Value, json};
        let u = self.me(user).await?;
        let s = &self.store;
        let mut files: Vec<(&str, Value)> = Vec::new();
        files.push((
            "account.json",
            json!({
                "id": u.id, "username": u.username, "email": u.email,
                "display_name": u.display_name, "is_admin": u.is_admin,
                "visibility": u.visibility, "created_at": u.created_at,
            }),
        ));
        files.push(("devices.json", json!(s.devices(user).await?)));
        let libraries = s.libraries_of(user).await?;
        files.push((
            "libraries.json",
            json!(
                libraries
                    .iter()
                    .map(|(l, r)| json!({"library": l, "role": r}))
                    .collect::<Vec<_>>()
            ),
        ));
        // The books of libraries the user owns (what another member added to a shared one
        // is theirs, and is exported by them).
        let mut books = Vec::new();
        for (l, _) in libraries.iter().filter(|(l, _)| l.owner_id == user) {
            let mut after = None;
            loop {
                let page = s
                    .list_books(&dogear_storage::BookQuery {
                        libraries: vec![l.id],
                        after: after.clone(),
                        limit: 500,
                        ..Default::default()
                    })
                    .await?;
                after = page.last().map(|b| dogear_storage::BookAfter {
                    key: String::new(),
                    id: b.id,
                });
                let done = page.len() < 500;
                books.extend(page);
                if done {
                    break;
                }
            }
        }
        files.push(("books.json", json!(books)));
        let mut states = Vec::new();
        let mut after = None;
        loop {
            let page = s.progress_states(user, after, 500).await?;
            after = page.last().map(|p| p.book_id);
            let done = page.len() < 500;
            states.extend(page);
            if done {
                break;
            }
        }
        files.push(("progress.json", json!(states)));
        let mut events = Vec::new();
        let mut seq = 0;
        loop {
            let page = s.progress_changes(user, seq, 1000).await?;
            seq = page.last().map_or(seq, |(n, _)| *n);
            let done = page.len() < 1000;
            events.extend(
                page.into_iter()
                    .map(|(n, st)| json!({"seq": n, "state": st})),
            );
            if done {
                break;
            }
        }
        files.push(("progress_history.json", json!(events)));
        files.push(("shelves.json", json!(s.shelves(user).await?)));
        let mut mine = Vec::new();
        let mut after = None;
        loop {
            let page = s.user_books(user, after, 500).await?;
            after = page.last().map(|r| r.book_id);
            let done = page.len() < 500;
            mine.extend(page);
            if done {
                break;
            }
        }
        files.push(("my_books.json", json!(mine)));
        for (name, kind) in [
            ("notes.json", dogear_storage::DocKind::Note),
            ("todos.json", dogear_storage::DocKind::Todo),
            ("annotations.json", dogear_storage::DocKind::Annotation),
        ] {
            let mut docs = Vec::new();
            let mut after = 0;
            loop {
                let page = s
                    .docs(&dogear_storage::DocQuery {
                        user,
                        kind,
                        book: None,
                        after,
                        deleted: false,
                        limit: 1000,
                    })
                    .await?;
                after = page.last().map_or(after, |d| d.change_seq);
                let done = page.len() < 1000;
                for d in page {
                    let mut v: serde_json::Map<String, Value> =
                        serde_json::from_str(&d.body).unwrap_or_default();
                    v.insert("id".into(), json!(d.id));
                    v.insert("book_id".into(), json!(d.book_id));
                    v.insert("created_at".into(), json!(d.created_at));
                    v.insert("updated_at".into(), json!(d.updated_at));
                    docs.push(Value::Object(v));
                }
                if done {
                    break;
                }
            }
            files.push((name, json!(docs)));
        }
        let people = |list: Vec<dogear_storage::Related>, incoming: bool| -> Value {
            json!(
                list.iter()
                    .map(|r| json!({
                        "id": if incoming { r.relation.from } else { r.relation.to },
                        "username": r.username,
                        "since": r.relation.created_at,
                    }))
                    .collect::<Vec<_>>()
            )
        };
        use dogear_storage::RelationKind;
        files.push((
            "following.json",
            people(
                s.relations_of(user, RelationKind::Follow, false).await?,
                false,
            ),
        ));
        files.push((
            "followers.json",
            people(
                s.relations_of(user, RelationKind::Follow, true).await?,
                true,
            ),
        ));
        files.push((
            "blocks.json",
            people(
                s.relations_of(user, RelationKind::Block, false).await?,
                false,
            ),
        ));
        let kobo: Vec<Value> = s
            .kobo_tokens(user)
            .await?
            .iter()
            .map(|t| json!({"device_id": t.device_id, "created_at": t.created_at}))
            .collect();
        files.push(("kobo_devices.json", json!(kobo)));
        let koreader: Vec<Value> = s
            .koreader_logins(user)
            .await?
            .iter()
            .map(|l| json!({"device_id": l.device_id, "username": l.username, "created_at": l.created_at}))
            .collect();
        files.push(("koreader_logins.json", json!(koreader)));
        let opds: Vec<Value> = s
            .opds_tokens(user)
            .await?
            .iter()
            .map(|t| json!({"device_id": t.device_id, "created_at": t.created_at}))
            .collect();
        files.push(("opds_tokens.json", json!(opds)));
        let readme = format!(
            "Everything Dogear stores about {} ({}), exported {}.\n\
             Each .json file holds one kind of record; secrets (password, tokens) are never\n\
             exported, only that they exist. Book files are downloadable from the server.\n",
            u.username,
            u.id,
            Timestamp::now()
        );
        tokio::task::spawn_blocking(move || {
            let mut zw = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            let err = |e: &dyn std::fmt::Display| AppError::Unavailable(format!("export: {e}"));
            zw.start_file("README.txt", opts).map_err(|e| err(&e))?;
            zw.write_all(readme.as_bytes()).map_err(|e| err(&e))?;
            for (name, v) in files {
                zw.start_file(name, opts).map_err(|e| err(&e))?;
                let bytes = serde_json::to_vec_pretty(&v).map_err(|e| err(&e))?;
                zw.write_all(&bytes).map_err(|e| err(&e))?;
            }
            Ok(zw.finish().map_err(|e| err(&e))?.into_inner())
        })
        .await
        .map_err(|e| AppError::Unavailable(format!("export: {e}")))?
    }

    // Administrators.

    async fn check_admin(&self, caller: UserId) -> Result<(), AppError> {
        if self.me(caller).await?.is_admin {
            Ok(())
        } else {
            Err(AppError::Forbidden(Cow::Borrowed(
                "managing accounts is for administrators",
            )))
        }
    }

    /// Every account (administrators only; `caller` `None`: the `dogear user` command).
    pub async fn admin_users(&self, caller: Option<UserId>) -> Result<Vec<User>, AppError> {
        if let Some(c) = caller {
            self.check_admin(c).await?;
        }
        Ok(self.store.users().await?)
    }

    /// Disables (or enables again) an account: a disabled one cannot sign in by any means,
    /// and every token it holds is refused at once.
    pub async fn admin_set_disabled(
        &self,
        caller: Option<UserId>,
        target: UserId,
        disabled: bool,
    ) -> Result<User, AppError> {
        if let Some(c) = caller {
            self.check_admin(c).await?;
            if c == target && disabled {
                return Err(AppError::Conflict(Cow::Borrowed(
                    "administrators cannot disable their own account",
                )));
            }
        }
        let mut u = self.live_user(target).await?;
        if u.disabled_at.is_some() == disabled {
            return Ok(u);
        }
        u.disabled_at = disabled.then(Timestamp::now);
        // Tokens from before stay refused after the account is enabled again.
        u.token_epoch = u.token_epoch.saturating_add(1);
        self.save_user(&u).await?;
        if disabled {
            self.store.revoke_user_sessions(target).await?;
            self.announce_cutoff(target, u64::MAX).await;
            for d in self.store.devices(target).await? {
                self.forget_device_everywhere(d.id).await;
            }
        } else {
            // Replaces the `MAX` of the disabled account (not raised: lowered).
            self.accounts().uncut(target, u.token_epoch);
            self.announce_cutoff(target, u.token_epoch).await;
        }
        Ok(u)
    }

    /// Sets a new password for an account (its sessions end).
    pub async fn admin_reset_password(
        &self,
        caller: Option<UserId>,
        target: UserId,
        new: &str,
    ) -> Result<(), AppError> {
        if let Some(c) = caller {
            self.check_admin(c).await?;
        }
        validate_password(new)
            .map_err(|_| AppError::bad("new_password", "must be 8-1024 characters"))?;
        let mut u = self.live_user(target).await?;
        u.password_hash = crate::auth::hash_secret(new.to_string()).await?;
        self.set_password(u).await.map(|_| ())
    }

    pub async fn admin_delete(
        &self,
        caller: Option<UserId>,
        target: UserId,
    ) -> Result<(), AppError> {
        if let Some(c) = caller {
            self.check_admin(c).await?;
        }
        self.delete_account(target, None, None).await
    }
}
