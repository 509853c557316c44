//! Deciding many writes of one reader at once. The user's actor takes every write waiting
//! for it, decides them here in arrival order against what is durable, and stores the result
//! as one batch; each caller is answered once that batch is durable.
//!
//! Why this is safe: the decision of a write depends only on the book's state and the
//! events logged before it, and this function threads both through the batch exactly as
//! deciding the writes one by one would (the property test below checks it). Nothing of a
//! plan is visible before the store has made it durable; if the store refuses it, the plan is
//! dropped and the same writes are decided again on what the store holds.

use super::{ProgressWrite, merge};
use crate::messages::WriteOutcome;
use dogear_storage as st;
use dogear_storage::{
    BookId, DevicePosition, EventId, ProgressEvent, ProgressState, Reason, Timestamp, UserId,
};
use std::collections::{HashMap, VecDeque};

/// A write as the owner queues it: the fingerprint of the body as sent (which tells a retry
/// from a reused id) and the write after its clock was bounded.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub write: ProgressWrite,
    pub body: String,
    pub received: Timestamp,
    pub clamped: Option<(Timestamp, Timestamp)>,
}

/// What one write of a batch comes to.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// A new event of the batch (applied or skipped by the merge rule).
    Logged(WriteOutcome),
    /// Its id was logged before with the same body: the first outcome, nothing new.
    Repeat(WriteOutcome),
    /// Its id was logged before with another body.
    Mismatch,
}

/// The decision of a batch: what to store and what to answer once it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The log head after the batch.
    pub head: u64,
    /// The new events, in log order, each with its device's position.
    pub records: Vec<st::ProgressWrite>,
    /// One per queued write, in queue order.
    pub verdicts: Vec<Verdict>,
    /// The books the batch moved, with their final states.
    pub moved: HashMap<BookId, ProgressState>,
}

/// What a retry needs of an event it repeats: where it is in the log, whether it moved the
/// book, and its body's fingerprint (hashed again to 64 bits: a few dozen bytes an entry,
/// where the whole event was several hundred).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub seq: u64,
    pub applied: bool,
    body: u64,
}

impl Seen {
    fn of(e: &ProgressEvent) -> Seen {
        Seen {
            seq: e.seq,
            applied: e.applied,
            body: body_hash(&e.body),
        }
    }
}

fn body_hash(body: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(body.as_bytes())
}

/// The ids of a reader's recent events, so a retry that arrives while the owner is active
/// is answered without a refused batch. Bounded: an id it has forgotten is still refused by
/// the store, which reports the first event, and the batch is decided again.
#[derive(Debug)]
pub struct Recent {
    events: HashMap<EventId, Seen>,
    order: VecDeque<EventId>,
    capacity: usize,
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            events: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, id: &EventId) -> Option<&Seen> {
        self.events.get(id)
    }

    pub fn remember(&mut self, e: &ProgressEvent) {
        if self.events.insert(e.event_id, Seen::of(e)).is_none() {
            self.order.push_back(e.event_id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.events.remove(&old);
            }
        }
    }

    pub fn clear(&mut self) {
        self.events.clear();
        self.order.clear();
    }
}

