//! Access tokens (JWT, HS256) and refresh tokens (random, stored only as SHA-256).

use crate::error::AppError;
use base64::Engine;
use dogear_storage::{BookId, Timestamp, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
    typ: String,
    /// The user's token epoch when issued: a password change or a disabled account raises
    /// the epoch, and tokens of an earlier one are refused. Tokens issued before Dogear
    /// had epochs are epoch 0.
    #[serde(default)]
    ep: u64,
    /// The one book a reader token opens (typ `reader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    book: Option<String>,
}

/// The signing secret, held once. `Debug` never shows it.
#[derive(Clone)]
pub struct JwtKeys {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
    verified: Arc<Mutex<HashMap<Box<str>, Verified>>>,
}

/// What a verified access token says, kept by the token's exact text.
#[derive(Clone, Copy)]
struct Verified {
    user: UserId,
    epoch: u64,
    exp: i64,
}

/// Access tokens kept verified at most; the cache starts over when full.
///
/// Why: every request of a device carries the same token for its lifetime, and checking
/// its signature and parsing its claims took a few per cent of a progress write's CPU. A
/// token is kept only after it verified, by its whole text, so a token differing in any
/// byte is verified afresh; its expiry is checked again on every use, and the token epoch
/// (password changes, disabled accounts) is checked by the caller as before.
const VERIFIED_CAPACITY: usize = 8192;

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(<redacted>)")
    }
}

impl JwtKeys {
    pub fn from_secret(secret: &[u8]) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
            verified: Arc::default(),
        }
    }

    pub fn issue(
        &self,
        user: UserId,
        epoch: u64,
        now: Timestamp,
        ttl_secs: i64,
    ) -> Result<String, AppError> {
        self.sign(user, "access", None, epoch, now, ttl_secs)
    }

    fn sign(
        &self,
        user: UserId,
        typ: &str,
        book: Option<BookId>,
        epoch: u64,
        now: Timestamp,
        ttl_secs: i64,
    ) -> Result<String, AppError> {
        let iat = now.millis() / 1000;
        let claims = Claims {
            sub: user.to_string(),
            iat,
            exp: iat + ttl_secs,
            typ: typ.into(),
            ep: epoch,
            book: book.map(|b| b.to_string()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .map_err(|e| AppError::Unavailable(format!("jwt encode: {e}")))
    }

    /// The user a valid, unexpired access token speaks for, and the token epoch it was
    /// issued in.
    pub fn verify(&self, token: &str) -> Result<(UserId, u64), AppError> {
        self.verify_at(token, Timestamp::now().millis() / 1000)
    }

    /// [`JwtKeys::verify`] at `now` (seconds) for a token verified before; a new token is
    /// checked against the clock by `jsonwebtoken`.
    fn verify_at(&self, token: &str, now: i64) -> Result<(UserId, u64), AppError> {
        let invalid = || AppError::Unauthorized(Cow::Borrowed("invalid or expired access token"));
        let known = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(token).copied());
        if let Some(v) = known {
            // As `jsonwebtoken` with no leeway: expired once `exp` is in the past.
            return if v.exp < now {
                Err(invalid())
            } else {
                Ok((v.user, v.epoch))
            };
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.dec, &self.validation)
            .map_err(|_| invalid())?;
        if data.claims.typ != "access" {
            return Err(invalid());
        }
        let user = data.claims.sub.parse().map_err(|_| invalid())?;
        if let Ok(mut m) = self.verified.lock() {
            if m.len() >= VERIFIED_CAPACITY {
                m.clear();
            }
            m.insert(
                token.into(),
                Verified {
                    user,
                    epoch: data.claims.ep,
                    exp: data.claims.exp,
                },
            );
        }
        Ok((user, data.claims.ep))
    }
}

impl JwtKeys {
    /// A token that opens one book's parts in the web reader and nothing else: it travels
    /// in the URL of the reader's frame (a frame cannot send an `Authorization` header), so
    /// it is not an access token and cannot be used as one.
    pub fn issue_reader(
        &self,
        user: UserId,
        book: BookId,
        epoch: u64,
        now: Timestamp,
        ttl_secs: i64,
    ) -> Result<String, AppError> {
        self.sign(user, "reader", Some(book), epoch, now, ttl_secs)
    }

    /// The user, book and token epoch of a valid, unexpired reader token.
    pub fn verify_reader(&self, token: &str) -> Result<(UserId, BookId, u64), AppError> {
        let refused = || AppError::NotFound(Cow::Borrowed("book"));
        let data = jsonwebtoken::decode::<Claims>(token, &self.dec, &self.validation)
            .map_err(|_| refused())?;
        if data.claims.typ != "reader" {
            return Err(refused());
        }
        let user = data.claims.sub.parse().map_err(|_| refused())?;
        let book = data
            .claims
            .book
            .as_deref()
            .and_then(|b| b.parse().ok())
            .ok_or_else(refused)?;
        Ok((user, book, data.claims.ep))
    }
}

/// 32 random bytes, base64url: a refresh token or a secret.
pub fn random_token() -> Result<String, AppError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| AppError::Unavailable(format!("getrandom: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

pub fn sha256_hex(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_expire() {
        let keys = JwtKeys::from_secret(b"0123456789abcdef0123456789abcdef");
        let u = UserId::generate();
        let t = keys.issue(u, 7, Timestamp::now(), 60).unwrap();
        assert_eq!(keys.verify(&t).unwrap(), (u, 7));
        let old = keys
            .issue(u, 0, Timestamp::now().plus_secs(-120), 60)
            .unwrap();
        assert!(keys.verify(&old).is_err(), "expired");
        let other = JwtKeys::from_secret(b"another secret, another server!!");
        assert!(other.verify(&t).is_err(), "forged");
        assert!(keys.verify("not.a.jwt").is_err());
    }

    /// A token verified once is answered from memory, yet still expires on time, and a
    /// token that differs from it in any byte (another signature) is checked afresh.
    #[test]
    fn verified_tokens_still_expire_and_forgeries_still_fail() {
        let keys = JwtKeys::from_secret(b"0123456789abcdef0123456789abcdef");
        let u = UserId::generate();
        let now = Timestamp::now();
        let t = keys.issue(u, 3, now, 60).unwrap();
        let secs = now.millis() / 1000;
        assert_eq!(keys.verify_at(&t, secs).unwrap(), (u, 3));
        assert!(keys.verified.lock().unwrap().contains_key(t.as_str()));
        assert_eq!(
            keys.verify_at(&t, secs + 60).unwrap(),
            (u, 3),
            "last second"
        );
        assert!(
            keys.verify_at(&t, secs + 61).is_err(),
            "expired though kept"
        );
        // The same claims signed with another secret: not the kept token.
        let forged = JwtKeys::from_secret(b"another secret, another server!!")
            .issue(u, 3, now, 60)
            .unwrap();
        assert_eq!(forged.split('.').next(), t.split('.').next());
        assert!(keys.verify_at(&forged, secs).is_err());
        // Reader tokens are never access tokens, kept or not.
        let reader = keys
            .issue_reader(u, BookId::generate(), 3, now, 60)
            .unwrap();
        assert!(keys.verify_at(&reader, secs).is_err());
        assert!(keys.verify_at(&reader, secs).is_err());
    }
}
