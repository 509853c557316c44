//! Shelves and Kobo devices' tokens, sync position and ledger on PostgreSQL.

use super::books::bump_changes;
use super::rows::*;
use super::{exec, json, query, query_opt, unique};
use crate::error::StoreError;
use crate::ids::*;
use crate::records::*;
use deadpool_postgres::GenericClient;

fn ids<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

pub(super) async fn put_shelf(c: &impl GenericClient, s: &Shelf) -> Result<Shelf, StoreError> {
    let seq = bump_changes(c).await?;
    let n = exec(
        c,
        "INSERT INTO shelves (id, user_id, name, books, created_at, updated_at, deleted_at, change_seq,
             library_id, public)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $11)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, books = excluded.books,
             updated_at = excluded.updated_at, deleted_at = excluded.deleted_at,
             change_seq = excluded.change_seq, public = excluded.public
         WHERE shelves.change_seq = $9",
        &[
            &s.id.to_string(),
            &s.user_id.to_string(),
            &s.name,
            &json(&s.books)?,
            &s.created_at.millis(),
            &s.updated_at.millis(),
            &s.deleted_at.map(|t| t.millis()),
            &seq,
            &(s.change_seq as i64),
            &s.library_id.map(|l| l.to_string()),
            &s.public,
        ],
    )
    .await?;
    if n != 1 {
        return Err(StoreError::VersionConflict {
            expected: s.change_seq,
            found: 0,
        });
    }
    Ok(Shelf {
        change_seq: seq as u64,
        ..s.clone()
    })
}

pub(super) async fn shelf(
    c: &impl GenericClient,
    id: ShelfId,
) -> Result<Option<Shelf>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {SHELF_COLS} FROM shelves WHERE id = $1"),
        &[&id.to_string()],
    )
    .await?
    .as_ref()
    .map(shelf_row)
    .transpose()
}

pub(super) async fn shelves(
    c: &impl GenericClient,
    user: UserId,
) -> Result<Vec<Shelf>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {SHELF_COLS} FROM shelves
             WHERE user_id = $1 AND library_id IS NULL AND deleted_at IS NULL
             ORDER BY created_at, id"
        ),
        &[&user.to_string()],
    )
    .await?
    .iter()
    .map(shelf_row)
    .collect()
}

pub(super) async fn library_shelves(
    c: &impl GenericClient,
    libraries: &[LibraryId],
) -> Result<Vec<Shelf>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {SHELF_COLS} FROM shelves
             WHERE library_id = ANY($1) AND deleted_at IS NULL
             ORDER BY created_at, id"
        ),
        &[&ids(libraries)],
    )
    .await?
    .iter()
    .map(shelf_row)
    .collect()
}

pub(super) async fn shelves_changed(
    c: &impl GenericClient,
    user: UserId,
    libraries: &[LibraryId],
    after: u64,
    limit: usize,
) -> Result<Vec<Shelf>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {SHELF_COLS} FROM shelves
             WHERE ((user_id = $1 AND library_id IS NULL) OR library_id = ANY($4))
               AND change_seq > $2
             ORDER BY change_seq LIMIT $3"
        ),
        &[
            &user.to_string(),
            &(after as i64),
            &(limit as i64),
            &ids(libraries),
        ],
    )
    .await?
    .iter()
    .map(shelf_row)
    .collect()
}

pub(super) async fn books_changed(
    c: &impl GenericClient,
    library: LibraryId,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, Book)>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {BOOK_COLS}, change_seq FROM books WHERE library_id = $1 AND change_seq > $2
             ORDER BY change_seq LIMIT $3"
        ),
        &[&library.to_string(), &(after as i64), &(limit as i64)],
    )
    .await?
    .iter()
    .map(|r| Ok((col::<i64>(r, 11)? as u64, book_row(r)?)))
    .collect()
}

pub(super) async fn progress_states_of(
    c: &impl GenericClient,
    user: UserId,
    books: &[BookId],
) -> Result<Vec<ProgressState>, StoreError> {
    query(
        c,
        "SELECT state FROM progress_books WHERE user_id = $1 AND book_id = ANY($2)",
        &[&user.to_string(), &ids(books)],
    )
    .await?
    .iter()
    .map(|r| from_json(col(r, 0)?))
    .collect()
}

pub(super) async fn insert_device(c: &impl GenericClient, d: &Device) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO devices (id, user_id, name, kind, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            &d.id.to_string(),
            &d.user_id.to_string(),
            &d.name,
            &d.kind.as_str(),
            &d.created_at.millis(),
        ],
    )
    .await
    .map_err(|e| unique(e, "device"))?;
    Ok(())
}

pub(super) async fn insert_kobo_token(
    c: &impl GenericClient,
    t: &KoboToken,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO kobo_tokens (device_id, user_id, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        &[
            &t.device_id.to_string(),
            &t.user_id.to_string(),
            &t.token_hash,
            &t.created_at.millis(),
        ],
    )
    .await
    .map_err(|e| unique(e, "kobo_token"))?;
    Ok(())
}

