//! Row mappers: one per record. Each returns `Result<Result<T, StoreError>>` so that a row
//! SQLite could read but we cannot decode is reported as corrupt, not as a SQL error.

use crate::error::StoreError;
use crate::records::*;
pub(crate) use crate::sql::*;
use crate::time::Timestamp;
use rusqlite::Row;
use std::str::FromStr;

pub(super) type RowResult<T> = rusqlite::Result<Result<T, StoreError>>;

pub(super) fn parse_id<T: FromStr>(s: &str) -> Result<T, StoreError> {
    T::from_str(s).map_err(|_| StoreError::Corrupt(format!("bad id {s:?}")))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn parse_enum<T>(s: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown value {s:?}")))
}

pub(super) fn user_row(r: &Row<'_>) -> RowResult<User> {
    let id: String = r.get(0)?;
    let created: i64 = r.get(5)?;
    let (username, email, password_hash, is_admin) = (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let (display_name, epoch, disabled): (Option<String>, i64, Option<i64>) =
        (r.get(6)?, r.get(7)?, r.get(8)?);
    let visibility: String = r.get(9)?;
    Ok((|| {
        Ok(User {
            id: parse_id(&id)?,
            username,
            email,
            password_hash,
            is_admin,
            created_at: Timestamp::from_millis(created),
            display_name,
            token_epoch: epoch.max(0) as u64,
            disabled_at: disabled.map(Timestamp::from_millis),
            visibility: parse_enum(&visibility, crate::reading::Visibility::parse)?,
        })
    })())
}

pub(super) fn device_row(r: &Row<'_>) -> RowResult<Device> {
    let (id, user, name, kind, created): (String, String, String, String, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    Ok((|| {
        Ok(Device {
            id: parse_id(&id)?,
            user_id: parse_id(&user)?,
            name,
            kind: parse_enum(&kind, DeviceKind::parse)?,
            created_at: Timestamp::from_millis(created),
        })
    })())
}

pub(super) fn library_row(r: &Row<'_>) -> RowResult<Library> {
    let (id, name, kind, owner, created): (String, String, String, String, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let pending: Option<String> = r.get(5)?;
    Ok((|| {
        Ok(Library {
            id: parse_id(&id)?,
            name,
            kind: parse_enum(&kind, LibraryKind::parse)?,
            owner_id: parse_id(&owner)?,
            created_at: Timestamp::from_millis(created),
            pending_owner: pending.as_deref().map(parse_id).transpose()?,
        })
    })())
}

pub(super) fn membership_row(r: &Row<'_>) -> RowResult<Membership> {
    let (lib, user, role): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
    Ok((|| {
        Ok(Membership {
            library_id: parse_id(&lib)?,
            user_id: parse_id(&user)?,
            role: parse_enum(&role, Role::parse)?,
        })
    })())
}

pub(super) fn book_row(r: &Row<'_>) -> RowResult<Book> {
    let id: String = r.get(0)?;
    let lib: String = r.get(1)?;
    let title: String = r.get(2)?;
    let authors: String = r.get(3)?;
    let language: Option<String> = r.get(4)?;
    let identifiers: String = r.get(5)?;
    let added: i64 = r.get(6)?;
    let updated: i64 = r.get(7)?;
    let deleted: Option<i64> = r.get(8)?;
    let version: i64 = r.get(9)?;
    let meta: String = r.get(10)?;
    Ok((|| {
        Ok(Book {
            id: parse_id(&id)?,
            library_id: parse_id(&lib)?,
            title,
            authors: from_json(&authors)?,
            language,
            identifiers: from_json(&identifiers)?,
            added_at: Timestamp::from_millis(added),
            updated_at: Timestamp::from_millis(updated),
            deleted_at: deleted.map(Timestamp::from_millis),
            version: version as u64,
            meta: from_json(&meta)?,
        })
    })())
}

pub(super) fn job_row(r: &Row<'_>) -> RowResult<ImportJob> {
    let id: String = r.get(0)?;
    let lib: String = r.get(1)?;
    let user: Option<String> = r.get(2)?;
    let source: String = r.get(3)?;
    let source_key: Option<String> = r.get(4)?;
    let path: String = r.get(5)?;
    let filename: String = r.get(6)?;
    let staged: bool = r.get(7)?;
    let state: String = r.get(8)?;
    let attempts: i64 = r.get(9)?;
    let run_at: i64 = r.get(10)?;
    let book: Option<String> = r.get(11)?;
    let dup: Option<String> = r.get(12)?;
    let error: Option<String> = r.get(13)?;
    let warnings: String = r.get(14)?;
    let created: i64 = r.get(15)?;
    let updated: i64 = r.get(16)?;
    let node: Option<String> = r.get(17)?;
    Ok((|| {
        Ok(ImportJob {
            id: parse_id(&id)?,
            library_id: parse_id(&lib)?,
            user_id: user.as_deref().map(parse_id).transpose()?,
            source: parse_enum(&source, BookSource::parse)?,
            source_key,
            path,
            filename,
            staged,
            state: parse_enum(&state, JobState::parse)?,
            attempts: attempts as u32,
            run_at: Timestamp::from_millis(run_at),
            book_id: book.as_deref().map(parse_id).transpose()?,
            duplicate_of: dup.as_deref().map(parse_id).transpose()?,
            error: error.as_deref().map(from_json).transpose()?,
            warnings: from_json(&warnings)?,
            created_at: Timestamp::from_millis(created),
            updated_at: Timestamp::from_millis(updated),
            node,
        })
    })())
}

pub(super) fn source_row(r: &Row<'_>) -> RowResult<SourceFile> {
    let source: String = r.get(0)?;
    let path: String = r.get(1)?;
    let lib: String = r.get(2)?;
    let hash: String = r.get(3)?;
    let size: i64 = r.get(4)?;
    let mtime: i64 = r.get(5)?;
    let book: Option<String> = r.get(6)?;
    Ok((|| {
        Ok(SourceFile {
            source,
            path,
            library_id: parse_id(&lib)?,
            hash,
            size: size as u64,
            mtime,
            book_id: book.as_deref().map(parse_id).transpose()?,
        })
    })())
}
