//! The library actor's side of sharing: every rule about who may do what to a library, its
//! members and its invitations, applied one action at a time in the actor's mailbox (two
//! people redeeming the last use of a code are ordered here, and the store refuses a use
//! beyond the count even so). Each action is written with its audit entry in one
//! transaction, then announced to the members' sockets.

use crate::error::AppError;
use crate::library_actor::LibraryState;
use crate::messages::{Caller, LibraryNotice, LibraryReply, NoticeKind, SharingAction};
use crate::user_actor::UserOp;
use dogear_storage::{
    AuditAction, AuditDraft, AuditEntry, Book, BookQuery, BookSort, Invite, InviteId, Library,
    LibraryKind, Membership, Role, SharingOp, Timestamp, UserId,
};
use std::borrow::Cow;

/// Longest library name, in bytes.
const MAX_NAME: usize = 200;
/// Most audit entries a page holds.
pub const MAX_AUDIT_PAGE: usize = 500;

fn valid_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(AppError::bad("name", "must be 1-200 bytes of text"));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::bad("name", "must not contain control characters"));
    }
    Ok(name.to_string())
}

fn not_found() -> AppError {
    AppError::NotFound(Cow::Borrowed("library"))
}

fn owner_only(what: &'static str) -> AppError {
    AppError::Forbidden(Cow::Owned(format!(
        "{what} needs the owner role in this library"
    )))
}

impl LibraryState {
    /// The draft of an audit entry for `caller` doing `action` here.
    fn draft(&self, caller: &Caller, action: AuditAction) -> AuditDraft {
        AuditDraft {
            device_id: caller.device,
            addr: caller.addr.clone(),
            ..AuditDraft::new(self.library, caller.user, action)
        }
    }

    /// The library and the caller's role in it; 404 for anyone else, as if it did not exist.
    fn member(&self, user: UserId) -> Result<(&Library, Role), AppError> {
        match (&self.lib, self.members.get(&user)) {
            (Some(l), Some(r)) => Ok((l, *r)),
            _ => Err(not_found()),
        }
    }

    fn owner(&self, user: UserId, what: &'static str) -> Result<&Library, AppError> {
        match self.member(user)? {
            (l, Role::Owner) => Ok(l),
            _ => Err(owner_only(what)),
        }
    }

    fn shared(&self, user: UserId, what: &'static str) -> Result<Library, AppError> {
        let lib = self.owner(user, what)?.clone();
        if lib.kind == LibraryKind::Personal {
            return Err(AppError::Conflict(Cow::Borrowed(
                "the personal library cannot be shared, transferred or deleted; make a shared library",
            )));
        }
        Ok(lib)
    }

    /// Tells every member (and `extra`, someone who just left) what happened.
    pub(crate) fn announce(&self, notice: LibraryNotice, extra: Option<UserId>) {
        for user in self.members.keys().copied().chain(extra) {
            self.placement
                .tell_user(user, UserOp::Notice(notice.clone()));
        }
    }

    async fn write(&self, ops: &[SharingOp], draft: AuditDraft) -> Result<AuditEntry, AppError> {
        Ok(self.placement.store().sharing_write(ops, &draft).await?)
    }

