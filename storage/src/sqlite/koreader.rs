//! KOReader logins, the digest index and positions kept per (user, digest).

use super::kobo::insert_device;
use super::map_unique;
use super::rows::*;
use crate::error::StoreError;
use crate::ids::*;
use crate::records::*;
use crate::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

type RowResult<T> = rusqlite::Result<Result<T, StoreError>>;

const LOGIN_COLS: &str = "username, device_id, user_id, key_hash, created_at";
const POSITION_COLS: &str =
    "user_id, document, progress, percentage, device, device_id, written_by, book_id, updated_at";

fn login_row(r: &Row<'_>) -> RowResult<KoreaderLogin> {
    let (name, device, user, hash, created): (String, String, String, String, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    Ok((|| {
        Ok(KoreaderLogin {
            username: name,
            device_id: parse_id(&device)?,
            user_id: parse_id(&user)?,
            key_hash: hash,
            created_at: Timestamp::from_millis(created),
        })
    })())
}

fn position_row(r: &Row<'_>) -> RowResult<KoreaderPosition> {
    let (user, document, progress, percentage, device): (String, String, String, f64, String) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let (device_id, by, book, at): (Option<String>, String, Option<String>, i64) =
        (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?);
    Ok((|| {
        Ok(KoreaderPosition {
            user_id: parse_id(&user)?,
            document,
            progress,
            percentage,
            device,
            device_id,
            written_by: parse_id(&by)?,
            book_id: book.as_deref().map(parse_id).transpose()?,
            updated_at: Timestamp::from_millis(at),
        })
    })())
}

pub(super) fn create_koreader_device(
    c: &Connection,
    d: &Device,
    l: &KoreaderLogin,
) -> Result<(), StoreError> {
    insert_device(c, d)?;
    c.execute(
        &format!("INSERT INTO koreader_logins ({LOGIN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
        params![
            l.username,
            l.device_id.to_string(),
            l.user_id.to_string(),
            l.key_hash,
            l.created_at.millis()
        ],
    )
    .map_err(|e| map_unique(e, "koreader username"))?;
    Ok(())
}

pub(super) fn koreader_login(
    c: &Connection,
    username: &str,
) -> Result<Option<KoreaderLogin>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {LOGIN_COLS} FROM koreader_logins WHERE username = ?1"
    ))?
    .query_row([username], login_row)
    .optional()?
    .transpose()
}

pub(super) fn koreader_logins(
    c: &Connection,
    user: UserId,
) -> Result<Vec<KoreaderLogin>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {LOGIN_COLS} FROM koreader_logins WHERE user_id = ?1 ORDER BY created_at, username"
    ))?;
    let rows = st.query_map([user.to_string()], login_row)?;
    rows.map(|r| r?).collect()
}

/// Adds the book's digests to the index; none is ever removed (a device keeps the copy it
/// downloaded, and its digest, after the book's file or title changes).
pub(super) fn index_digests(
    c: &Connection,
    book: &str,
    digests: &[String],
) -> Result<(), StoreError> {
    for d in digests {
        c.prepare_cached(
            "INSERT INTO koreader_digests (digest, book_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![d, book])?;
    }
    Ok(())
}

pub(super) fn koreader_books(c: &Connection, digest: &str) -> Result<Vec<BookId>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT book_id FROM koreader_digests WHERE digest = ?1 ORDER BY book_id LIMIT 100",
    )?;
    let rows = st.query_map([digest], |r| r.get::<_, String>(0))?;
    rows.map(|r| parse_id(&r?)).collect()
}

pub(super) fn put_koreader_position(
    c: &Connection,
    p: &KoreaderPosition,
) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached(&format!(
            "INSERT INTO koreader_positions ({POSITION_COLS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (user_id, document) DO UPDATE SET progress = excluded.progress,
                 percentage = excluded.percentage, device = excluded.device,
                 device_id = excluded.device_id, written_by = excluded.written_by,
                 book_id = COALESCE(excluded.book_id, koreader_positions.book_id),
                 updated_at = excluded.updated_at
             WHERE excluded.percentage >= koreader_positions.percentage"
        ))?
        .execute(params![
            p.user_id.to_string(),
            p.document,
            p.progress,
            p.percentage,
            p.device,
            p.device_id,
            p.written_by.to_string(),
            p.book_id.map(|b| b.to_string()),
            p.updated_at.millis()
        ])?;
    Ok(n == 1)
}

pub(super) fn koreader_position(
    c: &Connection,
    user: UserId,
    document: &str,
) -> Result<Option<KoreaderPosition>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {POSITION_COLS} FROM koreader_positions WHERE user_id = ?1 AND document = ?2"
    ))?
    .query_row(params![user.to_string(), document], position_row)
    .optional()?
    .transpose()
}

pub(super) fn unattached_koreader_positions(
    c: &Connection,
    digests: &[String],
) -> Result<Vec<KoreaderPosition>, StoreError> {
    let mut out = Vec::new();
    let mut st = c.prepare_cached(&format!(
        "SELECT {POSITION_COLS} FROM koreader_positions WHERE document = ?1 AND book_id IS NULL
         LIMIT 1000"
    ))?;
    for d in digests {
        for r in st.query_map([d], position_row)? {
            out.push(r??);
        }
    }
    Ok(out)
}

pub(super) fn attach_koreader_position(
    c: &Connection,
    user: UserId,
    document: &str,
    book: BookId,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE koreader_positions SET book_id = ?3 WHERE user_id = ?1 AND document = ?2",
    )?
    .execute(params![user.to_string(), document, book.to_string()])?;
    Ok(())
}
