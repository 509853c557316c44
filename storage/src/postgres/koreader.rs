//! KOReader logins, the digest index and positions kept per (user, digest), on PostgreSQL.

use super::kobo::insert_device;
use super::rows::*;
use super::{exec, query, query_opt, unique};
use crate::error::StoreError;
use crate::ids::*;
use crate::records::*;
use crate::time::Timestamp;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

const LOGIN_COLS: &str = "username, device_id, user_id, key_hash, created_at";
const POSITION_COLS: &str =
    "user_id, document, progress, percentage, device, device_id, written_by, book_id, updated_at";

fn login_row(r: &Row) -> Result<KoreaderLogin, StoreError> {
    Ok(KoreaderLogin {
        username: col(r, 0)?,
        device_id: parse_id(&col::<String>(r, 1)?)?,
        user_id: parse_id(&col::<String>(r, 2)?)?,
        key_hash: col(r, 3)?,
        created_at: Timestamp::from_millis(col(r, 4)?),
    })
}

fn position_row(r: &Row) -> Result<KoreaderPosition, StoreError> {
    Ok(KoreaderPosition {
        user_id: parse_id(&col::<String>(r, 0)?)?,
        document: col(r, 1)?,
        progress: col(r, 2)?,
        percentage: col(r, 3)?,
        device: col(r, 4)?,
        device_id: col(r, 5)?,
        written_by: parse_id(&col::<String>(r, 6)?)?,
        book_id: col::<Option<String>>(r, 7)?
            .as_deref()
            .map(parse_id)
            .transpose()?,
        updated_at: Timestamp::from_millis(col(r, 8)?),
    })
}

pub(super) async fn create_koreader_device(
    c: &impl GenericClient,
    d: &Device,
    l: &KoreaderLogin,
) -> Result<(), StoreError> {
    insert_device(c, d).await?;
    exec(
        c,
        &format!("INSERT INTO koreader_logins ({LOGIN_COLS}) VALUES ($1, $2, $3, $4, $5)"),
        &[
            &l.username,
            &l.device_id.to_string(),
            &l.user_id.to_string(),
            &l.key_hash,
            &l.created_at.millis(),
        ],
    )
    .await
    .map_err(|e| unique(e, "koreader username"))?;
    Ok(())
}

pub(super) async fn koreader_login(
    c: &impl GenericClient,
    username: &str,
) -> Result<Option<KoreaderLogin>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {LOGIN_COLS} FROM koreader_logins WHERE username = $1"),
        &[&username],
    )
    .await?
    .as_ref()
    .map(login_row)
    .transpose()
}

pub(super) async fn koreader_logins(
    c: &impl GenericClient,
    user: UserId,
) -> Result<Vec<KoreaderLogin>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {LOGIN_COLS} FROM koreader_logins WHERE user_id = $1 ORDER BY created_at, username"
        ),
        &[&user.to_string()],
    )
    .await?
    .iter()
    .map(login_row)
    .collect()
}

/// Adds the book's digests to the index; none is ever removed (a device keeps the copy it
/// downloaded, and its digest, after the book's file or title changes).
pub(super) async fn index_digests(
    c: &impl GenericClient,
    book: &str,
    digests: &[String],
) -> Result<(), StoreError> {
    if digests.is_empty() {
        return Ok(());
    }
    exec(
        c,
        "INSERT INTO koreader_digests (digest, book_id) SELECT d, $2 FROM unnest($1::text[]) AS d
         ON CONFLICT DO NOTHING",
        &[&digests, &book],
    )
    .await?;
    Ok(())
}

pub(super) async fn koreader_books(
    c: &impl GenericClient,
    digest: &str,
) -> Result<Vec<BookId>, StoreError> {
    query(
        c,
        "SELECT book_id FROM koreader_digests WHERE digest = $1 ORDER BY book_id LIMIT 100",
        &[&digest],
    )
    .await?
    .iter()
    .map(|r| parse_id(&col::<String>(r, 0)?))
    .collect()
}

pub(super) async fn put_koreader_position(
    c: &impl GenericClient,
    p: &KoreaderPosition,
) -> Result<bool, StoreError> {
    let n = exec(
        c,
        &format!(
            "INSERT INTO koreader_positions ({POSITION_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (user_id, document) DO UPDATE SET progress = excluded.progress,
                 percentage = excluded.percentage, device = excluded.device,
                 device_id = excluded.device_id, written_by = excluded.written_by,
                 book_id = COALESCE(excluded.book_id, koreader_positions.book_id),
                 updated_at = excluded.updated_at
             WHERE excluded.percentage >= koreader_positions.percentage"
        ),
        &[
            &p.user_id.to_string(),
            &p.document,
            &p.progress,
            &p.percentage,
            &p.device,
            &p.device_id,
            &p.written_by.to_string(),
            &p.book_id.map(|b| b.to_string()),
            &p.updated_at.millis(),
        ],
    )
    .await?;
    Ok(n == 1)
}

pub(super) async fn koreader_position(
    c: &impl GenericClient,
    user: UserId,
    document: &str,
) -> Result<Option<KoreaderPosition>, StoreError> {
    query_opt(
        c,
        &format!(
            "SELECT {POSITION_COLS} FROM koreader_positions WHERE user_id = $1 AND document = $2"
        ),
        &[&user.to_string(), &document],
    )
    .await?
    .as_ref()
    .map(position_row)
    .transpose()
}

pub(super) async fn unattached_koreader_positions(
    c: &impl GenericClient,
    digests: &[String],
) -> Result<Vec<KoreaderPosition>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {POSITION_COLS} FROM koreader_positions
             WHERE document = ANY($1::text[]) AND book_id IS NULL LIMIT 1000"
        ),
        &[&digests],
    )
    .await?
    .iter()
    .map(position_row)
    .collect()
}

pub(super) async fn attach_koreader_position(
    c: &impl GenericClient,
    user: UserId,
    document: &str,
    book: BookId,
) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE koreader_positions SET book_id = $3 WHERE user_id = $1 AND document = $2",
        &[&user.to_string(), &document, &book.to_string()],
    )
    .await?;
    Ok(())
}
