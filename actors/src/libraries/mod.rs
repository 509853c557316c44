//! Shared libraries: making, renaming and deleting them, members and roles, invitations,
//! ownership transfer and the audit log. Each use case asks the library's actor
//! ([`owner`]), which applies the rules one action at a time; invite codes ([`code`]) are
//! made and checked here, on the node that took the request, so a code never travels.

pub mod code;
mod owner;

pub use owner::MAX_AUDIT_PAGE;

use crate::app::Dogear;
use crate::error::AppError;
use crate::messages::{Caller, LibraryOp, LibraryReply, SharingAction};
use crate::placement::reply;
use dogear_storage::{
    AuditEntry, Invite, InviteId, Library, LibraryId, Membership, Role, Timestamp, User, UserId,
};

/// A member as listed: who, with what role.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub user_id: UserId,
    pub username: String,
    pub role: Role,
}

/// What `POST /v1/libraries/{id}/invites` asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct NewInvite {
    pub role: Role,
    pub expires_at: Option<Timestamp>,
    pub max_uses: Option<u32>,
}

impl Dogear {
    async fn sharing(
        &self,
        library: LibraryId,
        caller: &Caller,
        action: SharingAction,
    ) -> Result<LibraryReply, AppError> {
        // An id that names no library starts no actor (a client guessing ids would otherwise
        // leave one per guess until they idle out).
        if !matches!(action, SharingAction::Create { .. })
            && self.store.library(library).await?.is_none()
        {
            return Err(AppError::NotFound(std::borrow::Cow::Borrowed("library")));
        }
        self.placement
            .ask_library(library, LibraryOp::Sharing(caller.clone(), action))
            .await
    }

    async fn library_reply(
        &self,
        library: LibraryId,
        caller: &Caller,
        action: SharingAction,
    ) -> Result<(Library, Role), AppError> {
        match self.sharing(library, caller, action).await? {
            LibraryReply::Library(l, r) => Ok((*l, r)),
            other => Err(unexpected(other)),
        }
    }

