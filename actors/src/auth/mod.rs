//! Accounts: registration, login, token issue and rotation.

mod accounts;
mod passwords;
mod ratelimit;
mod tokens;

pub use accounts::{Accounts, AuthSettings, Session};
pub use passwords::hash as hash_secret;
pub use ratelimit::RateLimiter;
pub use tokens::{JwtKeys, random_token, sha256_hex};
