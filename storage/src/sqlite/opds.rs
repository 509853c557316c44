//! Tokens in OPDS catalog URLs.

use super::kobo::insert_device;
use super::map_unique;
use super::rows::*;
use crate::error::StoreError;
use crate::ids::*;
use crate::records::*;
use crate::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

const COLS: &str = "device_id, user_id, token_hash, created_at";

fn token_row(r: &Row<'_>) -> rusqlite::Result<Result<OpdsToken, StoreError>> {
    let (device, user, hash, created): (String, String, String, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    Ok((|| {
        Ok(OpdsToken {
            device_id: parse_id(&device)?,
            user_id: parse_id(&user)?,
            token_hash: hash,
            created_at: Timestamp::from_millis(created),
        })
    })())
}

pub(super) fn create_opds_device(
    c: &Connection,
    d: &Device,
    t: &OpdsToken,
) -> Result<(), StoreError> {
    insert_device(c, d)?;
    c.execute(
        &format!("INSERT INTO opds_tokens ({COLS}) VALUES (?1, ?2, ?3, ?4)"),
        params![
            t.device_id.to_string(),
            t.user_id.to_string(),
            t.token_hash,
            t.created_at.millis()
        ],
    )
    .map_err(|e| map_unique(e, "opds token"))?;
    Ok(())
}

pub(super) fn opds_token(c: &Connection, hash: &str) -> Result<Option<OpdsToken>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM opds_tokens WHERE token_hash = ?1"
    ))?
    .query_row([hash], token_row)
    .optional()?
    .transpose()
}

pub(super) fn opds_tokens(c: &Connection, user: UserId) -> Result<Vec<OpdsToken>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM opds_tokens WHERE user_id = ?1 ORDER BY created_at, device_id"
    ))?;
    let rows = st.query_map([user.to_string()], token_row)?;
    rows.map(|r| r?).collect()
}
