//! The merge rule for the parts of a device's state that carry their own time: a Kobo's
//! bookmark, statistics and status each say when the device last changed them, and a
//! `PUT` may carry any of them, in any order, late or twice.
//!
//! Why this rule:
//! - Each part is last-writer-wins by the device's time for that part, independently of the
//!   others, so a stale replay of one part (a queued bookmark from before a sync) cannot undo
//!   newer data in it, and cannot hold back a newer part sent beside it.
//! - Two values stamped with the same time are ordered by their canonical bytes, so the
//!   winner does not depend on which arrived first: merging is commutative and associative,
//!   and every node, given the same parts in any order, keeps the same one. (The previous
//!   rule, "at equal time the incoming wins", made the result depend on arrival order.)
//! - A time is the device's own, kept as it wrote it (`raw`) so that the device gets back
//!   exactly what it sent; it is compared by its parsed value. Times too far in the future are
//!   clamped before they get here ([`DeviceTime::clamped`]), so a device with a clock in year
//!   9999 cannot freeze a part for ever.

use dogear_storage::Timestamp;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A device's time as it wrote it, and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTime {
    pub at: Timestamp,
    pub raw: String,
}

impl DeviceTime {
    /// `raw` read as a time (see [`Timestamp::parse`], with a missing zone taken as UTC).
    pub fn parse(raw: &str) -> Option<DeviceTime> {
        let s = raw.trim();
        let at = Timestamp::parse(s).or_else(|| Timestamp::parse(&format!("{s}Z")))?;
        Some(DeviceTime {
            at,
            raw: raw.to_string(),
        })
    }

    /// The server's time, written as `format` writes times.
    pub fn server(now: Timestamp, format: fn(Timestamp) -> String) -> DeviceTime {
        DeviceTime {
            at: now,
            raw: format(now),
        }
    }

    /// This time, or `now` if it is more than `skew` ahead of it: a device clock far in the
    /// future would otherwise win every later comparison. `true` when it was clamped.
    pub fn clamped(
        self,
        now: Timestamp,
        skew_secs: i64,
        format: fn(Timestamp) -> String,
    ) -> (DeviceTime, bool) {
        if self.at > now.plus_secs(skew_secs) {
            (DeviceTime::server(now, format), true)
        } else {
            (self, false)
        }
    }
}

/// A value and the device time it was set at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stamped<T> {
    pub at: DeviceTime,
    pub value: T,
}

impl<T: Serialize> Stamped<T> {
    /// The order of the rule: time first, then canonical bytes (time as written, value).
    fn order(&self, other: &Stamped<T>) -> Ordering {
        self.at.at.cmp(&other.at.at).then_with(|| {
            let a = serde_json::to_vec(&(&self.at.raw, &self.value)).unwrap_or_default();
            let b = serde_json::to_vec(&(&other.at.raw, &other.value)).unwrap_or_default();
            a.cmp(&b)
        })
    }

    /// Whether `self` replaces `stored` (it is later, or as late and greater).
    pub fn wins_over(&self, stored: Option<&Stamped<T>>) -> bool {
        stored.is_none_or(|s| self.order(s) == Ordering::Greater)
    }

    /// The part to keep of two.
    pub fn merge(stored: Option<Stamped<T>>, incoming: Option<Stamped<T>>) -> Option<Stamped<T>> {
        match (stored, incoming) {
            (Some(s), Some(i)) => Some(if i.wins_over(Some(&s)) { i } else { s }),
            (s, i) => s.or(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stamp(secs: i64, raw_suffix: u8, value: u8) -> Stamped<u8> {
        let at = Timestamp::from_millis(1_767_225_600_000 + secs * 1000);
        Stamped {
            at: DeviceTime {
                raw: format!("{at}#{raw_suffix}"),
                at,
            },
            value,
        }
    }

    fn fold(parts: &[Stamped<u8>]) -> Option<Stamped<u8>> {
        parts
            .iter()
            .cloned()
            .fold(None, |acc, p| Stamped::merge(acc, Some(p)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any order of the same parts keeps the same one (few distinct times, to force ties).
        #[test]
        fn any_order_gives_the_same_part(
            parts in proptest::collection::vec((0i64..4, 0u8..3, 0u8..5), 1..12),
            seed in any::<u64>(),
        ) {
            let parts: Vec<_> = parts.into_iter().map(|(t, r, v)| stamp(t, r, v)).collect();
            let mut shuffled = parts.clone();
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(fold(&parts), fold(&shuffled));
        }

        /// The kept part is one of the latest; nothing older ever replaces it.
        #[test]
        fn the_latest_wins_and_an_older_part_never_replaces_it(
            parts in proptest::collection::vec((0i64..100, 0u8..3, 0u8..5), 1..12),
            late in (0i64..100, 0u8..3, 0u8..5),
        ) {
            let parts: Vec<_> = parts.into_iter().map(|(t, r, v)| stamp(t, r, v)).collect();
            let kept = fold(&parts).unwrap();
            let latest = parts.iter().map(|p| p.at.at).max().unwrap();
            prop_assert_eq!(kept.at.at, latest);
            let late = stamp(late.0, late.1, late.2);
            let after = Stamped::merge(Some(kept.clone()), Some(late.clone())).unwrap();
            if late.at.at < kept.at.at {
                prop_assert_eq!(after, kept);
            } else if late.at.at > kept.at.at {
                prop_assert_eq!(after, late);
            }
        }

        /// The same part again changes nothing.
        #[test]
        fn repeats_are_harmless(t in 0i64..100, r in 0u8..3, v in 0u8..5) {
            let p = stamp(t, r, v);
            prop_assert_eq!(Stamped::merge(Some(p.clone()), Some(p.clone())), Some(p.clone()));
            prop_assert!(!p.wins_over(Some(&p)));
        }
    }

    #[test]
    fn future_times_are_clamped() {
        let now = Timestamp::from_millis(1_767_225_600_000);
        let fmt: fn(Timestamp) -> String = |t| t.to_string();
        let far = DeviceTime::parse("9999-12-31T23:59:59Z").unwrap();
        let (t, clamped) = far.clamped(now, 300, fmt);
        assert!(clamped);
        assert_eq!(t.at, now);
        assert_eq!(t.raw, now.to_string());
        let soon = DeviceTime::parse("2026-01-01T00:04:00Z").unwrap();
        assert!(!soon.clone().clamped(now, 300, fmt).1, "within the skew");
        assert!(DeviceTime::parse("garbage").is_none());
        assert!(
            DeviceTime::parse("2026-01-01T00:00:00").is_some(),
            "no zone: UTC"
        );
    }
}
