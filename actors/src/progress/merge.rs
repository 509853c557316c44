//! The merge rule for reading progress, as a pure function so it can be argued and tested
//! without any actor running.
//!
//! Why these rules:
//! - Progress only moves forward on its own. Forward writes are ordered by the key
//!   `(percent, client_ts, device_id, locator, status)`, and a write is applied only if its key
//!   is at least the current one. The canonical state is therefore the maximum over every
//!   forward write received, and a maximum does not depend on arrival order: any
//!   permutation of the same forward writes ends in the same state.
//! - Equal keys (the same write again) change nothing, which makes repeats harmless even
//!   without an event id.
//! - Going back is a deliberate act (`rewind`, or a reset to `unread` at 0%), and among
//!   deliberate acts the latest by the device's clock wins (last-writer-wins), so an old
//!   rewind delivered late cannot undo newer reading.

use super::ProgressWrite;
use dogear_storage::{Percent, ProgressState, ReadStatus, Reason};
use std::cmp::Ordering;

/// What the rule decided for one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Apply,
    /// Backward without rewind: the client may offer to jump ahead.
    Skip(Reason),
}

/// True when the write asks to go back: `rewind`, or a reset to unread at 0%.
pub fn is_rewind(w: &ProgressWrite) -> bool {
    w.rewind || (w.status == Some(ReadStatus::Unread) && w.percent == Percent::ZERO)
}

fn order_key_cmp(w: &ProgressWrite, cur: &ProgressState) -> Ordering {
    w.percent
        .get()
        .total_cmp(&cur.percent.get())
        .then_with(|| w.client_ts.cmp(&cur.client_ts))
        .then_with(|| w.device_id.cmp(&cur.device_id))
        .then_with(|| w.locator.cmp(&cur.locator))
        .then_with(|| w.effective_status().cmp(&cur.status))
}

/// Decides whether `w` moves the canonical state `current`.
pub fn decide(current: Option<&ProgressState>, w: &ProgressWrite) -> Decision {
    let Some(cur) = current else {
        return Decision::Apply;
    };
    match w.percent.get().total_cmp(&cur.percent.get()) {
        Ordering::Greater => Decision::Apply,
        Ordering::Equal => {
            if is_rewind(w) && w.client_ts > cur.client_ts {
                // A reset at the same percent (e.g. finished -> unread at 0%) is a rewind.
                return Decision::Apply;
            }
            // An exact repeat of the current state (same key, new event id) says nothing
            // newer, so it is reported like an older write at the same place: stale.
            match order_key_cmp(w, cur) {
                Ordering::Greater => Decision::Apply,
                Ordering::Equal | Ordering::Less => Decision::Skip(Reason::Stale),
            }
        }
        Ordering::Less if is_rewind(w) => {
            if w.client_ts > cur.client_ts {
                Decision::Apply
            } else {
                Decision::Skip(Reason::Stale)
            }
        }
        Ordering::Less => Decision::Skip(Reason::Behind),
    }
}

