//! Readers' records of books, idempotent answers and account management, on PostgreSQL.

use super::rows::*;
use super::{exec, pg, query, query_opt, unique};
use crate::error::StoreError;
use crate::ids::*;
use crate::reading::*;
use crate::records::*;
use crate::time::Timestamp;
use deadpool_postgres::GenericClient;
use std::collections::BTreeSet;
use tokio_postgres::Row;

/// Live accounts only: a deleted account's row is kept as an id alone (see `delete_user`).
pub(super) const LIVE_USER: &str = "id NOT IN (SELECT user_id FROM deleted_users)";

fn user_book_row(r: &Row) -> Result<UserBook, StoreError> {
    serde_json::from_str(&col::<String>(r, 0)?).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) async fn user_book(
    c: &impl GenericClient,
    user: UserId,
    book: BookId,
) -> Result<Option<UserBook>, StoreError> {
    query_opt(
        c,
        "SELECT data FROM user_books WHERE user_id = $1 AND book_id = $2",
        &[&user.to_string(), &book.to_string()],
    )
    .await?
    .as_ref()
    .map(user_book_row)
    .transpose()
}

pub(super) async fn user_books(
    c: &impl GenericClient,
    user: UserId,
    after: Option<BookId>,
    limit: usize,
) -> Result<Vec<UserBook>, StoreError> {
    let after = after.map(|b| b.to_string()).unwrap_or_default();
    query(
        c,
        "SELECT data FROM user_books WHERE user_id = $1 AND book_id > $2
         ORDER BY book_id LIMIT $3",
        &[
            &user.to_string(),
            &after,
            &(limit.min(i64::MAX as usize) as i64),
        ],
    )
    .await?
    .iter()
    .map(user_book_row)
    .collect()
}

