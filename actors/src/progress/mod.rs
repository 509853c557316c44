//! Reading progress: the write a client makes and the rule that decides whether it moves the
//! canonical position.

pub mod batch;
pub mod merge;
pub mod parts;

use dogear_storage::{BookId, DeviceId, EventId, Locator, Percent, ReadStatus, Timestamp};
use serde::Serialize;

/// One progress write as every protocol (REST, WebSocket, Kobo, kosync) hands it to the
/// user's actor.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ProgressWrite {
    pub event_id: EventId,
    pub book_id: BookId,
    pub device_id: DeviceId,
    pub percent: Percent,
    pub locator: Option<Locator>,
    /// `None` lets the server infer it from `percent`.
    pub status: Option<ReadStatus>,
    pub client_ts: Timestamp,
    pub rewind: bool,
}

impl ProgressWrite {
    /// The status this write stands for: as sent, or `finished` at 100% and `reading` below.
    pub fn effective_status(&self) -> ReadStatus {
        self.status.unwrap_or(if self.percent == Percent::FULL {
            ReadStatus::Finished
        } else {
            ReadStatus::Reading
        })
    }

    /// A fingerprint of the body in canonical form, to tell a retry (same body) from a
    /// reused id. Stored with every event, so it is kept short: SHA-256, hex.
    pub fn fingerprint(&self) -> String {
        // Serialization of plain data cannot fail; an empty body would still compare safely.
        let canonical = serde_json::to_string(self).unwrap_or_default();
        crate::auth::sha256_hex(&canonical)
    }
}
