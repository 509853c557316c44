//! Readers' records of books, idempotent answers and account management, on SQLite.

use super::map_unique;
use super::rows::*;
use crate::error::StoreError;
use crate::ids::*;
use crate::reading::*;
use crate::records::*;
use crate::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeSet;

fn user_book_row(r: &Row<'_>) -> rusqlite::Result<Result<UserBook, StoreError>> {
    let data: String = r.get(0)?;
    Ok(from_json(&data))
}

pub(super) fn user_book(
    c: &Connection,
    user: UserId,
    book: BookId,
) -> Result<Option<UserBook>, StoreError> {
    c.prepare_cached("SELECT data FROM user_books WHERE user_id = ?1 AND book_id = ?2")?
        .query_row(params![user.to_string(), book.to_string()], user_book_row)
        .optional()?
        .transpose()
}

pub(super) fn user_books(
    c: &Connection,
    user: UserId,
    after: Option<BookId>,
    limit: usize,
) -> Result<Vec<UserBook>, StoreError> {
    let after = after.map(|b| b.to_string()).unwrap_or_default();
    let mut st = c.prepare_cached(
        "SELECT data FROM user_books WHERE user_id = ?1 AND book_id > ?2
         ORDER BY book_id LIMIT ?3",
    )?;
    let rows = st.query_map(
        params![user.to_string(), after, limit.min(i64::MAX as usize) as i64],
        user_book_row,
    )?;
    rows.map(|r| r?).collect()
}

pub(super) fn put_user_books(
    c: &Connection,
    user: UserId,
    books: &[UserBook],
    answer: Option<&IdempotentAnswer>,
) -> Result<(), StoreError> {
    if let Some(a) = answer {
        // Takes the key unless an unexpired answer holds it.
        let n = c
            .prepare_cached(
                "INSERT INTO idempotent_answers
                   (user_id, key, fingerprint, status, body, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                   status = excluded.status, body = excluded.body,
                   created_at = excluded.created_at, expires_at = excluded.expires_at
                 WHERE idempotent_answers.expires_at <= excluded.created_at",
            )?
            .execute(params![
                user.to_string(),
                a.key,
                a.fingerprint,
                a.status,
                a.body,
                a.created_at.millis(),
                a.expires_at.millis()
            ])?;
        if n == 0 {
            return Err(StoreError::Conflict("idempotency key"));
        }
    }
    for b in books {
        if b.user_id != user {
            return Err(StoreError::Corrupt(
                "a record of another user in the batch".into(),
            ));
        }
        let data = super::json(b)?;
        let (user_s, book_s) = (user.to_string(), b.book_id.to_string());
        let status = b.status.map(|s| s.as_str());
        let rating = b.rating.map(|r| i64::from(r.halves()));
        let version = b.version as i64;
        let n = if b.version == 1 {
            c.prepare_cached(
                "INSERT INTO user_books (user_id, book_id, status, favourite, rating, version, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?
            .execute(params![user_s, book_s, status, b.favourite, rating, version, data])?
        } else {
            c.prepare_cached(
                "UPDATE user_books SET status = ?3, favourite = ?4, rating = ?5, version = ?6,
                   data = ?7
                 WHERE user_id = ?1 AND book_id = ?2 AND version = ?6 - 1",
            )?
            .execute(params![
                user_s,
                book_s,
                status,
                b.favourite,
                rating,
                version,
                data
            ])?
        };
        if n == 0 {
            return Err(StoreError::VersionConflict {
                expected: b.version.saturating_sub(1),
                found: 0,
            });
        }
    }
    Ok(())
}

pub(super) fn idempotent_answer(
    c: &Connection,
    user: UserId,
    key: &str,
    now: Timestamp,
) -> Result<Option<IdempotentAnswer>, StoreError> {
    c.prepare_cached(
        "SELECT fingerprint, status, body, created_at, expires_at FROM idempotent_answers
         WHERE user_id = ?1 AND key = ?2 AND expires_at > ?3",
    )?
    .query_row(params![user.to_string(), key, now.millis()], |r| {
        Ok(IdempotentAnswer {
            user_id: user,
            key: key.to_string(),
            fingerprint: r.get(0)?,
            status: r.get(1)?,
            body: r.get(2)?,
            created_at: Timestamp::from_millis(r.get(3)?),
            expires_at: Timestamp::from_millis(r.get(4)?),
        })
    })
    .optional()
    .map_err(Into::into)
}

pub(super) fn purge_idempotent_answers(
    c: &Connection,
    before: Timestamp,
) -> Result<u64, StoreError> {
    Ok(
        c.prepare_cached("DELETE FROM idempotent_answers WHERE expires_at <= ?1")?
            .execute([before.millis()])? as u64,
    )
}

/// Live accounts only: a deleted account's row is kept as an id alone (see `delete_user`).
pub(super) const LIVE_USER: &str = "id NOT IN (SELECT user_id FROM deleted_users)";

pub(super) fn users(c: &Connection) -> Result<Vec<User>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {USER_COLS} FROM users WHERE {LIVE_USER} ORDER BY username"
    ))?;
    let rows = st.query_map([], user_row)?;
    rows.map(|r| r?).collect()
}

