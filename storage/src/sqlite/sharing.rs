//! Sharing on SQLite: each action's changes and its audit entry in one writer job.

use super::rows::{parse_enum, parse_id};
use crate::error::StoreError;
use crate::ids::{InviteId, LibraryId};
use crate::records::Role;
use crate::sharing::{AuditAction, AuditDraft, AuditEntry, Invite, SharingOp};
use crate::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

pub(super) fn sharing_write(
    c: &Connection,
    ops: &[SharingOp],
    draft: AuditDraft,
) -> Result<AuditEntry, StoreError> {
    for op in ops {
        apply(c, op)?;
    }
    let lib = draft.library_id.to_string();
    let last: Option<(i64, String)> = c
        .prepare_cached(
            "SELECT seq, hash FROM audit_log WHERE library_id = ?1 ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([&lib], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, prev) = last.map_or((1, String::new()), |(s, h)| (s as u64 + 1, h));
    let e = draft.chained(seq, prev);
    let d = &e.draft;
    c.prepare_cached(
        "INSERT INTO audit_log (library_id, seq, at, actor, action, device_id, addr, target_user,
             role, invite_id, book_id, name, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        lib,
        e.seq as i64,
        d.at.millis(),
        d.actor.to_string(),
        d.action.as_str(),
        d.device_id.map(|x| x.to_string()),
        d.addr,
        d.target_user.map(|x| x.to_string()),
        d.role.map(|x| x.as_str()),
        d.invite_id.map(|x| x.to_string()),
        d.book_id.map(|x| x.to_string()),
        d.name,
        e.prev_hash,
        e.hash,
    ])?;
    Ok(e)
}

fn apply(c: &Connection, op: &SharingOp) -> Result<(), StoreError> {
    match op {
        SharingOp::PutLibrary(l) => {
            c.prepare_cached(
                "INSERT INTO libraries (id, name, kind, owner_id, created_at, pending_owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                     owner_id = excluded.owner_id, pending_owner = excluded.pending_owner",
            )?
            .execute(params![
                l.id.to_string(),
                l.name,
                l.kind.as_str(),
                l.owner_id.to_string(),
                l.created_at.millis(),
                l.pending_owner.map(|u| u.to_string()),
            ])?;
        }
        SharingOp::DeleteLibrary(id, at) => {
            let id = id.to_string();
            c.execute(
                "UPDATE libraries SET deleted_at = ?2, pending_owner = NULL
                 WHERE id = ?1 AND deleted_at IS NULL",
                params![id, at.millis()],
            )?;
            c.execute("DELETE FROM memberships WHERE library_id = ?1", [&id])?;
            c.execute(
                "UPDATE invites SET revoked_at = ?2 WHERE library_id = ?1 AND revoked_at IS NULL",
                params![id, at.millis()],
            )?;
        }
        SharingOp::PutMember(m) => {
            c.prepare_cached(
                "INSERT INTO memberships (library_id, user_id, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT (library_id, user_id) DO UPDATE SET role = excluded.role",
            )?
            .execute(params![
                m.library_id.to_string(),
                m.user_id.to_string(),
                m.role.as_str()
            ])?;
        }
        SharingOp::RemoveMember(lib, user) => {
            c.prepare_cached("DELETE FROM memberships WHERE library_id = ?1 AND user_id = ?2")?
                .execute(params![lib.to_string(), user.to_string()])?;
        }
        SharingOp::PutInvite(i) => {
            c.prepare_cached(
                "INSERT INTO invites (id, library_id, code_hash, role, created_by, created_at,
                     expires_at, max_uses, uses, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (id) DO UPDATE SET uses = excluded.uses,
                     revoked_at = excluded.revoked_at",
            )?
            .execute(params![
                i.id.to_string(),
                i.library_id.to_string(),
                i.code_hash,
                i.role.as_str(),
                i.created_by.to_string(),
                i.created_at.millis(),
                i.expires_at.map(|t| t.millis()),
                i.max_uses.map(i64::from),
                i64::from(i.uses),
                i.revoked_at.map(|t| t.millis()),
            ])
            .map_err(|e| super::map_unique(e, "invite"))?;
        }
        SharingOp::UpdateBook(b) => super::books::BookRow::new(b)?.update(c)?,
        SharingOp::Redeem(id, now) => {
            let n = c
                .prepare_cached(
                    "UPDATE invites SET uses = uses + 1
                     WHERE id = ?1 AND revoked_at IS NULL
                       AND (expires_at IS NULL OR expires_at > ?2)
                       AND (max_uses IS NULL OR uses < max_uses)
                       AND library_id IN (SELECT id FROM libraries WHERE deleted_at IS NULL)",
                )?
                .execute(params![id.to_string(), now.millis()])?;
            if n == 0 {
                return Err(StoreError::Conflict("invite"));
            }
        }
    }
    Ok(())
}

