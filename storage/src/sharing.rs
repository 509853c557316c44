//! What sharing a library stores: invitations (their codes only hashed) and the library's
//! audit log, a hash chain that a change made directly in the database breaks.
//!
//! Every sharing action is one [`SharingOp`] list written with its [`AuditDraft`] in one
//! transaction ([`crate::Store::sharing_write`]), so an action is never stored without its
//! entry, nor an entry without its action.

use crate::ids::{BookId, DeviceId, InviteId, LibraryId, UserId};
use crate::records::{Library, Membership, Role};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// An invitation: redeemed by its code (of which only the SHA-256 is kept) for `role`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Invite {
    pub id: InviteId,
    pub library_id: LibraryId,
    pub code_hash: String,
    pub role: Role,
    pub created_by: UserId,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// `None`: any number of times.
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub revoked_at: Option<Timestamp>,
}

impl Invite {
    /// Whether the code can still be redeemed at `now`.
    pub fn usable(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none()
            && self.expires_at.is_none_or(|e| e > now)
            && self.max_uses.is_none_or(|m| self.uses < m)
    }
}

crate::records::wire_enum!(
    /// What a sharing action did.
    AuditAction {
        LibraryCreated = "library_created",
        LibraryRenamed = "library_renamed",
        LibraryDeleted = "library_deleted",
        InviteCreated = "invite_created",
        InviteRedeemed = "invite_redeemed",
        InviteRevoked = "invite_revoked",
        RoleChanged = "role_changed",
        MemberRemoved = "member_removed",
        MemberLeft = "member_left",
        OwnershipOffered = "ownership_offered",
        OwnershipTransferred = "ownership_transferred",
        BookDeleted = "book_deleted"
    }
);

/// An entry before the store numbers and chains it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct AuditDraft {
    pub library_id: LibraryId,
    pub at: Timestamp,
    /// Who did it.
    pub actor: UserId,
    pub action: AuditAction,
    pub device_id: Option<DeviceId>,
    /// The client's address, as the gateway saw it.
    pub addr: Option<String>,
    /// Whom or what it was done to.
    pub target_user: Option<UserId>,
    pub role: Option<Role>,
    pub invite_id: Option<InviteId>,
    pub book_id: Option<BookId>,
    /// A name the action set (a library's new name).
    pub name: Option<String>,
}

impl AuditDraft {
    pub fn new(library_id: LibraryId, actor: UserId, action: AuditAction) -> Self {
        AuditDraft {
            library_id,
            at: Timestamp::now(),
            actor,
            action,
            device_id: None,
            addr: None,
            target_user: None,
            role: None,
            invite_id: None,
            book_id: None,
            name: None,
        }
    }

    /// The stored entry: numbered `seq` (1 for a library's first) after `prev_hash` ("" for
    /// the first), with its own hash.
    pub fn chained(self, seq: u64, prev_hash: String) -> AuditEntry {
        let mut e = AuditEntry {
            seq,
            draft: self,
            prev_hash,
            hash: String::new(),
        };
        e.hash = e.computed_hash();
        e
    }
}

/// One entry of a library's audit log.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub draft: AuditDraft,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// SHA-256 (hex) over every field but `hash`, each written out unambiguously (fields are
    /// length-prefixed, absent ones are `-`), so that no two entries share a preimage.
    pub fn computed_hash(&self) -> String {
        let d = &self.draft;
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let fields = [
            d.library_id.to_string(),
            self.seq.to_string(),
            d.at.millis().to_string(),
            d.actor.to_string(),
            d.action.as_str().to_string(),
            opt(d.device_id.map(|x| x.to_string())),
            opt(d.addr.clone()),
            opt(d.target_user.map(|x| x.to_string())),
            opt(d.role.map(|x| x.as_str().to_string())),
            opt(d.invite_id.map(|x| x.to_string())),
            opt(d.book_id.map(|x| x.to_string())),
            opt(d.name.clone()),
            self.prev_hash.clone(),
        ];
        let mut h = Sha256::new();
        h.update(b"dogear-audit-v1\n");
        for f in fields {
            h.update((f.len() as u64).to_be_bytes());
            h.update(f.as_bytes());
        }
        crate::digest::hex(&h.finalize())
    }
}

/// Where a chain stops matching.
#[derive(Clone, PartialEq, Debug)]
pub struct ChainBreak {
    pub library_id: LibraryId,
    pub seq: u64,
    pub reason: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "library {} entry {}: {}",
            self.library_id, self.seq, self.reason
        )
    }
}

/// Walks one library's entries in order; `expect_seq` and `prev` carry the walk across
/// pages. The first entry that does not follow from the one before is the break.
pub fn check_chain(
    entries: &[AuditEntry],
    expect_seq: &mut u64,
    prev: &mut String,
) -> Result<(), ChainBreak> {
    for e in entries {
        let brk = |reason: String| ChainBreak {
            library_id: e.draft.library_id,
            seq: e.seq,
            reason,
        };
        if e.seq != *expect_seq {
            return Err(ChainBreak {
                library_id: e.draft.library_id,
                seq: *expect_seq,
                reason: format!("missing (the next entry is {})", e.seq),
            });
        }
        if e.prev_hash != *prev {
            return Err(brk("does not name the previous entry's hash".into()));
        }
        if e.computed_hash() != e.hash {
            return Err(brk("its content does not match its hash".into()));
        }
        *expect_seq += 1;
        prev.clone_from(&e.hash);
    }
    Ok(())
}

/// One change of a sharing action; a list of them is written in one transaction.
#[derive(Clone, PartialEq, Debug)]
pub enum SharingOp {
    /// Inserts the library, or updates its name, owner and pending owner.
    PutLibrary(Library),
    /// Marks the library deleted and removes its memberships and invitations' use (its
    /// books are tombstoned by its actor before).
    DeleteLibrary(LibraryId, Timestamp),
    /// Adds a member or changes their role.
    PutMember(Membership),
    RemoveMember(LibraryId, UserId),
    /// Inserts an invitation, or updates its uses and revocation.
    PutInvite(Invite),
    /// Takes one use of an invitation if it is still usable at that time; otherwise the whole
    /// transaction fails with `StoreError::Conflict("invite")`.
    Redeem(InviteId, Timestamp),
    /// Writes a book as `Store::update_book` does (a person deleting a book of a shared
    /// library: the tombstone and its entry together).
    UpdateBook(Box<crate::records::Book>),
}
