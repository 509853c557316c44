//! KOReader's progress sync (`docs/protocols/kosync.md`) on Dogear's one progress.
//!
//! A KOReader names a book by a digest of its file (or of its file name). A `PUT` for a
//! digest that names exactly one book the reader may read becomes the same
//! [`ProgressWrite`] through the user's actor as every other protocol's, with the device's
//! XPointer, name and id in the locator as `{"koreader": {...}}`; every `PUT` is also kept
//! per (user, digest), so two KOReaders sync a side-loaded book Dogear does not hold, and an
//! import that later brings a file with that digest attaches the position to its book.
//!
//! Positions written elsewhere reach KOReader as something it can apply: its own XPointer
//! when the position came from a KOReader with the same file, else the start of the spine
//! document holding the position (`/body/DocFragment[N].0`), or a page number for PDF and
//! CBZ.

pub mod pages;
mod service;
pub mod xpointer;

pub use pages::Found;
pub(crate) use service::attach_positions;
pub use service::{KosyncPut, KosyncRecord, LOGIN_CACHE_SECS, LoginCache};

use crate::progress::ProgressWrite;
use dogear_storage::{
    BookId, DeviceId, EventId, KoreaderPosition, Locator, Percent, ProgressState, Timestamp,
};
use serde::{Deserialize, Serialize};

/// What a KOReader wrote beyond the percentage, kept in the progress locator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KoreaderMark {
    /// The digest the device named the document by.
    pub document: String,
    /// The XPointer (or page number) exactly as sent.
    pub progress: String,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct MarkLocator {
    koreader: KoreaderMark,
}

impl KoreaderMark {
    pub fn from_locator(l: Option<&Locator>) -> Option<KoreaderMark> {
        let l = l?.as_str();
        if !l.starts_with("{\"koreader\"") {
            return None;
        }
        serde_json::from_str::<MarkLocator>(l)
            .ok()
            .map(|m| m.koreader)
    }

    pub fn to_locator(&self) -> Option<Locator> {
        let s = serde_json::to_string(&MarkLocator {
            koreader: self.clone(),
        })
        .ok()?;
        Locator::new(s)
    }
}

/// An event id derived from what the device sent: a KOReader replaying its offline queue
/// sends the same body again, and the same id makes the replay a no-op.
pub fn event_id(device: DeviceId, p: &KoreaderPosition) -> EventId {
    let body = format!(
        "koreader\0{device}\0{}\0{}\0{}\0{}\0{}",
        p.document,
        p.progress,
        p.percentage.to_bits(),
        p.device,
        p.device_id.as_deref().unwrap_or("")
    );
    let d = dogear_storage::digest::md5_bytes(body.as_bytes());
    EventId(uuid::Builder::from_custom_bytes(d).into_uuid())
}

/// KOReader's `percentage` (0-1) as Dogear's percent; out of range is clamped (a device
/// that says 1.0000001 finished the book), not finite is `None`.
pub fn percent_of(percentage: f64) -> Option<Percent> {
    if !percentage.is_finite() {
        return None;
    }
    Percent::new((percentage * 100.0).clamp(0.0, 100.0))
}

/// The progress write a KOReader position stands for, on `book`.
pub fn write_for(p: &KoreaderPosition, book: BookId) -> Option<ProgressWrite> {
    let mark = KoreaderMark {
        document: p.document.clone(),
        progress: p.progress.clone(),
        device: p.device.clone(),
        device_id: p.device_id.clone(),
    };
    Some(ProgressWrite {
        event_id: event_id(p.written_by, p),
        book_id: book,
        device_id: p.written_by,
        percent: percent_of(p.percentage)?,
        locator: mark.to_locator(),
        status: None,
        client_ts: p.updated_at,
        rewind: false,
    })
}

/// Seconds since the epoch, as KOReader compares them with its own clock.
pub fn unix_seconds(t: Timestamp) -> i64 {
    t.millis().div_euclid(1000)
}

/// The percentage (0-1) KOReader is given for a state: floored to 4 decimals, as the
/// client floors its own, so "already synchronised" compares like with like.
pub fn percentage_of(s: &ProgressState) -> f64 {
    (s.percent.get() * 100.0).floor() / 10_000.0
}

/// KOReader's device ids are 32 upper-case hex digits; a Dogear device's id in that form.
pub fn device_id_hex(d: DeviceId) -> String {
    d.0.simple().to_string().to_ascii_uppercase()
}
