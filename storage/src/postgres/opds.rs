//! Tokens in OPDS catalog URLs, on PostgreSQL.

use super::kobo::insert_device;
use super::rows::*;
use super::{exec, query, query_opt, unique};
use crate::error::StoreError;
use crate::ids::*;
use crate::records::*;
use crate::time::Timestamp;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

const COLS: &str = "device_id, user_id, token_hash, created_at";

fn token_row(r: &Row) -> Result<OpdsToken, StoreError> {
    Ok(OpdsToken {
        device_id: parse_id(&col::<String>(r, 0)?)?,
        user_id: parse_id(&col::<String>(r, 1)?)?,
        token_hash: col(r, 2)?,
        created_at: Timestamp::from_millis(col(r, 3)?),
    })
}

pub(super) async fn create_opds_device(
    c: &impl GenericClient,
    d: &Device,
    t: &OpdsToken,
) -> Result<(), StoreError> {
    insert_device(c, d).await?;
    exec(
        c,
        &format!("INSERT INTO opds_tokens ({COLS}) VALUES ($1, $2, $3, $4)"),
        &[
            &t.device_id.to_string(),
            &t.user_id.to_string(),
            &t.token_hash,
            &t.created_at.millis(),
        ],
    )
    .await
    .map_err(|e| unique(e, "opds token"))?;
    Ok(())
}

pub(super) async fn opds_token(
    c: &impl GenericClient,
    hash: &str,
) -> Result<Option<OpdsToken>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {COLS} FROM opds_tokens WHERE token_hash = $1"),
        &[&hash],
    )
    .await?
    .as_ref()
    .map(token_row)
    .transpose()
}

pub(super) async fn opds_tokens(
    c: &impl GenericClient,
    user: UserId,
) -> Result<Vec<OpdsToken>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {COLS} FROM opds_tokens WHERE user_id = $1 ORDER BY created_at, device_id"
        ),
        &[&user.to_string()],
    )
    .await?
    .iter()
    .map(token_row)
    .collect()
}