/// The state after applying `w` on top of `current` at server time `now`.
pub fn apply(
    current: Option<&ProgressState>,
    w: &ProgressWrite,
    now: dogear_storage::Timestamp,
) -> ProgressState {
    ProgressState {
        book_id: w.book_id,
        percent: w.percent,
        locator: w.locator.clone(),
        status: w.effective_status(),
        device_id: w.device_id,
        client_ts: w.client_ts,
        updated_at: now,
        version: current.map_or(1, |c| c.version + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dogear_storage::{BookId, DeviceId, EventId, Locator, Timestamp};
    use proptest::prelude::*;

    fn write(pct: f64, ts: i64, dev: DeviceId, rewind: bool) -> ProgressWrite {
        ProgressWrite {
            event_id: EventId::generate(),
            book_id: BookId(uuid::Uuid::nil()),
            device_id: dev,
            percent: Percent::new(pct).unwrap(),
            locator: Locator::new(format!("loc-{pct}")),
            status: None,
            client_ts: Timestamp::from_millis(ts),
            rewind,
        }
    }

    /// Feeds writes through the rule the way the user actor does.
    fn run(writes: &[ProgressWrite]) -> Option<ProgressState> {
        let mut state: Option<ProgressState> = None;
        for w in writes {
            if decide(state.as_ref(), w) == Decision::Apply {
                state = Some(apply(state.as_ref(), w, Timestamp::from_millis(0)));
            }
        }
        state
    }

    fn strip(
        s: Option<ProgressState>,
    ) -> Option<(f64, i64, DeviceId, Option<Locator>, ReadStatus)> {
        s.map(|s| {
            (
                s.percent.get(),
                s.client_ts.millis(),
                s.device_id,
                s.locator,
                s.status,
            )
        })
    }

    fn devices() -> Vec<DeviceId> {
        (1..=3u128)
            .map(|i| DeviceId(uuid::Uuid::from_u128(i)))
            .collect()
    }

    #[test]
    fn the_five_rules() {
        let [a, b, _] = devices()[..] else {
            unreachable!()
        };
        let first = write(40.0, 1000, a, false);
        let s = apply(None, &first, Timestamp::from_millis(0));
        // 2: forward applies, equal percent goes to the newer clock, then the greater device.
        assert_eq!(decide(Some(&s), &write(41.0, 1, a, false)), Decision::Apply);
        assert_eq!(
            decide(Some(&s), &write(40.0, 1001, a, false)),
            Decision::Apply
        );
        assert_eq!(
            decide(Some(&s), &write(40.0, 999, b, false)),
            Decision::Skip(Reason::Stale)
        );
        let mut tie = write(40.0, 1000, b, false);
        tie.locator = first.locator.clone();
        assert_eq!(
            decide(Some(&s), &tie),
            Decision::Apply,
            "greater device wins a tie"
        );
        // 3: backward without rewind is behind.
        assert_eq!(
            decide(Some(&s), &write(10.0, 5000, b, false)),
            Decision::Skip(Reason::Behind)
        );
        // 4: backward with rewind: newer clock applies, older is stale.
        assert_eq!(
            decide(Some(&s), &write(10.0, 5000, b, true)),
            Decision::Apply
        );
        assert_eq!(
            decide(Some(&s), &write(10.0, 10, b, true)),
            Decision::Skip(Reason::Stale)
        );
        // 5: unread at 0% is a rewind.
        let mut reset = write(0.0, 5000, b, false);
        reset.status = Some(ReadStatus::Unread);
        assert_eq!(decide(Some(&s), &reset), Decision::Apply);
        reset.client_ts = Timestamp::from_millis(10);
        assert_eq!(decide(Some(&s), &reset), Decision::Skip(Reason::Stale));
        // Status follows percent unless given.
        assert_eq!(
            apply(None, &write(100.0, 1, a, false), Timestamp::from_millis(0)).status,
            ReadStatus::Finished
        );
    }

    fn arb_write() -> impl Strategy<Value = ProgressWrite> {
        (0u8..=20, 0i64..50, 0usize..3, 0u8..3).prop_map(|(p, ts, d, loc)| {
            let mut w = write(p as f64 * 5.0, ts, devices()[d], false);
            w.locator = Locator::new(format!("loc-{loc}"));
            w
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Forward writes in any order end in the same state: the maximum.
        #[test]
        fn order_of_forward_writes_does_not_matter(
            writes in prop::collection::vec(arb_write(), 1..24),
            seed in any::<u64>(),
        ) {
            let expected = strip(run(&writes));
            let mut shuffled = writes.clone();
            // Fisher-Yates with a seeded LCG, so failures replay.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (x >> 33) as usize % (i + 1));
            }
            prop_assert_eq!(strip(run(&shuffled)), expected.clone());
            let mut reversed = writes.clone();
            reversed.reverse();
            prop_assert_eq!(strip(run(&reversed)), expected);
        }

        /// Without rewind, percent never goes down, whatever arrives.
        #[test]
        fn never_backward_without_rewind(writes in prop::collection::vec(arb_write(), 1..24)) {
            let mut state: Option<ProgressState> = None;
            for w in &writes {
                let before = state.as_ref().map(|s| s.percent.get());
                if decide(state.as_ref(), w) == Decision::Apply {
                    state = Some(apply(state.as_ref(), w, Timestamp::from_millis(0)));
                }
                if let (Some(b), Some(s)) = (before, &state) {
                    prop_assert!(s.percent.get() >= b);
                }
            }
        }

        /// Delivering any write twice (anywhere later in the stream) changes nothing.
        #[test]
        fn duplicates_are_harmless(
            writes in prop::collection::vec(arb_write(), 1..16),
            dup_idx in prop::collection::vec(any::<prop::sample::Index>(), 1..8),
        ) {
            let expected = strip(run(&writes));
            let mut with_dups = writes.clone();
            for i in dup_idx {
                with_dups.push(writes[i.index(writes.len())].clone());
            }
            prop_assert_eq!(strip(run(&with_dups)), expected);
        }

        /// The latest rewind by client clock wins over older ones, in any order.
        #[test]
        fn latest_rewind_wins(ts in prop::collection::btree_set(100i64..10_000, 2..6)) {
            let dev = devices()[0];
            let base = write(90.0, 1, dev, false);
            let rewinds: Vec<_> = ts.iter().enumerate()
                .map(|(i, &t)| write(i as f64, t, dev, true)).collect();
            let newest = rewinds.last().cloned().unwrap();
            let mut seq = vec![base.clone()];
            seq.extend(rewinds.iter().rev().cloned());
            let s = run(&seq).unwrap();
            prop_assert_eq!(s.client_ts, newest.client_ts);
        }
    }
}
