//! Shelves, the change feed of books, and Kobo devices' tokens, sync position and ledger.

use super::books::bump_changes;
use super::rows::*;
use crate::error::StoreError;
use crate::ids::*;
use crate::records::*;
use crate::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

type RowResult<T> = rusqlite::Result<Result<T, StoreError>>;

fn shelf_row(r: &Row<'_>) -> RowResult<Shelf> {
    let (id, user, name, books): (String, String, String, String) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let (created, updated, deleted, seq): (i64, i64, Option<i64>, i64) =
        (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
    let library: Option<String> = r.get(8)?;
    let public: bool = r.get(9)?;
    Ok((|| {
        Ok(Shelf {
            id: parse_id(&id)?,
            user_id: parse_id(&user)?,
            name,
            books: from_json(&books)?,
            created_at: Timestamp::from_millis(created),
            updated_at: Timestamp::from_millis(updated),
            deleted_at: deleted.map(Timestamp::from_millis),
            change_seq: seq as u64,
            library_id: library.as_deref().map(parse_id).transpose()?,
            public,
        })
    })())
}

pub(super) fn put_shelf(c: &Connection, s: &Shelf) -> Result<Shelf, StoreError> {
    let seq = bump_changes(c)?;
    let books = serde_json::to_string(&s.books).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let n = c
        .prepare_cached(
            "INSERT INTO shelves (id, user_id, name, books, created_at, updated_at, deleted_at, change_seq,
                 library_id, public)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, books = excluded.books,
                 updated_at = excluded.updated_at, deleted_at = excluded.deleted_at,
                 change_seq = excluded.change_seq, public = excluded.public
             WHERE shelves.change_seq = ?9",
        )?
        .execute(params![
        s.id.to_string(),
        s.user_id.to_string(),
        s.name,
        books,
        s.created_at.millis(),
        s.updated_at.millis(),
        s.deleted_at.map(|t| t.millis()),
        seq as i64,
        s.change_seq as i64,
        s.library_id.map(|l| l.to_string()),
        s.public
    ])?;
    if n != 1 {
        return Err(StoreError::VersionConflict {
            expected: s.change_seq,
            found: 0,
        });
    }
    Ok(Shelf {
        change_seq: seq,
        ..s.clone()
    })
}

pub(super) fn shelf(c: &Connection, id: ShelfId) -> Result<Option<Shelf>, StoreError> {
    c.prepare_cached(&format!("SELECT {SHELF_COLS} FROM shelves WHERE id = ?1"))?
        .query_row([id.to_string()], shelf_row)
        .optional()?
        .transpose()
}

pub(super) fn shelves(c: &Connection, user: UserId) -> Result<Vec<Shelf>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {SHELF_COLS} FROM shelves
         WHERE user_id = ?1 AND library_id IS NULL AND deleted_at IS NULL
         ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([user.to_string()], shelf_row)?;
    rows.map(|r| r?).collect()
}

pub(super) fn library_shelves(
    c: &Connection,
    libraries: &[String],
) -> Result<Vec<Shelf>, StoreError> {
    let libs = serde_json::Value::from(libraries.to_vec()).to_string();
    let mut st = c.prepare_cached(&format!(
        "SELECT {SHELF_COLS} FROM shelves
         WHERE library_id IN (SELECT value FROM json_each(?1)) AND deleted_at IS NULL
         ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([libs], shelf_row)?;
    rows.map(|r| r?).collect()
}

pub(super) fn shelves_changed(
    c: &Connection,
    user: UserId,
    libraries: &[String],
    after: u64,
    limit: usize,
) -> Result<Vec<Shelf>, StoreError> {
    let libs = serde_json::Value::from(libraries.to_vec()).to_string();
    let mut st = c.prepare_cached(&format!(
        "SELECT {SHELF_COLS} FROM shelves
         WHERE ((user_id = ?1 AND library_id IS NULL)
                OR library_id IN (SELECT value FROM json_each(?4)))
           AND change_seq > ?2
         ORDER BY change_seq LIMIT ?3"
    ))?;
    let rows = st.query_map(
        params![user.to_string(), after as i64, limit as i64, libs],
        shelf_row,
    )?;
    rows.map(|r| r?).collect()
}

pub(super) fn books_changed(
    c: &Connection,
    library: LibraryId,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, Book)>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {BOOK_COLS}, change_seq FROM books WHERE library_id = ?1 AND change_seq > ?2
         ORDER BY change_seq LIMIT ?3"
    ))?;
    let rows = st.query_map(
        params![library.to_string(), after as i64, limit as i64],
        |r| {
            let seq: i64 = r.get(11)?;
            Ok(book_row(r)?.map(|b| (seq as u64, b)))
        },
    )?;
    rows.map(|r| r?).collect()
}

