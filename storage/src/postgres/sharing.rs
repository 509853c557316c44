//! Sharing on PostgreSQL: each action's changes and its audit entry in one transaction,
//! serialized per library by an advisory lock (the entry's number follows the last one).

use super::rows::*;
use super::{exec, query, query_opt, unique};
use crate::error::StoreError;
use crate::ids::LibraryId;
use crate::records::Role;
use crate::sharing::{AuditAction, AuditDraft, AuditEntry, Invite, SharingOp};
use crate::time::Timestamp;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

pub(super) async fn sharing_write(
    c: &impl GenericClient,
    ops: &[SharingOp],
    draft: AuditDraft,
) -> Result<AuditEntry, StoreError> {
    for op in ops {
        apply(c, op).await?;
    }
    let lib = draft.library_id.to_string();
    exec(
        c,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
        &[&lib],
    )
    .await?;
    let last = query_opt(
        c,
        "SELECT seq, hash FROM audit_log WHERE library_id = $1 ORDER BY seq DESC LIMIT 1",
        &[&lib],
    )
    .await?;
    let (seq, prev) = match last {
        Some(r) => (col::<i64>(&r, 0)? as u64 + 1, col::<String>(&r, 1)?),
        None => (1, String::new()),
    };
    let e = draft.chained(seq, prev);
    let d = &e.draft;
    exec(
        c,
        "INSERT INTO audit_log (library_id, seq, at, actor, action, device_id, addr, target_user,
             role, invite_id, book_id, name, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        &[
            &lib,
            &(e.seq as i64),
            &d.at.millis(),
            &d.actor.to_string(),
            &d.action.as_str(),
            &d.device_id.map(|x| x.to_string()),
            &d.addr,
            &d.target_user.map(|x| x.to_string()),
            &d.role.map(|x| x.as_str()),
            &d.invite_id.map(|x| x.to_string()),
            &d.book_id.map(|x| x.to_string()),
            &d.name,
            &e.prev_hash,
            &e.hash,
        ],
    )
    .await?;
    Ok(e)
}

async fn apply(c: &impl GenericClient, op: &SharingOp) -> Result<(), StoreError> {
    match op {
        SharingOp::PutLibrary(l) => {
            exec(
                c,
                "INSERT INTO libraries (id, name, kind, owner_id, created_at, pending_owner)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                     owner_id = excluded.owner_id, pending_owner = excluded.pending_owner",
                &[
                    &l.id.to_string(),
                    &l.name,
                    &l.kind.as_str(),
                    &l.owner_id.to_string(),
                    &l.created_at.millis(),
                    &l.pending_owner.map(|u| u.to_string()),
                ],
            )
            .await?;
        }
        SharingOp::DeleteLibrary(id, at) => {
            let id = id.to_string();
            exec(
                c,
                "UPDATE libraries SET deleted_at = $2, pending_owner = NULL
                 WHERE id = $1 AND deleted_at IS NULL",
                &[&id, &at.millis()],
            )
            .await?;
            exec(c, "DELETE FROM memberships WHERE library_id = $1", &[&id]).await?;
            exec(
                c,
                "UPDATE invites SET revoked_at = $2 WHERE library_id = $1 AND revoked_at IS NULL",
                &[&id, &at.millis()],
            )
            .await?;
        }
        SharingOp::PutMember(m) => {
            exec(
                c,
                "INSERT INTO memberships (library_id, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (library_id, user_id) DO UPDATE SET role = excluded.role",
                &[
                    &m.library_id.to_string(),
                    &m.user_id.to_string(),
                    &m.role.as_str(),
                ],
            )
            .await?;
        }
        SharingOp::RemoveMember(lib, user) => {
            exec(
                c,
                "DELETE FROM memberships WHERE library_id = $1 AND user_id = $2",
                &[&lib.to_string(), &user.to_string()],
            )
            .await?;
        }
        SharingOp::PutInvite(i) => {
            exec(
                c,
                "INSERT INTO invites (id, library_id, code_hash, role, created_by, created_at,
                     expires_at, max_uses, uses, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO UPDATE SET uses = excluded.uses,
                     revoked_at = excluded.revoked_at",
                &[
                    &i.id.to_string(),
                    &i.library_id.to_string(),
                    &i.code_hash,
                    &i.role.as_str(),
                    &i.created_by.to_string(),
                    &i.created_at.millis(),
                    &i.expires_at.map(|t| t.millis()),
                    &i.max_uses.map(i64::from),
                    &i64::from(i.uses),
                    &i.revoked_at.map(|t| t.millis()),
                ],
            )
            .await
            .map_err(|e| unique(e, "invite"))?;
        }
        SharingOp::UpdateBook(b) => super::books::BookRow::new(b)?.update(c).await?,
        SharingOp::Redeem(id, now) => {
            let n = exec(
                c,
                "UPDATE invites SET uses = uses + 1
                 WHERE id = $1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > $2)
                   AND (max_uses IS NULL OR uses < max_uses)
                   AND library_id IN (SELECT id FROM libraries WHERE deleted_at IS NULL)",
                &[&id.to_string(), &now.millis()],
            )
            .await?;
            if n == 0 {
                return Err(StoreError::Conflict("invite"));
            }
        }
    }
    Ok(())
}

