//! How a progress event is stored in `progress_events` (schema 12): compactly, because every
//! write adds a row and the table only grows. Ids are their 16 bytes, the body's fingerprint
//! its 32 bytes, the state a binary record. Events stored before schema 12 keep their state
//! as JSON text; SQLite keeps each value's type, so a reader tells the two apart by it.

use super::rows::{RowResult, parse_enum};
use crate::error::StoreError;
use crate::ids::{BookId, DeviceId};
use crate::records::{Locator, Percent, ProgressEvent, ProgressState, ReadStatus, Reason};
use crate::time::Timestamp;
use rusqlite::Row;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use uuid::Uuid;

/// The first byte of a binary state record: its format, so that a later one can be told
/// from it.
const STATE_V1: u8 = 1;
/// Flags of the second byte: the state's book or device is another than the event's row
/// names, and follows as 16 bytes. (Almost always both are the row's: the state of a book
/// is in that book's events, and the state an applied write leaves is its device's.)
const OTHER_BOOK: u8 = 1;
const OTHER_DEVICE: u8 = 2;

/// What follows the ids, in postcard.
type Rest = (
    Percent,
    Option<Locator>,
    ReadStatus,
    Timestamp,
    Timestamp,
    u64,
);

/// The stored form of the state of an event of `book` from `device`.
pub(super) fn state_record(
    s: &ProgressState,
    book: BookId,
    device: DeviceId,
) -> Result<Vec<u8>, StoreError> {
    let mut flags = 0;
    let mut out = vec![STATE_V1, 0];
    if s.book_id != book {
        flags |= OTHER_BOOK;
        out.extend_from_slice(s.book_id.0.as_bytes());
    }
    if s.device_id != device {
        flags |= OTHER_DEVICE;
        out.extend_from_slice(s.device_id.0.as_bytes());
    }
    out[1] = flags;
    let rest = (
        &s.percent,
        &s.locator,
        &s.status,
        &s.client_ts,
        &s.updated_at,
        s.version,
    );
    postcard::to_io(&rest, &mut out)
        .map_err(|e| StoreError::Corrupt(format!("progress state: {e}")))?;
    Ok(out)
}

/// A state as stored in an event of `book` from `device`: a binary record, or the JSON text
/// of events older than schema 12.
pub(super) fn state_of(
    v: ValueRef<'_>,
    book: BookId,
    device: DeviceId,
) -> Result<ProgressState, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("progress state: {e}"));
    match v {
        ValueRef::Blob([STATE_V1, flags, tail @ ..]) => {
            let (flags, mut rest): (u8, &[u8]) = (*flags, tail);
            let mut id = |other: bool, default: uuid::Uuid| -> Result<uuid::Uuid, StoreError> {
                if !other {
                    return Ok(default);
                }
                let (bytes, tail) = rest
                    .split_first_chunk::<16>()
                    .ok_or_else(|| corrupt(&"cut short"))?;
                rest = tail;
                Ok(uuid::Uuid::from_bytes(*bytes))
            };
            let book_id = BookId(id(flags & OTHER_BOOK != 0, book.0)?);
            let device_id = DeviceId(id(flags & OTHER_DEVICE != 0, device.0)?);
            let (percent, locator, status, client_ts, updated_at, version): Rest =
                postcard::from_bytes(rest).map_err(|e| corrupt(&e))?;
            Ok(ProgressState {
                book_id,
                percent,
                locator,
                status,
                device_id,
                client_ts,
                updated_at,
                version,
            })
        }
        ValueRef::Text(t) => serde_json::from_slice(t).map_err(|e| corrupt(&e)),
        _ => Err(StoreError::Corrupt("progress state of unknown form".into())),
    }
}

/// An id as stored: its 16 bytes (text only in a database a person edited).
pub(super) fn uuid_of(v: ValueRef<'_>) -> Result<Uuid, StoreError> {
    match v {
        ValueRef::Blob(b) => Uuid::from_slice(b).map_err(|_| StoreError::Corrupt("bad id".into())),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| Uuid::parse_str(t).ok())
            .ok_or_else(|| StoreError::Corrupt("bad id".into())),
        _ => Err(StoreError::Corrupt("id of unknown form".into())),
    }
}

