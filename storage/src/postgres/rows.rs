//! Row mappers: one per record. Columns are selected in the order of the `*_COLS` constants,
//! which are the same lists as SQLite's, so both backends read records the same way.

use crate::error::StoreError;
use crate::ids::*;
use crate::records::*;
pub(crate) use crate::sql::*;
use crate::time::Timestamp;
use std::str::FromStr;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

pub(super) const TOKEN_COLS: &str = "device_id, user_id, token_hash, created_at";
pub(super) const LEDGER_COLS: &str = "book_id, library_id, fingerprint, removed, archived";

/// One column, or `Corrupt` naming it: a row PostgreSQL returned but Dogear cannot read is a
/// damaged store, not an outage.
pub(super) fn col<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, StoreError> {
    r.try_get(i)
        .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
}

pub(super) fn parse_id<T: FromStr>(s: &str) -> Result<T, StoreError> {
    T::from_str(s).map_err(|_| StoreError::Corrupt(format!("bad id {s:?}")))
}

pub(super) fn id_col<T: FromStr>(r: &Row, i: usize) -> Result<T, StoreError> {
    parse_id(col::<&str>(r, i)?)
}

pub(super) fn opt_id_col<T: FromStr>(r: &Row, i: usize) -> Result<Option<T>, StoreError> {
    col::<Option<&str>>(r, i)?.map(parse_id).transpose()
}

fn time_col(r: &Row, i: usize) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_millis(col::<i64>(r, i)?))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn enum_col<T>(r: &Row, i: usize, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    let s: &str = col(r, i)?;
    parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown value {s:?}")))
}

pub(super) fn user_row(r: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: id_col(r, 0)?,
        username: col(r, 1)?,
        email: col(r, 2)?,
        password_hash: col(r, 3)?,
        is_admin: col(r, 4)?,
        created_at: time_col(r, 5)?,
        display_name: col(r, 6)?,
        token_epoch: col::<i64>(r, 7)?.max(0) as u64,
        disabled_at: col::<Option<i64>>(r, 8)?.map(Timestamp::from_millis),
        visibility: crate::reading::Visibility::parse(&col::<String>(r, 9)?)
            .ok_or_else(|| StoreError::Corrupt("visibility".into()))?,
    })
}

pub(super) fn device_row(r: &Row) -> Result<Device, StoreError> {
    Ok(Device {
        id: id_col(r, 0)?,
        user_id: id_col(r, 1)?,
        name: col(r, 2)?,
        kind: enum_col(r, 3, DeviceKind::parse)?,
        created_at: time_col(r, 4)?,
    })
}

pub(super) fn library_row(r: &Row) -> Result<Library, StoreError> {
    Ok(Library {
        id: id_col(r, 0)?,
        name: col(r, 1)?,
        kind: enum_col(r, 2, LibraryKind::parse)?,
        owner_id: id_col(r, 3)?,
        created_at: time_col(r, 4)?,
        pending_owner: opt_id_col(r, 5)?,
    })
}

pub(super) fn membership_row(r: &Row) -> Result<Membership, StoreError> {
    Ok(Membership {
        library_id: id_col(r, 0)?,
        user_id: id_col(r, 1)?,
        role: enum_col(r, 2, Role::parse)?,
    })
}

pub(super) fn book_row(r: &Row) -> Result<Book, StoreError> {
    Ok(Book {
        id: id_col(r, 0)?,
        library_id: id_col(r, 1)?,
        title: col(r, 2)?,
        authors: from_json(col(r, 3)?)?,
        language: col(r, 4)?,
        identifiers: from_json(col(r, 5)?)?,
        added_at: time_col(r, 6)?,
        updated_at: time_col(r, 7)?,
        deleted_at: col::<Option<i64>>(r, 8)?.map(Timestamp::from_millis),
        version: col::<i64>(r, 9)? as u64,
        meta: from_json(col(r, 10)?)?,
    })
}

pub(super) fn job_row(r: &Row) -> Result<ImportJob, StoreError> {
    Ok(ImportJob {
        id: id_col(r, 0)?,
        library_id: id_col(r, 1)?,
        user_id: opt_id_col(r, 2)?,
        source: enum_col(r, 3, BookSource::parse)?,
        source_key: col(r, 4)?,
        path: col(r, 5)?,
        filename: col(r, 6)?,
        staged: col(r, 7)?,
        state: enum_col(r, 8, JobState::parse)?,
        attempts: col::<i64>(r, 9)? as u32,
        run_at: time_col(r, 10)?,
        book_id: opt_id_col(r, 11)?,
        duplicate_of: opt_id_col(r, 12)?,
        error: col::<Option<&str>>(r, 13)?.map(from_json).transpose()?,
        warnings: from_json(col(r, 14)?)?,
        created_at: time_col(r, 15)?,
        updated_at: time_col(r, 16)?,
        node: col(r, 17)?,
    })
}

pub(super) fn source_row(r: &Row) -> Result<SourceFile, StoreError> {
    Ok(SourceFile {
        source: col(r, 0)?,
        path: col(r, 1)?,
        library_id: id_col(r, 2)?,
        hash: col(r, 3)?,
        size: col::<i64>(r, 4)? as u64,
        mtime: col(r, 5)?,
        book_id: opt_id_col(r, 6)?,
    })
}

pub(super) fn event_row(r: &Row) -> Result<ProgressEvent, StoreError> {
    Ok(ProgressEvent {
        seq: col::<i64>(r, 0)? as u64,
        event_id: id_col::<EventId>(r, 1)?,
        book_id: id_col(r, 2)?,
        device_id: id_col(r, 3)?,
        body: col(r, 4)?,
        applied: col(r, 5)?,
        reason: col::<Option<&str>>(r, 6)?
            .map(|s| Reason::parse(s).ok_or_else(|| StoreError::Corrupt(format!("reason {s:?}"))))
            .transpose()?,
        state: from_json(col(r, 7)?)?,
        received_at: time_col(r, 8)?,
    })
}

pub(super) fn shelf_row(r: &Row) -> Result<Shelf, StoreError> {
    Ok(Shelf {
        id: id_col(r, 0)?,
        user_id: id_col(r, 1)?,
        name: col(r, 2)?,
        books: from_json(col(r, 3)?)?,
        created_at: time_col(r, 4)?,
        updated_at: time_col(r, 5)?,
        deleted_at: col::<Option<i64>>(r, 6)?.map(Timestamp::from_millis),
        change_seq: col::<i64>(r, 7)? as u64,
        library_id: opt_id_col(r, 8)?,
        public: col(r, 9)?,
    })
}

pub(super) fn token_row(r: &Row) -> Result<KoboToken, StoreError> {
    Ok(KoboToken {
        device_id: id_col(r, 0)?,
        user_id: id_col(r, 1)?,
        token_hash: col(r, 2)?,
        created_at: time_col(r, 3)?,
    })
}

pub(super) fn ledger_row(r: &Row) -> Result<KoboLedgerEntry, StoreError> {
    Ok(KoboLedgerEntry {
        book_id: id_col(r, 0)?,
        library_id: id_col(r, 1)?,
        fingerprint: col(r, 2)?,
        removed: col(r, 3)?,
        archived: col(r, 4)?,
    })
}
