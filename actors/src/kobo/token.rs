//! Kobo device tokens: the secret in the path of every request a Kobo makes.

use crate::error::AppError;

/// 32 random bytes as 64 lowercase hex digits: path-safe, and long enough that guessing
/// one is hopeless. Only its SHA-256 is stored.
pub fn generate() -> Result<String, AppError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| AppError::Unavailable(format!("getrandom: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `s` could be a token at all (checked before any look-up).
pub fn well_formed(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn hash(token: &str) -> String {
    crate::auth::sha256_hex(token)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_long_random_hex() {
        let a = super::generate().unwrap();
        let b = super::generate().unwrap();
        assert!(super::well_formed(&a) && super::well_formed(&b));
        assert_ne!(a, b);
        assert!(!super::well_formed("00"));
        assert_ne!(super::hash(&a), a);
    }
}