const INVITE_COLS: &str = "id, library_id, code_hash, role, created_by, created_at, expires_at,
    max_uses, uses, revoked_at";

fn invite_row(r: &Row<'_>) -> rusqlite::Result<Result<Invite, StoreError>> {
    let (id, lib, hash, role, by): (String, String, String, String, String) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let (created, expires, max, uses, revoked): (i64, Option<i64>, Option<i64>, i64, Option<i64>) =
        (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?);
    Ok((|| {
        Ok(Invite {
            id: parse_id(&id)?,
            library_id: parse_id(&lib)?,
            code_hash: hash,
            role: parse_enum(&role, Role::parse)?,
            created_by: parse_id(&by)?,
            created_at: Timestamp::from_millis(created),
            expires_at: expires.map(Timestamp::from_millis),
            max_uses: max.map(|m| m.clamp(0, u32::MAX as i64) as u32),
            uses: uses.clamp(0, u32::MAX as i64) as u32,
            revoked_at: revoked.map(Timestamp::from_millis),
        })
    })())
}

pub(super) fn invites(c: &Connection, library: LibraryId) -> Result<Vec<Invite>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {INVITE_COLS} FROM invites WHERE library_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([library.to_string()], invite_row)?;
    rows.map(|r| r?).collect()
}

pub(super) fn invite(c: &Connection, code_hash: &str) -> Result<Option<Invite>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {INVITE_COLS} FROM invites WHERE code_hash = ?1"
    ))?
    .query_row([code_hash], invite_row)
    .optional()?
    .transpose()
}

pub(super) fn invite_by_id(c: &Connection, id: InviteId) -> Result<Option<Invite>, StoreError> {
    c.prepare_cached(&format!("SELECT {INVITE_COLS} FROM invites WHERE id = ?1"))?
        .query_row([id.to_string()], invite_row)
        .optional()?
        .transpose()
}

pub(super) fn audit_entries(
    c: &Connection,
    library: LibraryId,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT library_id, seq, at, actor, action, device_id, addr, target_user, role,
             invite_id, book_id, name, prev_hash, hash
         FROM audit_log WHERE library_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = st.query_map(
        params![library.to_string(), after as i64, limit as i64],
        |r| {
            let lib: String = r.get(0)?;
            let seq: i64 = r.get(1)?;
            let at: i64 = r.get(2)?;
            let actor: String = r.get(3)?;
            let action: String = r.get(4)?;
            let opt = |i: usize| r.get::<_, Option<String>>(i);
            let (device, addr, target, role, invite, book, name) = (
                opt(5)?,
                opt(6)?,
                opt(7)?,
                opt(8)?,
                opt(9)?,
                opt(10)?,
                opt(11)?,
            );
            let (prev_hash, hash): (String, String) = (r.get(12)?, r.get(13)?);
            Ok((|| {
                Ok(AuditEntry {
                    seq: seq.max(0) as u64,
                    draft: AuditDraft {
                        library_id: parse_id(&lib)?,
                        at: Timestamp::from_millis(at),
                        actor: parse_id(&actor)?,
                        action: parse_enum(&action, AuditAction::parse)?,
                        device_id: opt_id(device)?,
                        addr,
                        target_user: opt_id(target)?,
                        role: role
                            .as_deref()
                            .map(|r| parse_enum(r, Role::parse))
                            .transpose()?,
                        invite_id: opt_id(invite)?,
                        book_id: opt_id(book)?,
                        name,
                    },
                    prev_hash,
                    hash,
                })
            })())
        },
    )?;
    rows.map(|r| r?).collect()
}

pub(super) fn audited_libraries(c: &Connection) -> Result<Vec<LibraryId>, StoreError> {
    let mut st =
        c.prepare_cached("SELECT DISTINCT library_id FROM audit_log ORDER BY library_id")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|r| parse_id(&r?)).collect()
}

fn opt_id<T: std::str::FromStr>(s: Option<String>) -> Result<Option<T>, StoreError> {
    s.as_deref().map(parse_id).transpose()
}
