//! A reader's own record of a book (`user_books`): status, dates, rating, review, favourite
//! and loans. The user's actor owns these records, as it owns progress, so a status set by
//! hand and a status set by a progress write are decided in one order. The rules are pure
//! functions here; the actor applies them (`user_actor`).
//!
//! Status from progress: the first applied progress makes a book `reading`, reaching 100 %
//! (or a device saying "finished": a Kobo's status, KOReader at 100 %) makes it `finished`,
//! unless the reader set the status by hand after that write was made (by its client time).

use crate::error::AppError;
use crate::messages::{MineOp, UserOp, UserReply};
use crate::placement::reply;
use dogear_storage::{
    BookId, BookStatus, Percent, ProgressState, Rating, ReadStatus, StatusSource, Timestamp,
    UserBook, UserId,
};
use serde::{Deserialize, Serialize};

/// The longest review kept, in bytes.
pub const MAX_REVIEW: usize = 64 * 1024;
/// The most items one batch takes.
pub const MAX_BATCH: usize = 500;

/// A change to a record: each field absent (`None`: unchanged), cleared (`Some(None)`) or
/// set. A `PUT` is a patch with every field given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MinePatch {
    pub status: Option<Option<BookStatus>>,
    pub started_at: Option<Option<Timestamp>>,
    pub finished_at: Option<Option<Timestamp>>,
    pub rating: Option<Option<Rating>>,
    pub review: Option<Option<String>>,
    pub favourite: Option<bool>,
    pub loaned_to: Option<Option<String>>,
    pub loaned_at: Option<Option<Timestamp>>,
    pub returned_at: Option<Option<Timestamp>>,
}

impl MinePatch {
    /// A whole record as a patch (`PUT`): what is not given is cleared.
    #[allow(clippy::too_many_arguments)]
    pub fn full(p: MinePatch) -> MinePatch {
        MinePatch {
            status: Some(p.status.flatten()),
            started_at: Some(p.started_at.flatten()),
            finished_at: Some(p.finished_at.flatten()),
            rating: Some(p.rating.flatten()),
            review: Some(p.review.flatten()),
            favourite: Some(p.favourite.unwrap_or(false)),
            loaned_to: Some(p.loaned_to.flatten()),
            loaned_at: Some(p.loaned_at.flatten()),
            returned_at: Some(p.returned_at.flatten()),
        }
    }
}

/// One item of a batch: a book and what to change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub book_id: BookId,
    pub patch: MinePatch,
}

/// What became of one item of a batch: its record after, or why it was refused (nothing of
/// a refused item is written).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ItemResult {
    Done(Box<UserBook>),
    Refused(AppError),
}

/// A batch's answer, as first given and as stored for its retries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchAnswer {
    pub results: Vec<ItemResult>,
    /// This is the stored answer of an earlier request with the same key.
    pub replayed: bool,
}

fn check_time(field: &str, t: Option<Timestamp>, latest: Timestamp) -> Result<(), AppError> {
    match t {
        Some(t) if t > latest => Err(AppError::bad(field, "must not be in the future")),
        _ => Ok(()),
    }
}

/// `current` with `patch` applied at `now`, validated; `latest` is the latest time a date
/// may name (now plus the allowed clock skew). Unchanged content comes back as `current`.
pub fn apply(
    current: &UserBook,
    patch: &MinePatch,
    now: Timestamp,
    latest: Timestamp,
) -> Result<UserBook, AppError> {
    let mut next = current.clone();
    if let Some(status) = patch.status
        && status != current.status
    {
        next.status = status;
        next.status_source = status.map(|_| StatusSource::Manual);
        next.status_at = status.map(|_| now);
        match status {
            Some(BookStatus::Reading) if patch.started_at.is_none() => {
                next.started_at = next.started_at.or(Some(now));
            }
            Some(BookStatus::Finished) if patch.finished_at.is_none() => {
                next.finished_at = next.finished_at.or(Some(now));
                next.started_at = next.started_at.or(Some(now));
            }
            _ => {}
        }
    }
    for (field, value, slot) in [
        ("started_at", patch.started_at, &mut next.started_at),
        ("finished_at", patch.finished_at, &mut next.finished_at),
        ("loaned_at", patch.loaned_at, &mut next.loaned_at),
        ("returned_at", patch.returned_at, &mut next.returned_at),
    ] {
        if let Some(v) = value {
            check_time(field, v, latest)?;
            *slot = v;
        }
    }
    if let (Some(s), Some(f)) = (next.started_at, next.finished_at)
        && f < s
        && (patch.started_at.is_some() || patch.finished_at.is_some())
    {
        return Err(AppError::bad(
            "finished_at",
            "must not be before started_at",
        ));
    }
    if let (Some(l), Some(r)) = (next.loaned_at, next.returned_at)
        && r < l
        && (patch.loaned_at.is_some() || patch.returned_at.is_some())
    {
        return Err(AppError::bad("returned_at", "must not be before loaned_at"));
    }
    if let Some(r) = patch.rating {
        next.rating = r;
    }
    if let Some(review) = &patch.review {
        next.review = match review.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) if t.len() > MAX_REVIEW => {
                return Err(AppError::bad("review", "must be at most 65536 bytes"));
            }
            Some(t) => Some(t.to_string()),
        };
    }
    if let Some(f) = patch.favourite {
        next.favourite = f;
    }
    if let Some(to) = &patch.loaned_to {
        next.loaned_to = match to.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) if t.len() > 256 || t.chars().any(char::is_control) => {
                return Err(AppError::bad(
                    "loaned_to",
                    "must be a name of at most 256 bytes",
                ));
            }
            Some(t) => Some(t.to_string()),
        };
        if next.loaned_to.is_some()
            && next.loaned_to != current.loaned_to
            && patch.loaned_at.is_none()
        {
            // A new loan starts now and is not returned yet.
            next.loaned_at = Some(now);
            if patch.returned_at.is_none() {
                next.returned_at = None;
            }
        }
    }
    if next.same_content(current) {
        return Ok(current.clone());
    }
    next.version = current.version + 1;
    next.updated_at = now;
    Ok(next)
}