/// A body fingerprint as stored: the 32 bytes of a lowercase SHA-256 hex digest (what every
/// protocol sends here), any other text as it is, so that reading it back gives the same
/// text.
pub(super) fn body_value(body: &str) -> ToSqlOutput<'static> {
    let b = body.as_bytes();
    let hex = b.len() == 64 && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if hex {
        let digit = |c: u8| if c <= b'9' { c - b'0' } else { c - b'a' + 10 };
        let bytes = b
            .chunks_exact(2)
            .map(|p| (digit(p[0]) << 4) | digit(p[1]))
            .collect();
        ToSqlOutput::Owned(Value::Blob(bytes))
    } else {
        ToSqlOutput::Owned(Value::Text(body.to_owned()))
    }
}

fn body_of(v: ValueRef<'_>) -> Result<String, StoreError> {
    match v {
        ValueRef::Blob(b) => Ok(crate::digest::hex(b)),
        ValueRef::Text(t) => String::from_utf8(t.to_vec())
            .map_err(|_| StoreError::Corrupt("progress body is not UTF-8".into())),
        _ => Err(StoreError::Corrupt("progress body of unknown form".into())),
    }
}

/// An event from a row of [`crate::sql::EVENT_COLS`], the columns every backend reads.
pub(super) fn event_row(r: &Row<'_>) -> RowResult<ProgressEvent> {
    let seq: i64 = r.get(0)?;
    let applied: bool = r.get(5)?;
    let reason: Option<String> = r.get(6)?;
    let received: i64 = r.get(8)?;
    let (event, book, device, body, state) = (
        r.get_ref(1)?,
        r.get_ref(2)?,
        r.get_ref(3)?,
        r.get_ref(4)?,
        r.get_ref(7)?,
    );
    Ok((|| {
        let (book_id, device_id) = (BookId(uuid_of(book)?), DeviceId(uuid_of(device)?));
        Ok(ProgressEvent {
            seq: seq as u64,
            event_id: crate::ids::EventId(uuid_of(event)?),
            book_id,
            device_id,
            body: body_of(body)?,
            applied,
            reason: reason.map(|r| parse_enum(&r, Reason::parse)).transpose()?,
            state: state_of(state, book_id, device_id)?,
            received_at: Timestamp::from_millis(received),
        })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ProgressState {
        ProgressState {
            book_id: BookId::generate(),
            percent: Percent::new(41.5).expect("percent"),
            locator: Locator::new("epubcfi(/6/4!/4/2/1:0)".into()),
            status: ReadStatus::Reading,
            device_id: DeviceId::generate(),
            client_ts: Timestamp::from_millis(1_764_000_000_123),
            updated_at: Timestamp::from_millis(1_764_000_000_456),
            version: 7,
        }
    }

    #[test]
    fn a_state_reads_back_from_its_record_and_from_older_json() {
        let s = state();
        let (book, device) = (s.book_id, s.device_id);
        let (other_book, other_device) = (BookId::generate(), DeviceId::generate());
        // The row's own ids are left out; another id is kept, whichever it is.
        for (b, d, ids) in [
            (book, device, 0),
            (other_book, device, 1),
            (book, other_device, 1),
            (other_book, other_device, 2),
        ] {
            let record = state_record(&s, b, d).expect("encode");
            // flags, ids, percent, locator (some, length, text), status, two times, version
            assert_eq!(
                record.len(),
                2 + 16 * ids + 8 + (1 + 1 + 22) + 1 + 6 + 6 + 1
            );
            assert_eq!(state_of(ValueRef::Blob(&record), b, d).expect("record"), s);
            assert!(state_of(ValueRef::Blob(&record[..record.len() - 1]), b, d).is_err());
            if ids > 0 {
                assert!(state_of(ValueRef::Blob(&record[..20]), b, d).is_err());
            }
        }
        let json = serde_json::to_string(&s).expect("json");
        let text = ValueRef::Text(json.as_bytes());
        assert_eq!(state_of(text, other_book, device).expect("json"), s);
        assert!(state_of(ValueRef::Blob(&[9, 1, 2]), book, device).is_err());
        assert!(state_of(ValueRef::Integer(3), book, device).is_err());
    }

    #[test]
    fn a_body_reads_back_as_the_same_text() {
        let digest = crate::digest::hex(&[0xab; 32]);
        for body in [
            digest.as_str(),
            &digest.to_uppercase(),
            "not a digest",
            "",
            &digest[..62],
        ] {
            let stored = body_value(body);
            let back = match &stored {
                ToSqlOutput::Owned(v) => body_of(ValueRef::from(v)).expect("body"),
                _ => unreachable!("always owned"),
            };
            assert_eq!(back, body);
        }
        assert!(matches!(
            body_value(&digest),
            ToSqlOutput::Owned(Value::Blob(ref b)) if b.len() == 32
        ));
    }
}