pub(super) async fn kobo_token(
    c: &impl GenericClient,
    hash: &str,
) -> Result<Option<KoboToken>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {TOKEN_COLS} FROM kobo_tokens WHERE token_hash = $1"),
        &[&hash],
    )
    .await?
    .as_ref()
    .map(token_row)
    .transpose()
}

pub(super) async fn kobo_tokens(
    c: &impl GenericClient,
    user: UserId,
) -> Result<Vec<KoboToken>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {TOKEN_COLS} FROM kobo_tokens WHERE user_id = $1 ORDER BY created_at, device_id"
        ),
        &[&user.to_string()],
    )
    .await?
    .iter()
    .map(token_row)
    .collect()
}

pub(super) async fn kobo_sync_state(
    c: &impl GenericClient,
    device: DeviceId,
) -> Result<Option<String>, StoreError> {
    query_opt(
        c,
        "SELECT state FROM kobo_sync WHERE device_id = $1",
        &[&device.to_string()],
    )
    .await?
    .as_ref()
    .map(|r| col(r, 0))
    .transpose()
}

pub(super) async fn kobo_ledger(
    c: &impl GenericClient,
    device: DeviceId,
    books: &[BookId],
) -> Result<Vec<KoboLedgerEntry>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {LEDGER_COLS} FROM kobo_ledger WHERE device_id = $1 AND book_id = ANY($2)"
        ),
        &[&device.to_string(), &ids(books)],
    )
    .await?
    .iter()
    .map(ledger_row)
    .collect()
}

pub(super) async fn kobo_ledger_outside(
    c: &impl GenericClient,
    device: DeviceId,
    libraries: &[LibraryId],
    limit: usize,
) -> Result<Vec<KoboLedgerEntry>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {LEDGER_COLS} FROM kobo_ledger WHERE device_id = $1 AND NOT removed
               AND NOT (library_id = ANY($2)) LIMIT $3"
        ),
        &[&device.to_string(), &ids(libraries), &(limit as i64)],
    )
    .await?
    .iter()
    .map(ledger_row)
    .collect()
}

pub(super) async fn kobo_tags(
    c: &impl GenericClient,
    device: DeviceId,
) -> Result<Vec<ShelfId>, StoreError> {
    query(
        c,
        "SELECT shelf_id FROM kobo_tags WHERE device_id = $1",
        &[&device.to_string()],
    )
    .await?
    .iter()
    .map(|r| parse_id(col(r, 0)?))
    .collect()
}

pub(super) async fn save_kobo_sync(
    c: &impl GenericClient,
    device: DeviceId,
    w: &KoboSyncWrite,
) -> Result<(), StoreError> {
    let dev = device.to_string();
    if w.reset {
        exec(c, "DELETE FROM kobo_ledger WHERE device_id = $1", &[&dev]).await?;
        exec(c, "DELETE FROM kobo_tags WHERE device_id = $1", &[&dev]).await?;
    }
    let moved =
        match &w.expected {
            Some(prev) => {
                exec(
                    c,
                    "UPDATE kobo_sync SET state = $2 WHERE device_id = $1 AND state = $3",
                    &[&dev, &w.state, prev],
                )
                .await?
            }
            None => exec(
                c,
                "INSERT INTO kobo_sync (device_id, state) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&dev, &w.state],
            )
            .await?,
        };
    if moved != 1 {
        return Err(StoreError::VersionConflict {
            expected: 0,
            found: 0,
        });
    }
    for e in &w.ledger {
        exec(
            c,
            "INSERT INTO kobo_ledger (device_id, book_id, library_id, fingerprint, removed, archived)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (device_id, book_id) DO UPDATE SET library_id = excluded.library_id,
                 fingerprint = excluded.fingerprint, removed = excluded.removed,
                 archived = excluded.archived",
            &[
                &dev,
                &e.book_id.to_string(),
                &e.library_id.to_string(),
                &e.fingerprint,
                &e.removed,
                &e.archived,
            ],
        )
        .await?;
    }
    for (shelf, present) in &w.tags {
        let sql = if *present {
            "INSERT INTO kobo_tags (device_id, shelf_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM kobo_tags WHERE device_id = $1 AND shelf_id = $2"
        };
        exec(c, sql, &[&dev, &shelf.to_string()]).await?;
    }
    Ok(())
}

pub(super) async fn set_kobo_archived(
    c: &impl GenericClient,
    device: DeviceId,
    book: BookId,
    archived: bool,
) -> Result<bool, StoreError> {
    let n = exec(
        c,
        "UPDATE kobo_ledger SET archived = $3 WHERE device_id = $1 AND book_id = $2",
        &[&device.to_string(), &book.to_string(), &archived],
    )
    .await?;
    Ok(n > 0)
}