pub(super) fn update_user(c: &Connection, u: &User, now: Timestamp) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached(&format!(
            "UPDATE users SET username = ?2, email = ?3, display_name = ?4, password_hash = ?5,
               tokens_changed_at = CASE WHEN token_epoch <> ?6
                 OR (disabled_at IS NULL) <> (?7 IS NULL) THEN ?8 ELSE tokens_changed_at END,
               token_epoch = ?6, disabled_at = ?7, visibility = ?9
             WHERE id = ?1 AND {LIVE_USER}"
        ))?
        .execute(params![
            u.id.to_string(),
            u.username,
            u.email,
            u.display_name,
            u.password_hash,
            u.token_epoch as i64,
            u.disabled_at.map(|t| t.millis()),
            now.millis(),
            u.visibility.as_str()
        ])
        .map_err(|e| map_unique(e, "username"))?;
    Ok(n > 0)
}

pub(super) fn revoke_user_sessions(c: &Connection, user: UserId) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ?1")?
        .execute([user.to_string()])?;
    Ok(())
}

pub(super) fn token_cutoffs(
    c: &Connection,
    since: Timestamp,
) -> Result<Vec<(UserId, u64)>, StoreError> {
    let mut out = Vec::new();
    let mut st = c.prepare_cached(
        "SELECT id, token_epoch, disabled_at FROM users
         WHERE tokens_changed_at >= ?1",
    )?;
    let rows = st.query_map([since.millis()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?,
        ))
    })?;
    for row in rows {
        let (id, epoch, disabled) = row?;
        // A disabled account's tokens are all refused, whatever their epoch.
        let cutoff = if disabled.is_some() {
            u64::MAX
        } else {
            epoch.max(0) as u64
        };
        out.push((parse_id(&id)?, cutoff));
    }
    let mut st = c.prepare_cached("SELECT user_id FROM deleted_users WHERE deleted_at >= ?1")?;
    let rows = st.query_map([since.millis()], |r| r.get::<_, String>(0))?;
    for id in rows {
        out.push((parse_id(&id?)?, u64::MAX));
    }
    Ok(out)
}

