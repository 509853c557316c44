//! What a reader keeps about a book besides the position: status, dates, rating, review,
//! favourite and loans (`user_books`); and the stored answers of requests made idempotent by
//! an `Idempotency-Key`, so a retry is answered the same way from any node, after a restart.

use crate::ids::*;
use crate::records::wire_enum;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

wire_enum!(
    /// Where a reader is with a book, as they would say it on a reading site.
    BookStatus {
        WantToRead = "want_to_read",
        Reading = "reading",
        Finished = "finished",
        Abandoned = "abandoned",
    }
);
wire_enum!(
    /// Who set a status last: the reader by hand, or Dogear from their progress.
    StatusSource { Manual = "manual", Progress = "progress" }
);

/// A rating in half stars, 0.5 to 5: stored as the number of halves (1-10) so that 3.7
/// cannot exist.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Rating(u8);

impl Rating {
    pub fn from_halves(h: u8) -> Option<Rating> {
        (1..=10).contains(&h).then_some(Rating(h))
    }
    /// `None` unless `stars` is one of 0.5, 1, ..., 5.
    pub fn from_stars(stars: f64) -> Option<Rating> {
        let halves = stars * 2.0;
        if !halves.is_finite() || halves.fract() != 0.0 {
            return None;
        }
        Rating::from_halves(halves as u8).filter(|_| (1.0..=10.0).contains(&halves))
    }
    pub fn halves(&self) -> u8 {
        self.0
    }
    pub fn stars(&self) -> f64 {
        f64::from(self.0) / 2.0
    }
}

impl fmt::Display for Rating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.stars())
    }
}

impl Serialize for Rating {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.stars())
    }
}

impl<'de> Deserialize<'de> for Rating {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Rating::from_stars(v)
            .ok_or_else(|| serde::de::Error::custom("must be 0.5 to 5 in steps of 0.5"))
    }
}

/// One reader's record of one book. `version` is 0 for a record never stored (every field
/// empty) and grows by one with every write, so a writer holding an old copy cannot
/// overwrite a newer one.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct UserBook {
    pub user_id: UserId,
    pub book_id: BookId,
    pub status: Option<BookStatus>,
    pub status_source: Option<StatusSource>,
    /// When the status was set: by hand, the time the reader did it; from progress, the
    /// client time of the write that set it. A status set by hand wins over progress written
    /// before it, and gives way to progress written after it.
    pub status_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub rating: Option<Rating>,
    pub review: Option<String>,
    pub favourite: bool,
    /// Who has the (physical or lent) book, since when, and when it came back.
    pub loaned_to: Option<String>,
    pub loaned_at: Option<Timestamp>,
    pub returned_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub version: u64,
}

impl UserBook {
    /// The record of a book the reader has said nothing about.
    pub fn empty(user_id: UserId, book_id: BookId) -> UserBook {
        UserBook {
            user_id,
            book_id,
            status: None,
            status_source: None,
            status_at: None,
            started_at: None,
            finished_at: None,
            rating: None,
            review: None,
            favourite: false,
            loaned_to: None,
            loaned_at: None,
            returned_at: None,
            updated_at: Timestamp::from_millis(0),
            version: 0,
        }
    }

    /// Same content, whatever the version and write time.
    pub fn same_content(&self, other: &UserBook) -> bool {
        let strip = |b: &UserBook| UserBook {
            updated_at: Timestamp::from_millis(0),
            version: 0,
            ..b.clone()
        };
        strip(self) == strip(other)
    }
}

/// Filters of a book list on the caller's own records (`GET /v1/books?status=...`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MineFilter {
    pub user: Option<UserId>,
    pub status: Option<BookStatus>,
    pub favourite: Option<bool>,
    /// Rated (`true`) or not (`false`).
    pub rated: Option<bool>,
}

impl MineFilter {
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.favourite.is_none() && self.rated.is_none()
    }
}

/// The answer given to the first request with an `Idempotency-Key`, kept until `expires_at`
/// to answer its retries. Only a fingerprint of the request body is kept.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct IdempotentAnswer {
    pub user_id: UserId,
    pub key: String,
    /// What the request was (route and canonical body, hashed): the same key with another
    /// request is refused.
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

wire_enum!(
    /// Who sees a reader's profile: everyone signed in, their followers (anyone may follow),
    /// or followers they approved (following is a request).
    Visibility { Public = "public", Followers = "followers", Private = "private" }
);

impl Default for Visibility {
    /// Nothing is shown to anyone until the reader says so.
    fn default() -> Self {
        Visibility::Private
    }
}

wire_enum!(
    /// A relation from one reader to another.
    RelationKind { Follow = "follow", Request = "request", Block = "block" }
);

/// `from` follows `to`, asked to, or blocked them.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Relation {
    pub from: UserId,
    pub to: UserId,
    pub kind: RelationKind,
    pub created_at: Timestamp,
}

/// One change to the relations between readers (applied with others in one transaction).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum RelationOp {
    Put(Relation),
    Delete {
        from: UserId,
        to: UserId,
        kind: RelationKind,
    },
}

/// The other end of a relation, as lists show it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Related {
    pub relation: Relation,
    pub username: String,
    pub display_name: Option<String>,
}

wire_enum!(
    /// What a [`UserDoc`] is.
    DocKind { Note = "note", Todo = "todo", Annotation = "annotation" }
);

/// A reader's note, todo or annotation: a small document that apps may also keep offline and
/// sync (pull everything changed after a checkpoint, push changes on the version they were
/// made on). `body` is the JSON of the kind's fields, checked by the actors before it is
/// stored. Deletions stay as tombstones (`deleted_at`), so a device that was away learns of
/// them.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct UserDoc {
    pub user_id: UserId,
    pub kind: DocKind,
    pub id: DocId,
    pub book_id: Option<BookId>,
    /// 1 when made, one more with every change.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    /// The user's change number of its last write (set by the store): a checkpoint.
    pub change_seq: u64,
    pub body: String,
}

/// Which of a user's documents to read, in change order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocQuery {
    pub user: UserId,
    pub kind: DocKind,
    pub book: Option<BookId>,
    /// Those written after this change number.
    pub after: u64,
    /// With tombstones (a sync's pull) or without (a list).
    pub deleted: bool,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_are_half_stars() {
        for ok in [0.5, 1.0, 2.5, 5.0] {
            assert_eq!(Rating::from_stars(ok).map(|r| r.stars()), Some(ok));
        }
        for bad in [0.0, -0.5, 5.5, 3.7, f64::NAN, f64::INFINITY, 1e300, 0.25] {
            assert_eq!(Rating::from_stars(bad), None, "{bad}");
        }
        assert!(serde_json::from_str::<Rating>("4.5").is_ok());
        assert!(serde_json::from_str::<Rating>("7").is_err());
    }
}