const INVITE_COLS: &str = "id, library_id, code_hash, role, created_by, created_at, expires_at,
    max_uses, uses, revoked_at";

fn invite_row(r: &Row) -> Result<Invite, StoreError> {
    let role: String = col(r, 3)?;
    let count = |v: i64| v.clamp(0, u32::MAX as i64) as u32;
    Ok(Invite {
        id: parse_id(&col::<String>(r, 0)?)?,
        library_id: parse_id(&col::<String>(r, 1)?)?,
        code_hash: col(r, 2)?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        created_by: parse_id(&col::<String>(r, 4)?)?,
        created_at: Timestamp::from_millis(col(r, 5)?),
        expires_at: col::<Option<i64>>(r, 6)?.map(Timestamp::from_millis),
        max_uses: col::<Option<i64>>(r, 7)?.map(count),
        uses: count(col(r, 8)?),
        revoked_at: col::<Option<i64>>(r, 9)?.map(Timestamp::from_millis),
    })
}

pub(super) async fn invites(
    c: &impl GenericClient,
    library: LibraryId,
) -> Result<Vec<Invite>, StoreError> {
    query(
        c,
        &format!("SELECT {INVITE_COLS} FROM invites WHERE library_id = $1 ORDER BY created_at, id"),
        &[&library.to_string()],
    )
    .await?
    .iter()
    .map(invite_row)
    .collect()
}

pub(super) async fn invite_where(
    c: &impl GenericClient,
    column: &str,
    value: &str,
) -> Result<Option<Invite>, StoreError> {
    let sql = match column {
        "id" => format!("SELECT {INVITE_COLS} FROM invites WHERE id = $1"),
        _ => format!("SELECT {INVITE_COLS} FROM invites WHERE code_hash = $1"),
    };
    query_opt(c, &sql, &[&value])
        .await?
        .as_ref()
        .map(invite_row)
        .transpose()
}

pub(super) async fn audit_entries(
    c: &impl GenericClient,
    library: LibraryId,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = query(
        c,
        "SELECT library_id, seq, at, actor, action, device_id, addr, target_user, role,
             invite_id, book_id, name, prev_hash, hash
         FROM audit_log WHERE library_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        &[&library.to_string(), &(after as i64), &(limit as i64)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let action: String = col(r, 4)?;
            let role: Option<String> = col(r, 8)?;
            Ok(AuditEntry {
                seq: col::<i64>(r, 1)?.max(0) as u64,
                draft: AuditDraft {
                    library_id: parse_id(&col::<String>(r, 0)?)?,
                    at: Timestamp::from_millis(col(r, 2)?),
                    actor: parse_id(&col::<String>(r, 3)?)?,
                    action: AuditAction::parse(&action)
                        .ok_or_else(|| StoreError::Corrupt(format!("action {action}")))?,
                    device_id: opt_id_col(r, 5)?,
                    addr: col(r, 6)?,
                    target_user: opt_id_col(r, 7)?,
                    role: role
                        .map(|s| Role::parse(&s).ok_or(StoreError::Corrupt(format!("role {s}"))))
                        .transpose()?,
                    invite_id: opt_id_col(r, 9)?,
                    book_id: opt_id_col(r, 10)?,
                    name: col(r, 11)?,
                },
                prev_hash: col(r, 12)?,
                hash: col(r, 13)?,
            })
        })
        .collect()
}

pub(super) async fn audited_libraries(
    c: &impl GenericClient,
) -> Result<Vec<LibraryId>, StoreError> {
    query(
        c,
        "SELECT DISTINCT library_id FROM audit_log ORDER BY library_id",
        &[],
    )
    .await?
    .iter()
    .map(|r| parse_id(&col::<String>(r, 0)?))
    .collect()
}