pub(super) fn delete_user(
    c: &Connection,
    user: UserId,
    now: Timestamp,
) -> Result<Option<Vec<FileLocation>>, StoreError> {
    let u = user.to_string();
    let live: bool = c
        .prepare_cached(&format!(
            "SELECT count(*) FROM users WHERE id = ?1 AND {LIVE_USER}"
        ))?
        .query_row([&u], |r| r.get::<_, i64>(0))?
        > 0;
    if !live {
        return Ok(None);
    }
    let owned_shared: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM libraries WHERE owner_id = ?1 AND kind = 'shared'
             AND deleted_at IS NULL",
        )?
        .query_row([&u], |r| r.get(0))?;
    if owned_shared > 0 {
        return Err(StoreError::Conflict("libraries"));
    }
    let personal: Vec<String> = c
        .prepare_cached("SELECT id FROM libraries WHERE owner_id = ?1 AND kind = 'personal'")?
        .query_map([&u], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    // The files of the books going away, less those another book still names.
    let mut gone = BTreeSet::new();
    for lib in &personal {
        let mut st = c.prepare_cached("SELECT meta FROM books WHERE library_id = ?1")?;
        for meta in st.query_map([lib], |r| r.get::<_, String>(0))? {
            let meta: BookMeta = from_json(&meta?)?;
            meta.object_keys(&mut gone);
        }
    }
    for lib in &personal {
        for sql in [
            "DELETE FROM books_fts WHERE rowid IN (SELECT rowid FROM books WHERE library_id = ?1)",
            "DELETE FROM koreader_digests WHERE book_id IN (SELECT id FROM books WHERE library_id = ?1)",
            "DELETE FROM user_books WHERE book_id IN (SELECT id FROM books WHERE library_id = ?1)",
            "DELETE FROM kobo_ledger WHERE book_id IN (SELECT id FROM books WHERE library_id = ?1)",
            "DELETE FROM book_hashes WHERE library_id = ?1",
            "DELETE FROM source_files WHERE library_id = ?1",
            "DELETE FROM import_jobs WHERE library_id = ?1",
            "DELETE FROM shelves WHERE library_id = ?1",
            "DELETE FROM invites WHERE library_id = ?1",
            "DELETE FROM books WHERE library_id = ?1",
            "DELETE FROM book_facet_counts WHERE library_id = ?1",
            "DELETE FROM memberships WHERE library_id = ?1",
            "DELETE FROM libraries WHERE id = ?1",
        ] {
            c.prepare_cached(sql)?.execute([lib])?;
        }
    }
    for sql in [
        "DELETE FROM memberships WHERE user_id = ?1",
        "DELETE FROM refresh_tokens WHERE user_id = ?1",
        "DELETE FROM devices WHERE user_id = ?1",
        "DELETE FROM progress_books WHERE user_id = ?1",
        "DELETE FROM koreader_positions WHERE user_id = ?1",
        "DELETE FROM shelves WHERE user_id = ?1 AND library_id IS NULL",
        "DELETE FROM user_books WHERE user_id = ?1",
        "DELETE FROM idempotent_answers WHERE user_id = ?1",
        "DELETE FROM user_docs WHERE user_id = ?1",
        "DELETE FROM relations WHERE from_id = ?1 OR to_id = ?1",
        "UPDATE import_jobs SET user_id = NULL WHERE user_id = ?1",
    ] {
        c.prepare_cached(sql)?.execute([&u])?;
    }
    c.prepare_cached("DELETE FROM progress_events WHERE user_id = ?1")?
        .execute([user.0.as_bytes()])?;
    // The row stays as the id alone: shared records name it (a library's shelves it made,
    // a deleted library it owned, audit entries), and its tokens must be known as dead.
    c.prepare_cached(
        "UPDATE users SET username = ?2, email = NULL, display_name = NULL, password_hash = '',
           is_admin = 0, disabled_at = ?3, token_epoch = 0, tokens_changed_at = ?3
         WHERE id = ?1",
    )?
    .execute(params![&u, format!("\u{1}deleted:{u}"), now.millis()])?;
    c.prepare_cached("INSERT OR REPLACE INTO deleted_users (user_id, deleted_at) VALUES (?1, ?2)")?
        .execute(params![&u, now.millis()])?;
    if !gone.is_empty() {
        let mut st = c.prepare_cached("SELECT meta FROM books")?;
        let mut kept = BTreeSet::new();
        for meta in st.query_map([], |r| r.get::<_, String>(0))? {
            let meta: BookMeta = from_json(&meta?)?;
            meta.object_keys(&mut kept);
        }
        gone.retain(|k| !kept.contains(k));
    }
    Ok(Some(
        gone.into_iter()
            .map(|key| FileLocation::Object { key })
            .collect(),
    ))
}

const DOC_COLS: &str =
    "user_id, id, kind, book_id, version, created_at, updated_at, deleted_at, change_seq, body";

fn doc_row(r: &Row<'_>) -> rusqlite::Result<Result<UserDoc, StoreError>> {
    let (user, id, kind, book): (String, String, String, Option<String>) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let (version, created, updated, deleted, seq, body): (i64, i64, i64, Option<i64>, i64, String) = (
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    );
    Ok((|| {
        Ok(UserDoc {
            user_id: parse_id(&user)?,
            id: parse_id(&id)?,
            kind: parse_enum(&kind, DocKind::parse)?,
            book_id: book.as_deref().map(parse_id).transpose()?,
            version: version.max(0) as u64,
            created_at: Timestamp::from_millis(created),
            updated_at: Timestamp::from_millis(updated),
            deleted_at: deleted.map(Timestamp::from_millis),
            change_seq: seq.max(0) as u64,
            body,
        })
    })())
}

pub(super) fn doc(c: &Connection, user: UserId, id: DocId) -> Result<Option<UserDoc>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {DOC_COLS} FROM user_docs WHERE user_id = ?1 AND id = ?2"
    ))?
    .query_row(params![user.to_string(), id.to_string()], doc_row)
    .optional()?
    .transpose()
}

