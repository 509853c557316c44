//! Accounts: registration, login, token issue and rotation.

mod accounts;
mod passwords;
mod ratelimit;
mod tokens;

pub use accounts::{
    Accounts, AuthSettings, Cutoffs, Session, set_cutoff, validate_email, validate_password,
    validate_username,
};
pub use passwords::hash as hash_secret;
pub use ratelimit::RateLimiter;
pub use tokens::{JwtKeys, random_token, sha256_hex};