    pub(crate) async fn sharing(
        &mut self,
        caller: Caller,
        action: SharingAction,
    ) -> Result<LibraryReply, AppError> {
        let me = caller.user;
        let now = Timestamp::now();
        match action {
            SharingAction::Create { name } => {
                if self.lib.is_some() {
                    return Err(AppError::Conflict(Cow::Borrowed("the library exists")));
                }
                let name = valid_name(&name)?;
                let lib = Library {
                    id: self.library,
                    name: name.clone(),
                    kind: LibraryKind::Shared,
                    owner_id: me,
                    created_at: now,
                    pending_owner: None,
                };
                let ops = [
                    SharingOp::PutLibrary(lib.clone()),
                    SharingOp::PutMember(Membership {
                        library_id: lib.id,
                        user_id: me,
                        role: Role::Owner,
                    }),
                ];
                let draft = AuditDraft {
                    name: Some(name),
                    ..self.draft(&caller, AuditAction::LibraryCreated)
                };
                self.write(&ops, draft).await?;
                self.lib = Some(lib.clone());
                self.members.insert(me, Role::Owner);
                Ok(LibraryReply::Library(Box::new(lib), Role::Owner))
            }
            SharingAction::Get => {
                let (lib, role) = self.member(me)?;
                Ok(LibraryReply::Library(Box::new(lib.clone()), role))
            }
            SharingAction::Rename(name) => {
                let mut lib = self.owner(me, "renaming the library")?.clone();
                let name = valid_name(&name)?;
                if name == lib.name {
                    return Ok(LibraryReply::Library(Box::new(lib), Role::Owner));
                }
                lib.name = name.clone();
                let draft = AuditDraft {
                    name: Some(name.clone()),
                    ..self.draft(&caller, AuditAction::LibraryRenamed)
                };
                self.write(&[SharingOp::PutLibrary(lib.clone())], draft)
                    .await?;
                self.lib = Some(lib.clone());
                self.announce(
                    LibraryNotice {
                        name: Some(name),
                        ..LibraryNotice::new(NoticeKind::LibraryChanged, self.library)
                    },
                    None,
                );
                Ok(LibraryReply::Library(Box::new(lib), Role::Owner))
            }
            SharingAction::Delete => {
                self.shared(me, "deleting the library")?;
                self.tombstone_all().await?;
                let draft = self.draft(&caller, AuditAction::LibraryDeleted);
                self.write(&[SharingOp::DeleteLibrary(self.library, now)], draft)
                    .await?;
                self.announce(
                    LibraryNotice::new(NoticeKind::LibraryDeleted, self.library),
                    None,
                );
                self.members.clear();
                self.lib = None;
                Ok(LibraryReply::Done)
            }
            SharingAction::Members => {
                self.member(me)?;
                let mut members: Vec<Membership> = self
                    .members
                    .iter()
                    .map(|(u, r)| Membership {
                        library_id: self.library,
                        user_id: *u,
                        role: *r,
                    })
                    .collect();
                members.sort_by_key(|m| (m.role != Role::Owner, m.user_id));
                Ok(LibraryReply::Members(members))
            }
            SharingAction::SetRole(user, role) => {
                self.shared(me, "changing roles")?;
                let current = *self
                    .members
                    .get(&user)
                    .ok_or(AppError::NotFound(Cow::Borrowed("member")))?;
                if role == Role::Owner {
                    return Err(AppError::bad(
                        "role",
                        "must be editor or reader; offer the library to make someone its owner",
                    ));
                }
                if current == Role::Owner {
                    return Err(AppError::Conflict(Cow::Borrowed(
                        "the owner's role changes only by transferring the library",
                    )));
                }
                if current != role {
                    let m = Membership {
                        library_id: self.library,
                        user_id: user,
                        role,
                    };
                    let draft = AuditDraft {
                        target_user: Some(user),
                        role: Some(role),
                        ..self.draft(&caller, AuditAction::RoleChanged)
                    };
                    self.write(&[SharingOp::PutMember(m)], draft).await?;
                    self.members.insert(user, role);
                    self.announce(
                        LibraryNotice {
                            user_id: Some(user),
                            role: Some(role),
                            ..LibraryNotice::new(NoticeKind::RoleChanged, self.library)
                        },
                        None,
                    );
                }
                Ok(LibraryReply::Role(Some(role)))
            }
            SharingAction::RemoveMember(user) => {
                let leaving = user == me;
                let lib = if leaving {
                    let (lib, role) = self.member(me)?;
                    if role == Role::Owner {
                        return Err(AppError::Conflict(Cow::Borrowed(
                            "the owner cannot leave; transfer the library or delete it",
                        )));
                    }
                    lib.clone()
                } else {
                    let lib = self.shared(me, "removing members")?;
                    if !self.members.contains_key(&user) {
                        return Err(AppError::NotFound(Cow::Borrowed("member")));
                    }
                    if user == lib.owner_id {
                        return Err(AppError::Conflict(Cow::Borrowed(
                            "the owner cannot be removed",
                        )));
                    }
                    lib
                };
                let mut ops = vec![SharingOp::RemoveMember(self.library, user)];
                let mut next = lib.clone();
                if lib.pending_owner == Some(user) {
                    next.pending_owner = None;
                    ops.push(SharingOp::PutLibrary(next.clone()));
                }
                let (action, kind) = if leaving {
                    (AuditAction::MemberLeft, NoticeKind::MemberLeft)
                } else {
                    (AuditAction::MemberRemoved, NoticeKind::MemberRemoved)
                };
                let draft = AuditDraft {
                    target_user: Some(user),
                    ..self.draft(&caller, action)
                };
                self.write(&ops, draft).await?;
                self.members.remove(&user);
                self.lib = Some(next);
                self.announce(
                    LibraryNotice {
                        user_id: Some(user),
                        ..LibraryNotice::new(kind, self.library)
                    },
                    Some(user),
                );
                Ok(LibraryReply::Done)
            }
            SharingAction::CreateInvite {
                role,
                expires_at,
                max_uses,
                code_hash,
            } => {
                self.shared(me, "inviting")?;
                if role == Role::Owner {
                    return Err(AppError::bad("role", "must be editor or reader"));
                }
                if expires_at.is_some_and(|e| e <= now) {
                    return Err(AppError::bad("expires_at", "must be in the future"));
                }
                if max_uses == Some(0) {
                    return Err(AppError::bad("max_uses", "must be at least 1"));
                }
                let invite = Invite {
                    id: InviteId::generate(),
                    library_id: self.library,
                    code_hash,
                    role,
                    created_by: me,
                    created_at: now,
                    expires_at,
                    max_uses,
                    uses: 0,
                    revoked_at: None,
                };
                let draft = AuditDraft {
                    invite_id: Some(invite.id),
                    role: Some(role),
                    ..self.draft(&caller, AuditAction::InviteCreated)
                };
                self.write(&[SharingOp::PutInvite(invite.clone())], draft)
                    .await?;
                Ok(LibraryReply::Invite(Box::new(invite)))
            }
            SharingAction::Invites => {
                self.owner(me, "listing invites")?;
                Ok(LibraryReply::Invites(
                    self.placement.store().invites(self.library).await?,
                ))
            }
            SharingAction::RevokeInvite(id) => {
                self.owner(me, "revoking invites")?;
                let invite = match self.placement.store().invite(id).await? {
                    Some(i) if i.library_id == self.library => i,
                    _ => return Err(AppError::NotFound(Cow::Borrowed("invite"))),
                };
                if invite.revoked_at.is_some() {
                    return Ok(LibraryReply::Invite(Box::new(invite)));
                }
                let revoked = Invite {
                    revoked_at: Some(now),
                    ..invite
                };
                let draft = AuditDraft {
                    invite_id: Some(id),
                    ..self.draft(&caller, AuditAction::InviteRevoked)
                };
                self.write(&[SharingOp::PutInvite(revoked.clone())], draft)
                    .await?;
                Ok(LibraryReply::Invite(Box::new(revoked)))
            }
            SharingAction::Redeem(id) => {
                let Some(lib) = self.lib.clone() else {
                    return Err(AppError::InvalidInvite);
                };
                if let Some(role) = self.members.get(&me) {
                    // Already in: nothing is used up.
                    return Ok(LibraryReply::Library(Box::new(lib), *role));
                }
                let invite = match self.placement.store().invite(id).await? {
                    Some(i) if i.library_id == self.library && i.usable(now) => i,
                    _ => return Err(AppError::InvalidInvite),
                };
                let ops = [
                    SharingOp::Redeem(id, now),
                    SharingOp::PutMember(Membership {
                        library_id: self.library,
                        user_id: me,
                        role: invite.role,
                    }),
                ];
                let draft = AuditDraft {
                    target_user: Some(me),
                    invite_id: Some(id),
                    role: Some(invite.role),
                    ..self.draft(&caller, AuditAction::InviteRedeemed)
                };
                match self.write(&ops, draft).await {
                    Ok(_) => {}
                    Err(AppError::Conflict(_)) => return Err(AppError::InvalidInvite),
                    Err(e) => return Err(e),
                }
                self.members.insert(me, invite.role);
                self.announce(
                    LibraryNotice {
                        user_id: Some(me),
                        role: Some(invite.role),
                        ..LibraryNotice::new(NoticeKind::MemberJoined, self.library)
                    },
                    None,
                );
                Ok(LibraryReply::Library(Box::new(lib), invite.role))
            }
            SharingAction::OfferOwnership(to) => {
                let mut lib = self.shared(me, "transferring the library")?;
                if let Some(u) = to {
                    if !self.members.contains_key(&u) {
                        return Err(AppError::NotFound(Cow::Borrowed("member")));
                    }
                    if u == me {
                        return Err(AppError::bad("user_id", "is already the owner"));
                    }
                }
                lib.pending_owner = to;
                let draft = AuditDraft {
                    target_user: to,
                    ..self.draft(&caller, AuditAction::OwnershipOffered)
                };
                self.write(&[SharingOp::PutLibrary(lib.clone())], draft)
                    .await?;
                self.lib = Some(lib.clone());
                self.announce(
                    LibraryNotice {
                        user_id: to,
                        ..LibraryNotice::new(NoticeKind::LibraryChanged, self.library)
                    },
                    None,
                );
                Ok(LibraryReply::Library(Box::new(lib), Role::Owner))
            }
            SharingAction::AcceptOwnership => {
                let (lib, _) = self.member(me)?;
                if lib.pending_owner != Some(me) {
                    return Err(AppError::Conflict(Cow::Borrowed(
                        "the library was not offered to you",
                    )));
                }
                let old = lib.owner_id;
                let next = Library {
                    owner_id: me,
                    pending_owner: None,
                    ..lib.clone()
                };
                let ops = [
                    SharingOp::PutLibrary(next.clone()),
                    SharingOp::PutMember(Membership {
                        library_id: self.library,
                        user_id: me,
                        role: Role::Owner,
                    }),
                    SharingOp::PutMember(Membership {
                        library_id: self.library,
                        user_id: old,
                        role: Role::Editor,
                    }),
                ];
                let draft = AuditDraft {
                    target_user: Some(old),
                    ..self.draft(&caller, AuditAction::OwnershipTransferred)
                };
                self.write(&ops, draft).await?;
                self.members.insert(me, Role::Owner);
                self.members.insert(old, Role::Editor);
                self.lib = Some(next.clone());
                for (user, role) in [(me, Role::Owner), (old, Role::Editor)] {
                    self.announce(
                        LibraryNotice {
                            user_id: Some(user),
                            role: Some(role),
                            ..LibraryNotice::new(NoticeKind::RoleChanged, self.library)
                        },
                        None,
                    );
                }
                Ok(LibraryReply::Library(Box::new(next), Role::Owner))
            }
            SharingAction::Audit { after, limit } => {
                self.owner(me, "reading the audit log")?;
                let limit = limit.clamp(1, MAX_AUDIT_PAGE);
                Ok(LibraryReply::Audit(
                    self.placement
                        .store()
                        .audit_entries(self.library, after, limit)
                        .await?,
                ))
            }
        }
    }

