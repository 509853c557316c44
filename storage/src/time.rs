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
}
