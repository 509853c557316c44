//! Backend-neutral records. Validation lives in the constructors, so a record that exists is
//! a record that may be stored.

use crate::ids::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A reading position in percent. It cannot be NaN, negative or above 100.
#[derive(Clone, Copy, PartialEq, PartialOrd, Debug, Serialize)]
#[serde(transparent)]
pub struct Percent(f64);

impl Percent {
    pub const ZERO: Percent = Percent(0.0);
    pub const FULL: Percent = Percent(100.0);

    pub fn new(v: f64) -> Option<Percent> {
        (v.is_finite() && (0.0..=100.0).contains(&v)).then_some(Percent(v))
    }
    pub fn get(&self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Percent::new(v).ok_or_else(|| serde::de::Error::custom("must be between 0 and 100"))
    }
}

/// An opaque position inside a book (EPUB CFI, Kobo span id, KOReader xpointer, PDF page),
/// at most [`Locator::MAX_BYTES`] bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct Locator(String);

impl Locator {
    pub const MAX_BYTES: usize = 4096;
    pub fn new(s: String) -> Option<Locator> {
        (s.len() <= Self::MAX_BYTES).then_some(Locator(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Locator {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = String::deserialize(d)?;
        Locator::new(v).ok_or_else(|| serde::de::Error::custom("must be at most 4096 bytes"))
    }
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// Where a reader is with a book.
    ReadStatus { Unread = "unread", Reading = "reading", Finished = "finished" }
);
wire_enum!(
    /// What sort of device a reader registered.
    DeviceKind {
        Web = "web",
        Mobile = "mobile",
        Desktop = "desktop",
        Kobo = "kobo",
        Koreader = "koreader",
        Other = "other",
    }
);
wire_enum!(
    /// Personal libraries have one member; shared ones many.
    LibraryKind { Personal = "personal", Shared = "shared" }
);
wire_enum!(
    /// A member's role in a library. Owners and editors change books; readers only read.
    Role { Owner = "owner", Editor = "editor", Reader = "reader" }
);
wire_enum!(
    /// Why a progress write was not applied (or was a repeat).
    Reason { Duplicate = "duplicate", Behind = "behind", Stale = "stale" }
);

impl Role {
    pub fn can_edit(&self) -> bool {
        matches!(self, Role::Owner | Role::Editor)
    }
}

#[derive(Clone, PartialEq, Debug)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: Option<String>,
    /// PHC string of an argon2id hash.
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: Timestamp,
}

#[derive(Clone, PartialEq, Debug)]
pub struct Device {
    pub id: DeviceId,
    pub user_id: UserId,
    pub name: String,
    pub kind: DeviceKind,
    pub created_at: Timestamp,
}

#[derive(Clone, PartialEq, Debug)]
pub struct Library {
    pub id: LibraryId,
    pub name: String,
    pub kind: LibraryKind,
    pub owner_id: UserId,
    pub created_at: Timestamp,
}

#[derive(Clone, PartialEq, Debug)]
pub struct Membership {
    pub library_id: LibraryId,
    pub user_id: UserId,
    pub role: Role,
}

/// A book record. `version` starts at 1 and grows by one with every change, so that a
/// writer holding an old copy cannot overwrite a newer one.
#[derive(Clone, PartialEq, Debug)]
pub struct Book {
    pub id: BookId,
    pub library_id: LibraryId,
    pub title: String,
    pub authors: Vec<String>,
    pub language: Option<String>,
    pub identifiers: BTreeMap<String, String>,
    pub added_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set when deleted: the record stays as a tombstone so devices learn of the removal.
    pub deleted_at: Option<Timestamp>,
    pub version: u64,
}

/// A refresh token as stored: only its SHA-256, never the token itself.
#[derive(Clone, PartialEq, Debug)]
pub struct RefreshToken {
    pub hash: String,
    pub user_id: UserId,
    pub family_id: FamilyId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The canonical reading position of one user in one book.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ProgressState {
    pub book_id: BookId,
    pub percent: Percent,
    pub locator: Option<Locator>,
    pub status: ReadStatus,
    pub device_id: DeviceId,
    pub client_ts: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

/// The last position a device reported for a book, applied or not.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct DevicePosition {
    pub device_id: DeviceId,
    pub book_id: BookId,
    pub percent: Percent,
    pub locator: Option<Locator>,
    pub client_ts: Timestamp,
}

/// One received progress write, as appended to the user's event log (`progress_updated`).
/// Every write is logged, applied or not, so that its `event_id` answers the same way forever.
#[derive(Clone, PartialEq, Debug)]
pub struct ProgressEvent {
    /// Position in the user's log, starting at 1, without gaps.
    pub seq: u64,
    pub event_id: EventId,
    pub book_id: BookId,
    pub device_id: DeviceId,
    /// A fingerprint of the request body (its canonical form, hashed), to tell a retry
    /// (same body) from a reuse of the id with another body.
    pub body: String,
    pub applied: bool,
    pub reason: Option<Reason>,
    /// The book's state after this event (the new state when applied, else the current one).
    pub state: ProgressState,
    pub received_at: Timestamp,
}

/// Everything one progress write stores, in one atomic step.
#[derive(Clone, Debug)]
pub struct ProgressWrite {
    pub user_id: UserId,
    /// The user's log head the writer based its decision on; the store refuses the write if
    /// the head has moved (another owner wrote).
    pub expected_seq: u64,
    pub event: ProgressEvent,
    pub position: DevicePosition,
}

/// What `list_books` should return.
#[derive(Clone, Debug, Default)]
pub struct BookQuery {
    pub libraries: Vec<LibraryId>,
    /// Case-insensitive substring of the title or an author.
    pub q: Option<String>,
    /// Return books whose id sorts after this one.
    pub after: Option<BookId>,
    pub limit: usize,
}