    /// A new shared library owned by the caller.
    pub async fn create_library(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(Library, Role), AppError> {
        let id = LibraryId::generate();
        let action = SharingAction::Create {
            name: name.to_string(),
        };
        self.library_reply(id, caller, action).await
    }

    /// One library the caller belongs to, with their role; 404 otherwise.
    pub async fn library(
        &self,
        caller: &Caller,
        id: LibraryId,
    ) -> Result<(Library, Role), AppError> {
        self.library_reply(id, caller, SharingAction::Get).await
    }

    pub async fn rename_library(
        &self,
        caller: &Caller,
        id: LibraryId,
        name: &str,
    ) -> Result<(Library, Role), AppError> {
        self.library_reply(id, caller, SharingAction::Rename(name.to_string()))
            .await
    }

    /// Deletes a shared library (owner): its books are tombstoned, its members lose it and
    /// their devices are told; its audit log stays.
    pub async fn delete_library(&self, caller: &Caller, id: LibraryId) -> Result<(), AppError> {
        self.sharing(id, caller, SharingAction::Delete).await?;
        Ok(())
    }

    /// The members with their names, the owner first.
    pub async fn members(&self, caller: &Caller, id: LibraryId) -> Result<Vec<Member>, AppError> {
        let list: Vec<Membership> = reply!(
            self.sharing(id, caller, SharingAction::Members).await,
            LibraryReply::Members
        )?;
        let mut out = Vec::with_capacity(list.len());
        for m in list {
            let username = self
                .store
                .user(m.user_id)
                .await?
                .map(|u: User| u.username)
                .unwrap_or_default();
            out.push(Member {
                user_id: m.user_id,
                username,
                role: m.role,
            });
        }
        Ok(out)
    }

    pub async fn set_member_role(
        &self,
        caller: &Caller,
        id: LibraryId,
        user: UserId,
        role: Role,
    ) -> Result<Role, AppError> {
        match self
            .sharing(id, caller, SharingAction::SetRole(user, role))
            .await?
        {
            LibraryReply::Role(Some(r)) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a member (owner), or leaves (the caller's own id).
    pub async fn remove_member(
        &self,
        caller: &Caller,
        id: LibraryId,
        user: UserId,
    ) -> Result<(), AppError> {
        self.sharing(id, caller, SharingAction::RemoveMember(user))
            .await?;
        Ok(())
    }

    /// A new invitation and its code, shown once.
    pub async fn create_invite(
        &self,
        caller: &Caller,
        id: LibraryId,
        new: NewInvite,
    ) -> Result<(Invite, String), AppError> {
        let shown = code::generate()?;
        let normalized = code::normalize(&shown).ok_or_else(|| {
            AppError::Unavailable("a generated invite code did not read back".into())
        })?;
        let action = SharingAction::CreateInvite {
            role: new.role,
            expires_at: new.expires_at,
            max_uses: new.max_uses,
            code_hash: code::hash(&normalized),
        };
        let invite = reply!(self.sharing(id, caller, action).await, LibraryReply::Invite)?;
        Ok((*invite, shown))
    }

    pub async fn invites(&self, caller: &Caller, id: LibraryId) -> Result<Vec<Invite>, AppError> {
        reply!(
            self.sharing(id, caller, SharingAction::Invites).await,
            LibraryReply::Invites
        )
    }

    pub async fn revoke_invite(
        &self,
        caller: &Caller,
        id: LibraryId,
        invite: InviteId,
    ) -> Result<Invite, AppError> {
        reply!(
            self.sharing(id, caller, SharingAction::RevokeInvite(invite))
                .await,
            LibraryReply::Invite
        )
        .map(|i| *i)
    }

    /// Joins the library an invite code is for, with its role. A code that cannot be used
    /// (unknown, expired, used up, revoked) gets one answer whichever it is, and counts
    /// against the caller's and their address's budget of wrong codes (`429` over it).
    pub async fn join(&self, caller: &Caller, typed: &str) -> Result<(Library, Role), AppError> {
        let accounts = self.accounts();
        accounts
            .check_invite_guesser(caller.user, caller.addr.as_deref())
            .await?;
        let found = match code::normalize(typed) {
            Some(n) => self.store.invite_by_code(&code::hash(&n)).await?,
            None => None,
        };
        let result = match found {
            Some(invite) if invite.usable(Timestamp::now()) => {
                self.library_reply(invite.library_id, caller, SharingAction::Redeem(invite.id))
                    .await
                    // The library deleted meanwhile: the code is as unusable as any other.
                    .map_err(|e| match e {
                        AppError::NotFound(_) => AppError::InvalidInvite,
                        e => e,
                    })
            }
            _ => Err(AppError::InvalidInvite),
        };
        if matches!(result, Err(AppError::InvalidInvite)) {
            accounts
                .invite_failed(caller.user, caller.addr.as_deref())
                .await;
        }
        result
    }

    /// Offers the library to a member (`None` withdraws the offer).
    pub async fn offer_library(
        &self,
        caller: &Caller,
        id: LibraryId,
        to: Option<UserId>,
    ) -> Result<(Library, Role), AppError> {
        self.library_reply(id, caller, SharingAction::OfferOwnership(to))
            .await
    }

    pub async fn accept_library(
        &self,
        caller: &Caller,
        id: LibraryId,
    ) -> Result<(Library, Role), AppError> {
        self.library_reply(id, caller, SharingAction::AcceptOwnership)
            .await
    }

    /// The audit log after entry `after` (owner).
    pub async fn audit(
        &self,
        caller: &Caller,
        id: LibraryId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, AppError> {
        reply!(
            self.sharing(id, caller, SharingAction::Audit { after, limit })
                .await,
            LibraryReply::Audit
        )
    }
}

/// One page of a library's changes feed: its books changed after a change number, and the
/// membership events of its audit log after an entry number.
#[derive(Clone, Debug, PartialEq)]
pub struct LibraryChanges {
    /// Books written after the cursor (tombstones included), with their change numbers.
    pub books: Vec<(u64, dogear_storage::Book)>,
    /// Audit entries after the cursor that members may see (who joined, left, was removed
    /// or changed role; renames and ownership), with no device or address.
    pub events: Vec<AuditEntry>,
    /// Where the next page starts: the last book change and the last audit entry read.
    pub next: (u64, u64),
    /// Either part filled its page: there may be more.
    pub more: bool,
}

/// Audit actions every member may see in the changes feed.
fn visible_to_members(a: dogear_storage::AuditAction) -> bool {
    use dogear_storage::AuditAction as A;
    matches!(
        a,
        A::LibraryCreated
            | A::LibraryRenamed
            | A::InviteRedeemed
            | A::RoleChanged
            | A::MemberRemoved
            | A::MemberLeft
            | A::OwnershipOffered
            | A::OwnershipTransferred
    )
}

impl Dogear {
    /// A page of the library's changes for a member, after `(books, audit)` (both 0: from
    /// the start), at most `limit` of each.
    pub async fn library_changes(
        &self,
        caller: &Caller,
        id: LibraryId,
        after: (u64, u64),
        limit: usize,
    ) -> Result<LibraryChanges, AppError> {
        self.library(caller, id).await?;
        let books = self.store.books_changed(id, after.0, limit).await?;
        let entries = self.store.audit_entries(id, after.1, limit).await?;
        let more = books.len() == limit || entries.len() == limit;
        let next = (
            books.last().map_or(after.0, |(n, _)| *n),
            entries.last().map_or(after.1, |e| e.seq),
        );
        let events = entries
            .into_iter()
            .filter(|e| visible_to_members(e.draft.action))
            .map(|mut e| {
                e.draft.device_id = None;
                e.draft.addr = None;
                e
            })
            .collect();
        Ok(LibraryChanges {
            books,
            events,
            next,
            more,
        })
    }

    /// Removes the audit logs of libraries deleted more than `retention` ago; how many
    /// entries went.
    pub async fn purge_audit(&self, retention: std::time::Duration) -> Result<u64, AppError> {
        let ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
        let before = Timestamp::from_millis(Timestamp::now().millis().saturating_sub(ms));
        Ok(self.store.purge_audit(before).await?)
    }
}

fn unexpected(r: LibraryReply) -> AppError {
    AppError::Unavailable(format!("unexpected library reply {r:?}"))
}