fn ids_json<T: ToString>(ids: &[T]) -> String {
    let v: Vec<String> = ids.iter().map(ToString::to_string).collect();
    serde_json::Value::from(v).to_string()
}

pub(super) fn progress_states_of(
    c: &Connection,
    user: UserId,
    books: &[BookId],
) -> Result<Vec<ProgressState>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT state FROM progress_books WHERE user_id = ?1
         AND book_id IN (SELECT value FROM json_each(?2))",
    )?;
    let rows = st.query_map(params![user.to_string(), ids_json(books)], |r| {
        r.get::<_, String>(0)
    })?;
    rows.map(|r| from_json(&r?)).collect()
}

fn token_row(r: &Row<'_>) -> RowResult<KoboToken> {
    let (device, user, hash, created): (String, String, String, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    Ok((|| {
        Ok(KoboToken {
            device_id: parse_id(&device)?,
            user_id: parse_id(&user)?,
            token_hash: hash,
            created_at: Timestamp::from_millis(created),
        })
    })())
}

pub(super) fn insert_device(c: &Connection, d: &Device) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO devices (id, user_id, name, kind, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            d.id.to_string(),
            d.user_id.to_string(),
            d.name,
            d.kind.as_str(),
            d.created_at.millis()
        ],
    )
    .map_err(|e| super::map_unique(e, "device"))?;
    Ok(())
}

pub(super) fn create_kobo_device(
    c: &Connection,
    d: &Device,
    t: &KoboToken,
) -> Result<(), StoreError> {
    insert_device(c, d)?;
    c.execute(
        "INSERT INTO kobo_tokens (device_id, user_id, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            t.device_id.to_string(),
            t.user_id.to_string(),
            t.token_hash,
            t.created_at.millis()
        ],
    )?;
    Ok(())
}

pub(super) fn kobo_token(c: &Connection, hash: &str) -> Result<Option<KoboToken>, StoreError> {
    c.prepare_cached(
        "SELECT device_id, user_id, token_hash, created_at FROM kobo_tokens WHERE token_hash = ?1",
    )?
    .query_row([hash], token_row)
    .optional()?
    .transpose()
}

pub(super) fn kobo_tokens(c: &Connection, user: UserId) -> Result<Vec<KoboToken>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT device_id, user_id, token_hash, created_at FROM kobo_tokens WHERE user_id = ?1
         ORDER BY created_at, device_id",
    )?;
    let rows = st.query_map([user.to_string()], token_row)?;
    rows.map(|r| r?).collect()
}

pub(super) fn kobo_sync_state(
    c: &Connection,
    device: DeviceId,
) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT state FROM kobo_sync WHERE device_id = ?1")?
            .query_row([device.to_string()], |r| r.get(0))
            .optional()?,
    )
}

fn ledger_row(r: &Row<'_>) -> RowResult<KoboLedgerEntry> {
    let (book, library, fp, removed, archived): (String, String, String, bool, bool) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    Ok((|| {
        Ok(KoboLedgerEntry {
            book_id: parse_id(&book)?,
            library_id: parse_id(&library)?,
            fingerprint: fp,
            removed,
            archived,
        })
    })())
}