/// Decides `batch` in order on top of log head `head` and the durable `states` (which must
/// hold every book of the batch; a book missing there has no progress yet).
pub fn decide(
    user: UserId,
    head: u64,
    states: &HashMap<BookId, Option<ProgressState>>,
    recent: &Recent,
    batch: &[Pending],
    now: Timestamp,
) -> Plan {
    let mut plan = Plan {
        head,
        records: Vec::new(),
        verdicts: Vec::with_capacity(batch.len()),
        moved: HashMap::new(),
    };
    // Events of this batch by id, as indexes into `records`.
    let mut fresh: HashMap<EventId, usize> = HashMap::new();
    for p in batch {
        let w = &p.write;
        let current = plan
            .moved
            .get(&w.book_id)
            .cloned()
            .or_else(|| states.get(&w.book_id).cloned().flatten());
        let first = fresh
            .get(&w.event_id)
            .map(|i| {
                let e = &plan.records[*i].event;
                (Seen::of(e), Some(&e.state))
            })
            .or_else(|| recent.get(&w.event_id).map(|s| (*s, None)));
        if let Some((first, logged_state)) = first {
            // An event of this reader's log always has its book's state (a write that was
            // not applied was compared against one), so `current` is there; the logged
            // state is only the fallback for a book whose state this batch created.
            let state = current.or_else(|| logged_state.cloned());
            plan.verdicts.push(match state {
                _ if first.body != body_hash(&p.body) => Verdict::Mismatch,
                Some(state) => Verdict::Repeat(WriteOutcome {
                    applied: first.applied,
                    reason: Some(Reason::Duplicate),
                    state,
                    seq: first.seq,
                    clamped: p.clamped,
                }),
                None => Verdict::Mismatch,
            });
            continue;
        }
        let (applied, reason, after) = match (merge::decide(current.as_ref(), w), current) {
            (merge::Decision::Skip(r), Some(cur)) => (false, Some(r), cur),
            (_, cur) => (true, None, merge::apply(cur.as_ref(), w, now)),
        };
        let seq = plan.head + 1;
        let record = st::ProgressWrite {
            user_id: user,
            expected_seq: plan.head,
            event: ProgressEvent {
                seq,
                event_id: w.event_id,
                book_id: w.book_id,
                device_id: w.device_id,
                body: p.body.clone(),
                applied,
                reason,
                state: after.clone(),
                received_at: p.received,
            },
            position: DevicePosition {
                device_id: w.device_id,
                book_id: w.book_id,
                percent: w.percent,
                locator: w.locator.clone(),
                client_ts: w.client_ts,
            },
        };
        plan.head = seq;
        fresh.insert(w.event_id, plan.records.len());
        plan.records.push(record);
        if applied {
            plan.moved.insert(w.book_id, after.clone());
        }
        plan.verdicts.push(Verdict::Logged(WriteOutcome {
            applied,
            reason,
            state: after,
            seq,
            clamped: p.clamped,
        }));
    }
    plan
}