    /// Tombstones every live book of the library (before it is deleted), a page at a time,
    /// each page's writes sharing the store's commits. Members hear once per page (and the
    /// deletion itself makes their actors forget what they could read).
    async fn tombstone_all(&mut self) -> Result<(), AppError> {
        let store = self.placement.store().clone();
        loop {
            let q = BookQuery {
                libraries: vec![self.library],
                sort: BookSort::Id,
                limit: 500,
                ..Default::default()
            };
            let page: Vec<Book> = store.list_books(&q).await?;
            if page.is_empty() {
                return Ok(());
            }
            let now = Timestamp::now();
            let tombs: Vec<Book> = page
                .into_iter()
                .map(|b| Book {
                    deleted_at: Some(now),
                    updated_at: now,
                    version: b.version + 1,
                    ..b
                })
                .collect();
            let written =
                futures_util::future::join_all(tombs.iter().map(|t| store.update_book(t))).await;
            for r in written {
                match r {
                    // Written meanwhile: the next page has it again.
                    Ok(()) | Err(dogear_storage::StoreError::VersionConflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.announce(
                LibraryNotice::new(NoticeKind::BooksChanged, self.library),
                None,
            );
        }
    }

    /// Whether this is a shared library (its deletions of books are audited).
    pub(crate) fn is_shared(&self) -> bool {
        self.lib
            .as_ref()
            .is_some_and(|l| l.kind == LibraryKind::Shared)
    }

    /// A person deletes a book of a shared library: the tombstone and its audit entry in one
    /// transaction.
    pub(crate) async fn delete_audited(
        &mut self,
        user: UserId,
        current: Book,
    ) -> Result<(), AppError> {
        let id = current.id;
        let tomb = crate::library_actor::tombstone_of(current);
        let draft = AuditDraft {
            book_id: Some(id),
            ..AuditDraft::new(self.library, user, AuditAction::BookDeleted)
        };
        self.write(&[SharingOp::UpdateBook(Box::new(tomb))], draft)
            .await?;
        self.book_removed(id);
        Ok(())
    }
}