/// The record after an applied progress write whose resulting state is `state`, if the
/// write changes its status: `None` when it does not (same status, or the reader set the
/// status by hand after the write was made).
pub fn from_progress(
    current: &UserBook,
    state: &ProgressState,
    now: Timestamp,
) -> Option<UserBook> {
    let target = if state.status == ReadStatus::Finished || state.percent == Percent::FULL {
        BookStatus::Finished
    } else if state.status == ReadStatus::Unread && state.percent == Percent::ZERO {
        // A reset to the start says nothing about reading it.
        return None;
    } else {
        BookStatus::Reading
    };
    if current.status_source == Some(StatusSource::Manual)
        && current.status_at.is_some_and(|at| at >= state.client_ts)
    {
        return None;
    }
    if current.status == Some(target) {
        return None;
    }
    let mut next = current.clone();
    next.status = Some(target);
    next.status_source = Some(StatusSource::Progress);
    next.status_at = Some(state.client_ts);
    next.started_at = next.started_at.or(Some(state.client_ts));
    if target == BookStatus::Finished {
        next.finished_at = Some(state.client_ts);
    }
    next.version = current.version + 1;
    next.updated_at = now;
    Some(next)
}

/// What identifies a batch's request for its `Idempotency-Key`: the items as parsed, hashed.
pub fn fingerprint(items: &[BatchItem]) -> String {
    let canonical = serde_json::to_string(items).unwrap_or_default();
    crate::auth::sha256_hex(&format!("books/mine/batch\n{canonical}"))
}

impl crate::app::Dogear {
    /// The caller's record of a book they can read (an empty one if they never said
    /// anything of it).
    pub async fn mine(&self, user: UserId, book: BookId) -> Result<UserBook, AppError> {
        reply!(
            self.placement
                .ask_user(user, UserOp::Mine(MineOp::Get(book)))
                .await,
            UserReply::Mine
        )
        .map(|b| *b)
    }

    pub async fn patch_mine(
        &self,
        user: UserId,
        book: BookId,
        patch: MinePatch,
    ) -> Result<UserBook, AppError> {
        reply!(
            self.placement
                .ask_user(user, UserOp::Mine(MineOp::Patch(book, patch)))
                .await,
            UserReply::Mine
        )
        .map(|b| *b)
    }

    /// Applies up to [`MAX_BATCH`] items, each whole or not at all; with `key`, a retry
    /// with the same items gets the same answer (from any node, after a restart) until the
    /// key expires, and other items under the key are refused.
    pub async fn mine_batch(
        &self,
        user: UserId,
        key: Option<String>,
        items: Vec<BatchItem>,
    ) -> Result<BatchAnswer, AppError> {
        if items.len() > MAX_BATCH {
            return Err(AppError::bad("items", "must hold at most 500 items"));
        }
        if let Some(k) = &key
            && (k.is_empty() || k.len() > 255 || !k.bytes().all(|b| (0x21..0x7f).contains(&b)))
        {
            return Err(AppError::bad(
                "Idempotency-Key",
                "must be 1-255 visible ASCII characters",
            ));
        }
        reply!(
            self.placement
                .ask_user(user, UserOp::Mine(MineOp::Batch { key, items }))
                .await,
            UserReply::Batch
        )
    }