impl Plan {
    /// Makes the plan the owner's durable view, once the store has stored it.
    pub fn settle(&self, states: &mut HashMap<BookId, Option<ProgressState>>, recent: &mut Recent) {
        for (book, state) in &self.moved {
            states.insert(*book, Some(state.clone()));
        }
        for r in &self.records {
            recent.remember(&r.event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dogear_storage::{DeviceId, Locator, Percent};
    use proptest::prelude::*;

    /// A write from a small pool: few ids (so some repeat, with the same or another body),
    /// two books, three devices, percents that go back and forth, rewinds.
    fn pending(id: u8, book: u8, dev: u8, pct: u8, ts: u16, rewind: bool) -> Pending {
        let write = ProgressWrite {
            event_id: EventId(uuid::Uuid::from_u128(u128::from(id) + 1)),
            book_id: BookId(uuid::Uuid::from_u128(u128::from(book % 2) + 100)),
            device_id: DeviceId(uuid::Uuid::from_u128(u128::from(dev % 3) + 200)),
            percent: Percent::new(f64::from(pct % 101)).unwrap(),
            locator: Locator::new(format!("loc-{pct}")),
            status: None,
            client_ts: Timestamp::from_millis(i64::from(ts)),
            rewind,
        };
        Pending {
            body: write.fingerprint(),
            write,
            received: Timestamp::from_millis(5),
            clamped: None,
        }
    }

    fn user() -> UserId {
        UserId(uuid::Uuid::from_u128(7))
    }

    /// Decides `writes` in batches cut at `cuts`, settling each plan before the next, as the
    /// owner does; returns every verdict, every record and the final states.
    fn run(
        writes: &[Pending],
        cuts: &[usize],
    ) -> (
        Vec<Verdict>,
        Vec<st::ProgressWrite>,
        HashMap<BookId, Option<ProgressState>>,
    ) {
        let mut head = 0;
        let mut states = HashMap::new();
        let mut recent = Recent::new(1024);
        let (mut verdicts, mut records) = (Vec::new(), Vec::new());
        let mut start = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (writes.len() + 1)).collect();
        bounds.push(writes.len());
        bounds.sort_unstable();
        for end in bounds {
            if end < start {
                continue;
            }
            let plan = decide(
                user(),
                head,
                &states,
                &recent,
                &writes[start..end],
                Timestamp::from_millis(9),
            );
            plan.settle(&mut states, &mut recent);
            head = plan.head;
            verdicts.extend(plan.verdicts);
            records.extend(plan.records);
            start = end;
        }
        (verdicts, records, states)
    }

    fn arb_writes() -> impl Strategy<Value = Vec<Pending>> {
        prop::collection::vec(
            (
                0u8..12,
                0u8..2,
                0u8..3,
                0u8..101,
                0u16..50,
                prop::bool::weighted(0.1),
            ),
            1..60,
        )
        .prop_map(|ws| {
            ws.into_iter()
                .map(|(id, b, d, p, ts, rw)| pending(id, b, d, p, ts, rw))
                .collect()
        })
    }

    proptest! {
        /// Batches decided together give exactly what the same writes give decided one at a
        /// time: the same answers, the same log, the same states.
        #[test]
        fn batches_decide_like_single_writes(
            writes in arb_writes(),
            cuts in prop::collection::vec(0usize..64, 0..6),
        ) {
            let singles: Vec<usize> = (0..writes.len()).collect();
            let one_by_one = run(&writes, &singles);
            let batched = run(&writes, &cuts);
            prop_assert_eq!(&batched.0, &one_by_one.0);
            prop_assert_eq!(&batched.1, &one_by_one.1);
            prop_assert_eq!(&batched.2, &one_by_one.2);
        }

        /// The log a batch writes is gapless and holds each id once; a book's state only
        /// goes back through a rewind.
        #[test]
        fn a_batch_log_is_gapless_and_forward(writes in arb_writes()) {
            let (verdicts, records, _) = run(&writes, &[]);
            let seqs: Vec<u64> = records.iter().map(|r| r.event.seq).collect();
            prop_assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());
            let mut ids = std::collections::HashSet::new();
            for r in &records {
                prop_assert!(ids.insert(r.event.event_id), "an id logged twice");
            }
            let mut last: HashMap<BookId, ProgressState> = HashMap::new();
            for (p, v) in writes.iter().zip(&verdicts) {
                if let Verdict::Logged(o) = v
                    && o.applied
                {
                    if let Some(prev) = last.get(&p.write.book_id) {
                        prop_assert!(
                            o.state.percent >= prev.percent || merge::is_rewind(&p.write),
                            "moved back without a rewind"
                        );
                        prop_assert_eq!(o.state.version, prev.version + 1);
                    }
                    last.insert(p.write.book_id, o.state.clone());
                }
            }
        }
    }

    #[test]
    fn a_reused_id_with_another_body_in_the_same_batch_is_a_mismatch() {
        let a = pending(1, 0, 0, 10, 1, false);
        let b = pending(1, 0, 0, 20, 2, false);
        let plan = decide(
            user(),
            0,
            &HashMap::new(),
            &Recent::new(8),
            &[a.clone(), b, a],
            Timestamp::from_millis(9),
        );
        assert_eq!(plan.records.len(), 1);
        assert_eq!(plan.verdicts[1], Verdict::Mismatch);
        assert!(
            matches!(&plan.verdicts[2], Verdict::Repeat(o) if o.seq == 1 && o.applied),
            "{:?}",
            plan.verdicts[2]
        );
    }

    #[test]
    fn recent_ids_are_bounded() {
        let mut r = Recent::new(2);
        let plan = decide(
            user(),
            0,
            &HashMap::new(),
            &r,
            &[
                pending(1, 0, 0, 1, 1, false),
                pending(2, 0, 0, 2, 2, false),
                pending(3, 0, 0, 3, 3, false),
            ],
            Timestamp::from_millis(9),
        );
        let mut states = HashMap::new();
        plan.settle(&mut states, &mut r);
        assert!(r.get(&EventId(uuid::Uuid::from_u128(2))).is_none());
        assert!(r.get(&EventId(uuid::Uuid::from_u128(4))).is_some());
    }
}