pub(super) fn put_doc(c: &Connection, d: &UserDoc) -> Result<UserDoc, StoreError> {
    let (user, id) = (d.user_id.to_string(), d.id.to_string());
    let current = doc(c, d.user_id, d.id)?;
    match &current {
        Some(cur) if cur.kind != d.kind => return Err(StoreError::Conflict("document id")),
        Some(cur) if cur.version + 1 != d.version => {
            return Err(StoreError::VersionConflict {
                expected: d.version.saturating_sub(1),
                found: cur.version,
            });
        }
        None if d.version != 1 => {
            return Err(StoreError::VersionConflict {
                expected: d.version.saturating_sub(1),
                found: 0,
            });
        }
        _ => {}
    }
    let seq: i64 = c
        .prepare_cached(
            "SELECT coalesce(max(change_seq), 0) + 1 FROM user_docs WHERE user_id = ?1",
        )?
        .query_row([&user], |r| r.get(0))?;
    let stored = UserDoc {
        change_seq: seq as u64,
        ..d.clone()
    };
    c.prepare_cached(&format!(
        "INSERT OR REPLACE INTO user_docs ({DOC_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![
        user,
        id,
        stored.kind.as_str(),
        stored.book_id.map(|b| b.to_string()),
        stored.version as i64,
        stored.created_at.millis(),
        stored.updated_at.millis(),
        stored.deleted_at.map(|t| t.millis()),
        seq,
        stored.body
    ])?;
    Ok(stored)
}

pub(super) fn docs(c: &Connection, q: &DocQuery) -> Result<Vec<UserDoc>, StoreError> {
    let book = q.book.map(|b| b.to_string());
    let mut st = c.prepare_cached(&format!(
        "SELECT {DOC_COLS} FROM user_docs WHERE user_id = ?1 AND kind = ?2 AND change_seq > ?3
           AND (?4 IS NULL OR book_id = ?4) AND (?5 OR deleted_at IS NULL)
         ORDER BY change_seq LIMIT ?6"
    ))?;
    let rows = st.query_map(
        params![
            q.user.to_string(),
            q.kind.as_str(),
            q.after.min(i64::MAX as u64) as i64,
            book,
            q.deleted,
            q.limit.min(i64::MAX as usize) as i64
        ],
        doc_row,
    )?;
    rows.map(|r| r?).collect()
}

fn relation_of(from: String, to: String, kind: String, at: i64) -> Result<Relation, StoreError> {
    Ok(Relation {
        from: parse_id(&from)?,
        to: parse_id(&to)?,
        kind: parse_enum(&kind, RelationKind::parse)?,
        created_at: Timestamp::from_millis(at),
    })
}

pub(super) fn relate(c: &Connection, ops: &[RelationOp]) -> Result<(), StoreError> {
    for op in ops {
        match op {
            RelationOp::Put(r) => {
                c.prepare_cached(
                    "INSERT INTO relations (from_id, to_id, kind, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    r.from.to_string(),
                    r.to.to_string(),
                    r.kind.as_str(),
                    r.created_at.millis()
                ])?;
            }
            RelationOp::Delete { from, to, kind } => {
                c.prepare_cached(
                    "DELETE FROM relations WHERE from_id = ?1 AND to_id = ?2 AND kind = ?3",
                )?
                .execute(params![
                    from.to_string(),
                    to.to_string(),
                    kind.as_str()
                ])?;
            }
        }
    }
    Ok(())
}

pub(super) fn relations_between(
    c: &Connection,
    a: UserId,
    b: UserId,
) -> Result<Vec<Relation>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT from_id, to_id, kind, created_at FROM relations
         WHERE (from_id = ?1 AND to_id = ?2) OR (from_id = ?2 AND to_id = ?1)",
    )?;
    let rows = st.query_map(params![a.to_string(), b.to_string()], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.map(|r| {
        let (f, t, k, at) = r?;
        relation_of(f, t, k, at)
    })
    .collect()
}

pub(super) fn relations_of(
    c: &Connection,
    user: UserId,
    kind: RelationKind,
    incoming: bool,
) -> Result<Vec<Related>, StoreError> {
    let (mine, other) = if incoming {
        ("to_id", "from_id")
    } else {
        ("from_id", "to_id")
    };
    let mut st = c.prepare_cached(&format!(
        "SELECT r.from_id, r.to_id, r.kind, r.created_at, u.username, u.display_name
         FROM relations r JOIN users u ON u.id = r.{other}
         WHERE r.{mine} = ?1 AND r.kind = ?2
           AND u.id NOT IN (SELECT user_id FROM deleted_users)
         ORDER BY r.created_at DESC, u.username"
    ))?;
    let rows = st.query_map(params![user.to_string(), kind.as_str()], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    rows.map(|r| {
        let (f, t, k, at, username, display_name) = r?;
        Ok(Related {
            relation: relation_of(f, t, k, at)?,
            username,
            display_name,
        })
    })
    .collect()
}