pub(super) fn kobo_ledger(
    c: &Connection,
    device: DeviceId,
    books: &[BookId],
) -> Result<Vec<KoboLedgerEntry>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT book_id, library_id, fingerprint, removed, archived FROM kobo_ledger
         WHERE device_id = ?1 AND book_id IN (SELECT value FROM json_each(?2))",
    )?;
    let rows = st.query_map(params![device.to_string(), ids_json(books)], ledger_row)?;
    rows.map(|r| r?).collect()
}

pub(super) fn kobo_ledger_outside(
    c: &Connection,
    device: DeviceId,
    libraries: &[LibraryId],
    limit: usize,
) -> Result<Vec<KoboLedgerEntry>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT book_id, library_id, fingerprint, removed, archived FROM kobo_ledger
         WHERE device_id = ?1 AND removed = 0
           AND library_id NOT IN (SELECT value FROM json_each(?2))
         LIMIT ?3",
    )?;
    let rows = st.query_map(
        params![device.to_string(), ids_json(libraries), limit as i64],
        ledger_row,
    )?;
    rows.map(|r| r?).collect()
}

pub(super) fn kobo_tags(c: &Connection, device: DeviceId) -> Result<Vec<ShelfId>, StoreError> {
    let mut st = c.prepare_cached("SELECT shelf_id FROM kobo_tags WHERE device_id = ?1")?;
    let rows = st.query_map([device.to_string()], |r| r.get::<_, String>(0))?;
    rows.map(|r| parse_id(&r?)).collect()
}

pub(super) fn save_kobo_sync(
    c: &Connection,
    device: DeviceId,
    w: &KoboSyncWrite,
) -> Result<(), StoreError> {
    let dev = device.to_string();
    if w.reset {
        c.execute("DELETE FROM kobo_ledger WHERE device_id = ?1", [&dev])?;
        c.execute("DELETE FROM kobo_tags WHERE device_id = ?1", [&dev])?;
    }
    let moved = match &w.expected {
        Some(prev) => c
            .prepare_cached("UPDATE kobo_sync SET state = ?2 WHERE device_id = ?1 AND state = ?3")?
            .execute(params![dev, w.state, prev])?,
        None => c
            .prepare_cached(
                "INSERT INTO kobo_sync (device_id, state) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?
            .execute(params![dev, w.state])?,
    };
    if moved != 1 {
        return Err(StoreError::VersionConflict {
            expected: 0,
            found: 0,
        });
    }
    let mut up = c.prepare_cached(
        "INSERT INTO kobo_ledger (device_id, book_id, library_id, fingerprint, removed, archived)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (device_id, book_id) DO UPDATE SET library_id = excluded.library_id,
             fingerprint = excluded.fingerprint, removed = excluded.removed,
             archived = excluded.archived",
    )?;
    for e in &w.ledger {
        up.execute(params![
            dev,
            e.book_id.to_string(),
            e.library_id.to_string(),
            e.fingerprint,
            e.removed,
            e.archived
        ])?;
    }
    for (shelf, present) in &w.tags {
        if *present {
            c.prepare_cached(
                "INSERT INTO kobo_tags (device_id, shelf_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?
            .execute(params![dev, shelf.to_string()])?;
        } else {
            c.prepare_cached("DELETE FROM kobo_tags WHERE device_id = ?1 AND shelf_id = ?2")?
                .execute(params![dev, shelf.to_string()])?;
        }
    }
    Ok(())
}

pub(super) fn set_kobo_archived(
    c: &Connection,
    device: DeviceId,
    book: BookId,
    archived: bool,
) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached(
            "UPDATE kobo_ledger SET archived = ?3 WHERE device_id = ?1 AND book_id = ?2",
        )?
        .execute(params![device.to_string(), book.to_string(), archived])?;
    Ok(n > 0)
}