pub(super) async fn put_user_books(
    c: &impl GenericClient,
    user: UserId,
    books: &[UserBook],
    answer: Option<&IdempotentAnswer>,
) -> Result<(), StoreError> {
    if let Some(a) = answer {
        let n = exec(
            c,
            "INSERT INTO idempotent_answers
               (user_id, key, fingerprint, status, body, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
               status = excluded.status, body = excluded.body,
               created_at = excluded.created_at, expires_at = excluded.expires_at
             WHERE idempotent_answers.expires_at <= excluded.created_at",
            &[
                &user.to_string(),
                &a.key,
                &a.fingerprint,
                &i32::from(a.status),
                &a.body,
                &a.created_at.millis(),
                &a.expires_at.millis(),
            ],
        )
        .await?;
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
        let rating = b.rating.map(|r| i32::from(r.halves()));
        let version = b.version as i64;
        let n = if b.version == 1 {
            exec(
                c,
                "INSERT INTO user_books (user_id, book_id, status, favourite, rating, version, data)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &user_s,
                    &book_s,
                    &status,
                    &b.favourite,
                    &rating,
                    &version,
                    &data,
                ],
            )
            .await?
        } else {
            exec(
                c,
                "UPDATE user_books SET status = $3, favourite = $4, rating = $5, version = $6::BIGINT,
                   data = $7
                 WHERE user_id = $1 AND book_id = $2 AND version = $6::BIGINT - 1",
                &[
                    &user_s,
                    &book_s,
                    &status,
                    &b.favourite,
                    &rating,
                    &version,
                    &data,
                ],
            )
            .await?
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

pub(super) async fn idempotent_answer(
    c: &impl GenericClient,
    user: UserId,
    key: &str,
    now: Timestamp,
) -> Result<Option<IdempotentAnswer>, StoreError> {
    let Some(r) = query_opt(
        c,
        "SELECT fingerprint, status, body, created_at, expires_at FROM idempotent_answers
         WHERE user_id = $1 AND key = $2 AND expires_at > $3",
        &[&user.to_string(), &key, &now.millis()],
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(IdempotentAnswer {
        user_id: user,
        key: key.to_string(),
        fingerprint: col(&r, 0)?,
        status: u16::try_from(col::<i32>(&r, 1)?)
            .map_err(|_| StoreError::Corrupt("status".into()))?,
        body: col(&r, 2)?,
        created_at: Timestamp::from_millis(col(&r, 3)?),
        expires_at: Timestamp::from_millis(col(&r, 4)?),
    }))
}

pub(super) async fn users(c: &impl GenericClient) -> Result<Vec<User>, StoreError> {
    query(
        c,
        &format!("SELECT {USER_COLS} FROM users WHERE {LIVE_USER} ORDER BY username"),
        &[],
    )
    .await?
    .iter()
    .map(user_row)
    .collect()
}

pub(super) async fn update_user(
    c: &impl GenericClient,
    u: &User,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n = exec(
        c,
        &format!(
            "UPDATE users SET username = $2, email = $3, display_name = $4, password_hash = $5,
               tokens_changed_at = CASE WHEN token_epoch <> $6
                 OR (disabled_at IS NULL) <> ($7::BIGINT IS NULL) THEN $8 ELSE tokens_changed_at END,
               token_epoch = $6, disabled_at = $7, visibility = $9
             WHERE id = $1 AND {LIVE_USER}"
        ),
        &[
            &u.id.to_string(),
            &u.username,
            &u.email,
            &u.display_name,
            &u.password_hash,
            &(u.token_epoch as i64),
            &u.disabled_at.map(|t| t.millis()),
            &now.millis(),
            &u.visibility.as_str(),
        ],
    )
    .await
    .map_err(|e| unique(e, "username"))?;
    Ok(n > 0)
}

pub(super) async fn token_cutoffs(
    c: &impl GenericClient,
    since: Timestamp,
) -> Result<Vec<(UserId, u64)>, StoreError> {
    let mut out = Vec::new();
    for r in query(
        c,
        "SELECT id, token_epoch, disabled_at FROM users WHERE tokens_changed_at >= $1",
        &[&since.millis()],
    )
    .await?
    {
        let disabled: Option<i64> = col(&r, 2)?;
        let cutoff = if disabled.is_some() {
            u64::MAX
        } else {
            col::<i64>(&r, 1)?.max(0) as u64
        };
        out.push((id_col(&r, 0)?, cutoff));
    }
    for r in query(
        c,
        "SELECT user_id FROM deleted_users WHERE deleted_at >= $1",
        &[&since.millis()],
    )
    .await?
    {
        out.push((id_col(&r, 0)?, u64::MAX));
    }
    Ok(out)
}

pub(super) async fn delete_user(
    c: &impl GenericClient,
    user: UserId,
    now: Timestamp,
) -> Result<Option<Vec<FileLocation>>, StoreError> {
    let u = user.to_string();
    // Serializes with any other write of this account.
    let live = query_opt(
        c,
        &format!("SELECT id FROM users WHERE id = $1 AND {LIVE_USER} FOR UPDATE"),
        &[&u],
    )
    .await?;
    if live.is_none() {
        return Ok(None);
    }
    let owned_shared = query(
        c,
        "SELECT id FROM libraries WHERE owner_id = $1 AND kind = 'shared' AND deleted_at IS NULL",
        &[&u],
    )
    .await?;
    if !owned_shared.is_empty() {
        return Err(StoreError::Conflict("libraries"));
    }
    let personal: Vec<String> = query(
        c,
        "SELECT id FROM libraries WHERE owner_id = $1 AND kind = 'personal'",
        &[&u],
    )
    .await?
    .iter()
    .map(|r| col(r, 0))
    .collect::<Result<_, _>>()?;
    let mut gone = BTreeSet::new();
    for lib in &personal {
        for r in query(c, "SELECT meta FROM books WHERE library_id = $1", &[lib]).await? {
            let meta: BookMeta = serde_json::from_str(&col::<String>(&r, 0)?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            meta.object_keys(&mut gone);
        }
    }
    for lib in &personal {
        for sql in [
            "DELETE FROM koreader_digests WHERE book_id IN (SELECT id FROM books WHERE library_id = $1)",
            "DELETE FROM user_books WHERE book_id IN (SELECT id FROM books WHERE library_id = $1)",
            "DELETE FROM kobo_ledger WHERE book_id IN (SELECT id FROM books WHERE library_id = $1)",
            "DELETE FROM book_hashes WHERE library_id = $1",
            "DELETE FROM source_files WHERE library_id = $1",
            "DELETE FROM import_jobs WHERE library_id = $1",
            "DELETE FROM shelves WHERE library_id = $1",
            "DELETE FROM invites WHERE library_id = $1",
            "DELETE FROM books WHERE library_id = $1",
            "DELETE FROM memberships WHERE library_id = $1",
            "DELETE FROM libraries WHERE id = $1",
        ] {
            exec(c, sql, &[lib]).await.map_err(pg)?;
        }
    }
    for sql in [
        "DELETE FROM memberships WHERE user_id = $1",
        "DELETE FROM refresh_tokens WHERE user_id = $1",
        "DELETE FROM devices WHERE user_id = $1",
        "DELETE FROM progress_events WHERE user_id = $1",
        "DELETE FROM progress_books WHERE user_id = $1",
        "DELETE FROM koreader_positions WHERE user_id = $1",
        "DELETE FROM shelves WHERE user_id = $1 AND library_id IS NULL",
        "DELETE FROM user_books WHERE user_id = $1",
        "DELETE FROM idempotent_answers WHERE user_id = $1",
        "DELETE FROM user_docs WHERE user_id = $1",
        "DELETE FROM relations WHERE from_id = $1 OR to_id = $1",
        "UPDATE import_jobs SET user_id = NULL WHERE user_id = $1",
    ] {
        exec(c, sql, &[&u]).await.map_err(pg)?;
    }
    exec(
        c,
        "UPDATE users SET username = $2, email = NULL, display_name = NULL, password_hash = '',
           is_admin = false, disabled_at = $3, token_epoch = 0, tokens_changed_at = $3
         WHERE id = $1",
        &[&u, &format!("\u{1}deleted:{u}"), &now.millis()],
    )
    .await?;
    exec(
        c,
        "INSERT INTO deleted_users (user_id, deleted_at) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET deleted_at = excluded.deleted_at",
        &[&u, &now.millis()],
    )
    .await?;
    if !gone.is_empty() {
        let mut kept = BTreeSet::new();
        for r in query(c, "SELECT meta FROM books", &[]).await? {
            let meta: BookMeta = serde_json::from_str(&col::<String>(&r, 0)?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
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

fn doc_row(r: &Row) -> Result<UserDoc, StoreError> {
    Ok(UserDoc {
        user_id: id_col(r, 0)?,
        id: id_col(r, 1)?,
        kind: DocKind::parse(&col::<String>(r, 2)?)
            .ok_or_else(|| StoreError::Corrupt("document kind".into()))?,
        book_id: col::<Option<String>>(r, 3)?
            .map(|b| parse_id(&b))
            .transpose()?,
        version: col::<i64>(r, 4)?.max(0) as u64,
        created_at: Timestamp::from_millis(col(r, 5)?),
        updated_at: Timestamp::from_millis(col(r, 6)?),
        deleted_at: col::<Option<i64>>(r, 7)?.map(Timestamp::from_millis),
        change_seq: col::<i64>(r, 8)?.max(0) as u64,
        body: col(r, 9)?,
    })
}

pub(super) async fn doc(
    c: &impl GenericClient,
    user: UserId,
    id: DocId,
) -> Result<Option<UserDoc>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {DOC_COLS} FROM user_docs WHERE user_id = $1 AND id = $2"),
        &[&user.to_string(), &id.to_string()],
    )
    .await?
    .as_ref()
    .map(doc_row)
    .transpose()
}

/// In a transaction: the user's change numbers are taken under a lock of the user's row, so
/// two writers of one user (an owner and a stale one) are serialized.
pub(super) async fn put_doc(c: &impl GenericClient, d: &UserDoc) -> Result<UserDoc, StoreError> {
    let (user, id) = (d.user_id.to_string(), d.id.to_string());
    exec(c, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user]).await?;
    let current = doc(c, d.user_id, d.id).await?;
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
    let seq: i64 = match query(
        c,
        "SELECT coalesce(max(change_seq), 0) + 1 FROM user_docs WHERE user_id = $1",
        &[&user],
    )
    .await?
    .first()
    {
        Some(r) => col(r, 0)?,
        None => 1,
    };
    let stored = UserDoc {
        change_seq: seq as u64,
        ..d.clone()
    };
    exec(
        c,
        &format!(
            "INSERT INTO user_docs ({DOC_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (user_id, id) DO UPDATE SET book_id = excluded.book_id,
               version = excluded.version, updated_at = excluded.updated_at,
               deleted_at = excluded.deleted_at, change_seq = excluded.change_seq,
               body = excluded.body"
        ),
        &[
            &user,
            &id,
            &stored.kind.as_str(),
            &stored.book_id.map(|b| b.to_string()),
            &(stored.version as i64),
            &stored.created_at.millis(),
            &stored.updated_at.millis(),
            &stored.deleted_at.map(|t| t.millis()),
            &seq,
            &stored.body,
        ],
    )
    .await?;
    Ok(stored)
}

pub(super) async fn docs(c: &impl GenericClient, q: &DocQuery) -> Result<Vec<UserDoc>, StoreError> {
    let book = q.book.map(|b| b.to_string());
    query(
        c,
        &format!(
            "SELECT {DOC_COLS} FROM user_docs WHERE user_id = $1 AND kind = $2 AND change_seq > $3
               AND ($4::TEXT IS NULL OR book_id = $4) AND ($5 OR deleted_at IS NULL)
             ORDER BY change_seq LIMIT $6"
        ),
        &[
            &q.user.to_string(),
            &q.kind.as_str(),
            &(q.after.min(i64::MAX as u64) as i64),
            &book,
            &q.deleted,
            &(q.limit.min(i64::MAX as usize) as i64),
        ],
    )
    .await?
    .iter()
    .map(doc_row)
    .collect()
}

fn relation_row(r: &Row) -> Result<Relation, StoreError> {
    Ok(Relation {
        from: id_col(r, 0)?,
        to: id_col(r, 1)?,
        kind: RelationKind::parse(&col::<String>(r, 2)?)
            .ok_or_else(|| StoreError::Corrupt("relation kind".into()))?,
        created_at: Timestamp::from_millis(col(r, 3)?),
    })
}

pub(super) async fn relate(c: &impl GenericClient, ops: &[RelationOp]) -> Result<(), StoreError> {
    for op in ops {
        match op {
            RelationOp::Put(r) => {
                exec(
                    c,
                    "INSERT INTO relations (from_id, to_id, kind, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[
                        &r.from.to_string(),
                        &r.to.to_string(),
                        &r.kind.as_str(),
                        &r.created_at.millis(),
                    ],
                )
                .await?;
            }
            RelationOp::Delete { from, to, kind } => {
                exec(
                    c,
                    "DELETE FROM relations WHERE from_id = $1 AND to_id = $2 AND kind = $3",
                    &[&from.to_string(), &to.to_string(), &kind.as_str()],
                )
                .await?;
            }
        }
    }
    Ok(())
}

pub(super) async fn relations_between(
    c: &impl GenericClient,
    a: UserId,
    b: UserId,
) -> Result<Vec<Relation>, StoreError> {
    query(
        c,
        "SELECT from_id, to_id, kind, created_at FROM relations
         WHERE (from_id = $1 AND to_id = $2) OR (from_id = $2 AND to_id = $1)",
        &[&a.to_string(), &b.to_string()],
    )
    .await?
    .iter()
    .map(relation_row)
    .collect()
}

pub(super) async fn relations_of(
    c: &impl GenericClient,
    user: UserId,
    kind: RelationKind,
    incoming: bool,
) -> Result<Vec<Related>, StoreError> {
    let (mine, other) = if incoming {
        ("to_id", "from_id")
    } else {
        ("from_id", "to_id")
    };
    query(
        c,
        &format!(
            "SELECT r.from_id, r.to_id, r.kind, r.created_at, u.username, u.display_name
             FROM relations r JOIN users u ON u.id = r.{other}
             WHERE r.{mine} = $1 AND r.kind = $2
               AND u.id NOT IN (SELECT user_id FROM deleted_users)
             ORDER BY r.created_at DESC, u.username"
        ),
        &[&user.to_string(), &kind.as_str()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Related {
            relation: relation_row(r)?,
            username: col(r, 4)?,
            display_name: col(r, 5)?,
        })
    })
    .collect()
}
