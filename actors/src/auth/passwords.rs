//! argon2id password hashing. Hashing costs tens of milliseconds on purpose, so it runs on
//! the blocking pool, never on the async workers.

use crate::error::AppError;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::sync::OnceLock;
use tokio::sync::Semaphore;

/// Each hash holds ~19 MiB and a core for tens of milliseconds. Running one per core at
/// most keeps a burst of logins (or an attack) from exhausting memory and blocking threads.
fn permits() -> &'static Semaphore {
    static SEM: OnceLock<Semaphore> = OnceLock::new();
    SEM.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Semaphore::new(n)
    })
}

pub async fn hash(password: String) -> Result<String, AppError> {
    let _permit = permits()
        .acquire()
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
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
    let Ok(_permit) = permits().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || match PasswordHash::new(&phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    })
    .await
    .unwrap_or(false)
}