    /// Removes stored answers whose keys expired (run periodically by every node).
    pub async fn purge_idempotent_answers(&self) -> Result<u64, AppError> {
        Ok(self
            .store
            .purge_idempotent_answers(Timestamp::now())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dogear_storage::DeviceId;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000).plus_secs(secs)
    }
    fn blank() -> UserBook {
        UserBook::empty(UserId::generate(), BookId::generate())
    }
    fn state(pct: f64, status: ReadStatus, at: Timestamp) -> ProgressState {
        ProgressState {
            book_id: BookId::generate(),
            percent: Percent::new(pct).unwrap(),
            locator: None,
            status,
            device_id: DeviceId::generate(),
            client_ts: at,
            updated_at: at,
            version: 1,
        }
    }

    #[test]
    fn progress_moves_the_status() {
        let b = blank();
        let r = from_progress(&b, &state(5.0, ReadStatus::Reading, t(10)), t(11)).unwrap();
        assert_eq!(r.status, Some(BookStatus::Reading));
        assert_eq!(r.status_source, Some(StatusSource::Progress));
        assert_eq!(r.started_at, Some(t(10)));
        assert_eq!(r.version, 1);
        assert!(
            from_progress(&r, &state(9.0, ReadStatus::Reading, t(20)), t(21)).is_none(),
            "already reading"
        );
        let f = from_progress(&r, &state(100.0, ReadStatus::Reading, t(30)), t(31)).unwrap();
        assert_eq!(f.status, Some(BookStatus::Finished));
        assert_eq!((f.started_at, f.finished_at), (Some(t(10)), Some(t(30))));
        let k = from_progress(&r, &state(97.0, ReadStatus::Finished, t(30)), t(31)).unwrap();
        assert_eq!(k.status, Some(BookStatus::Finished), "a Kobo's finished");
        assert!(from_progress(&b, &state(0.0, ReadStatus::Unread, t(5)), t(6)).is_none());
    }

    #[test]
    fn a_status_set_by_hand_wins_over_older_progress_only() {
        let b = blank();
        let hand = apply(
            &b,
            &MinePatch {
                status: Some(Some(BookStatus::Abandoned)),
                ..Default::default()
            },
            t(100),
            t(400),
        )
        .unwrap();
        assert_eq!(hand.status_source, Some(StatusSource::Manual));
        assert!(
            from_progress(&hand, &state(40.0, ReadStatus::Reading, t(50)), t(101)).is_none(),
            "a write made before the reader's choice does not undo it"
        );
        let later = from_progress(&hand, &state(40.0, ReadStatus::Reading, t(200)), t(201));
        assert_eq!(later.map(|r| r.status), Some(Some(BookStatus::Reading)));
    }

    #[test]
    fn patches_validate_and_fill_dates() {
        let b = blank();
        let r = apply(
            &b,
            &MinePatch {
                status: Some(Some(BookStatus::Finished)),
                rating: Some(Rating::from_stars(3.5)),
                loaned_to: Some(Some("  Sam ".into())),
                ..Default::default()
            },
            t(0),
            t(300),
        )
        .unwrap();
        assert_eq!(r.finished_at, Some(t(0)));
        assert_eq!(r.loaned_to.as_deref(), Some("Sam"));
        assert_eq!(r.loaned_at, Some(t(0)));
        assert_eq!(r.version, 1);
        let same = apply(&r, &MinePatch::default(), t(5), t(300)).unwrap();
        assert_eq!(same, r, "nothing changed: no new version");
        let future = MinePatch {
            started_at: Some(Some(t(10_000))),
            ..Default::default()
        };
        assert!(matches!(
            apply(&r, &future, t(5), t(300)),
            Err(AppError::BadRequest { field, .. }) if field == "started_at"
        ));
        let backwards = MinePatch {
            started_at: Some(Some(t(50))),
            finished_at: Some(Some(t(10))),
            ..Default::default()
        };
        assert!(apply(&r, &backwards, t(60), t(300)).is_err());
        let long = MinePatch {
            review: Some(Some("x".repeat(MAX_REVIEW + 1))),
            ..Default::default()
        };
        assert!(apply(&r, &long, t(60), t(300)).is_err());
        let full = MinePatch::full(MinePatch {
            favourite: Some(true),
            ..Default::default()
        });
        let cleared = apply(&r, &full, t(70), t(300)).unwrap();
        assert_eq!(cleared.status, None);
        assert_eq!(cleared.rating, None);
        assert!(cleared.favourite);
        assert_eq!(cleared.version, 2);
    }
}
