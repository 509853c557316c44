//! argon2id password hashing. Hashing costs tens of milliseconds on purpose, so it runs on
//! the blocking pool, never on the async workers.

use crate::error::AppError;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

pub async fn hash(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| AppError::Unavailable(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| AppError::Unavailable(e.to_string()))?
}

/// Checks `password` against a PHC string; a malformed stored hash counts as a mismatch.
pub async fn verify(password: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || match PasswordHash::new(&phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    })
    .await
    .unwrap_or(false)
}
