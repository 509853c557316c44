//! Timestamps as milliseconds since the Unix epoch, written as RFC 3339 UTC with milliseconds.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time with millisecond precision. Stored as an integer so that every backend
/// compares and orders it the same way.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let ns = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Timestamp((ns / 1_000_000) as i64)
    }

    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub fn millis(&self) -> i64 {
        self.0
    }

    pub fn plus_secs(&self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Parses any RFC 3339 timestamp (any offset, any fraction), keeping milliseconds.
    pub fn parse(s: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        Some(Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        if let Ok(year @ 0..=9999) = u32::try_from(t.year()) {
            // Written by hand: two of these go out with every progress answer, and the
            // formatting machinery cost more than the rest of the answer.
            let mut b = *b"0000-00-00T00:00:00.000Z";
            let mut put = |at: usize, width: usize, mut v: u32| {
                for i in (at..at + width).rev() {
                    b[i] = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            };
            put(0, 4, year);
            put(5, 2, u8::from(t.month()).into());
            put(8, 2, t.day().into());
            put(11, 2, t.hour().into());
            put(14, 2, t.minute().into());
            put(17, 2, t.second().into());
            put(20, 3, t.millisecond().into());
            // Only ASCII digits and separators were written.
            return f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?);
        }
        general(f, &t)
    }
}

/// The same text through `core::fmt`, for the years the hand-written form does not cover
/// (and as its reference in the tests).
fn general(f: &mut impl fmt::Write, t: &OffsetDateTime) -> fmt::Result {
    write!(
        f,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// RFC 3339 text in human-readable formats (JSON); the bare milliseconds in binary ones
/// (postcard: the progress log and the cluster wire), 8 bytes instead of 24.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return i64::deserialize(d).map(Timestamp);
        }
        let s = String::deserialize(d)?;
        Timestamp::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_milliseconds() {
        let t = Timestamp::parse("2026-11-23T07:28:28.123Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-23T07:28:28.123Z");
        let t = Timestamp::parse("2026-11-23T08:28:28.1234567+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-23T07:28:28.123Z");
        assert!(Timestamp::parse("yesterday").is_none());
    }

    /// The hand-written text is the general formatter's, digit for digit, over every year
    /// `time` represents.
    #[test]
    fn text_matches_the_general_formatter() {
        let general = |ms: i64| {
            let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
            let mut text = String::new();
            super::general(&mut text, &t).unwrap();
            text
        };
        let mut ms: i64 = -62_167_219_200_000; // 0000-01-01
        while ms < 253_402_300_799_999 {
            assert_eq!(Timestamp::from_millis(ms).to_string(), general(ms));
            ms += 987_654_321_123;
        }
        for ms in [0, 1, 999, 253_402_300_799_999] {
            assert_eq!(Timestamp::from_millis(ms).to_string(), general(ms));
        }
        // Past what `time` represents: the epoch, as before.
        for ms in [253_402_300_800_000, i64::MAX, i64::MIN] {
            assert_eq!(
                Timestamp::from_millis(ms).to_string(),
                "1970-01-01T00:00:00.000Z"
            );
        }
    }
}
