//! The progress log and state: appends with an expected sequence, duplicates by event id,
//! device positions, the changes feed, and concurrent writers.

use super::*;

pub(super) fn state(b: BookId, d: DeviceId, pct: f64, version: u64) -> ProgressState {
    ProgressState {
        book_id: b,
        percent: Percent::new(pct).unwrap(),
        locator: Locator::new(format!("epubcfi(/6/{pct})")),
        status: ReadStatus::Reading,
        device_id: d,
        client_ts: Timestamp::now(),
        updated_at: Timestamp::now(),
        version,
    }
}

pub(super) fn write(user: UserId, seq: u64, applied: bool, st: ProgressState) -> ProgressWrite {
    let event = ProgressEvent {
        seq,
        event_id: EventId::generate(),
        book_id: st.book_id,
        device_id: st.device_id,
        body: format!("body-{seq}"),
        applied,
        reason: (!applied).then_some(Reason::Behind),
        state: st.clone(),
        received_at: Timestamp::now(),
    };
    ProgressWrite {
        user_id: user,
        expected_seq: seq - 1,
        position: DevicePosition {
            device_id: st.device_id,
            book_id: st.book_id,
            percent: st.percent,
            locator: st.locator.clone(),
            client_ts: st.client_ts,
        },
        event,
    }
}

/// The next applied write of a seeded reader's one book after log head `head` (every write
/// of that reader applied, so the book's state version equals the seq): what two owners
/// racing for the same version would both send.
pub fn write_at(r: &Seeded, head: u64, pct: f64) -> ProgressWrite {
    write(
        r.user.id,
        head + 1,
        true,
        state(r.book.id, r.device.id, pct, head + 1),
    )
}

pub async fn progress(s: &dyn Store) {
    let (u, lib) = new_user("conf_progress");
    let (other, other_lib) = new_user("conf_progress_other");
    s.create_user(&u, &lib).await.unwrap();
    s.create_user(&other, &other_lib).await.unwrap();
    let b = BookId::generate();
    let d1 = DeviceId::generate();
    let d2 = DeviceId::generate();
    assert_eq!(
        s.progress_head(u.id).await.unwrap(),
        0,
        "empty log has head 0"
    );
    assert_eq!(s.progress_state(u.id, b).await.unwrap(), None);

    let w1 = write(u.id, 1, true, state(b, d1, 10.0, 1));
    assert_eq!(
        s.record_progress(&w1).await.unwrap(),
        RecordOutcome::Recorded
    );
    assert_eq!(s.progress_head(u.id).await.unwrap(), 1);
    assert_eq!(
        s.progress_state(u.id, b).await.unwrap(),
        Some(w1.event.state.clone())
    );

    // The same event id again: nothing written, the first event returned.
    let mut again = w1.clone();
    again.expected_seq = 1;
    again.event.seq = 2;
    match s.record_progress(&again).await.unwrap() {
        RecordOutcome::Duplicate(e) => {
            assert_eq!(e.seq, 1);
            assert_eq!(e.body, w1.event.body);
            assert!(e.applied);
        }
        other => panic!("a repeated event id must be Duplicate, got {other:?}"),
    }
    assert_eq!(
        s.progress_head(u.id).await.unwrap(),
        1,
        "duplicate leaves the head"
    );

    // A stale owner (expects head 0) is refused.
    let stale = write(u.id, 1, true, state(b, d2, 50.0, 2));
    match s.record_progress(&stale).await {
        Err(StoreError::VersionConflict {
            expected: 0,
            found: 1,
        }) => {}
        other => panic!("a write on an old head must be VersionConflict, got {other:?}"),
    }
    // A state version that skips one is refused, and nothing of that write stays.
    let skip = write(u.id, 2, true, state(b, d2, 50.0, 5));
    assert!(matches!(
        s.record_progress(&skip).await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(
        s.progress_head(u.id).await.unwrap(),
        1,
        "a refused write leaves no event"
    );

    // Not applied (behind): logged and the device position kept, the state unchanged.
    let mut behind = write(u.id, 2, false, w1.event.state.clone());
    behind.position.device_id = d2;
    behind.position.percent = Percent::new(3.0).unwrap();
    assert_eq!(
        s.record_progress(&behind).await.unwrap(),
        RecordOutcome::Recorded
    );
    assert_eq!(
        s.progress_state(u.id, b).await.unwrap(),
        Some(w1.event.state.clone())
    );
    let positions = s.device_positions(u.id, b).await.unwrap();
    assert_eq!(positions.len(), 2, "both devices' last positions are kept");
    assert!(
        positions
            .iter()
            .any(|p| p.device_id == d2 && p.percent.get() == 3.0)
    );

    let w3 = write(u.id, 3, true, state(b, d2, 60.0, 2));
    assert_eq!(
        s.record_progress(&w3).await.unwrap(),
        RecordOutcome::Recorded
    );
    let b2 = BookId::generate();
    let w4 = write(u.id, 4, true, state(b2, d1, 1.0, 1));
    s.record_progress(&w4).await.unwrap();

    let changes = s.progress_changes(u.id, 0, 100).await.unwrap();
    let seqs: Vec<u64> = changes.iter().map(|(q, _)| *q).collect();
    assert_eq!(
        seqs,
        vec![1, 3, 4],
        "changes are applied events only, in order"
    );
    assert_eq!(changes[1].1, w3.event.state);
    let after = s.progress_changes(u.id, 3, 100).await.unwrap();
    assert_eq!(after.len(), 1, "changes after a cursor");
    assert_eq!(
        s.progress_changes(u.id, 0, 1).await.unwrap().len(),
        1,
        "limit"
    );
    assert_eq!(
        s.progress_states(u.id, None, 10).await.unwrap().len(),
        2,
        "one state per book"
    );
    let first = s.progress_states(u.id, None, 1).await.unwrap();
    assert_eq!(first.len(), 1, "states honour the limit");
    let rest = s
        .progress_states(u.id, Some(first[0].book_id), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1, "states page by book id");
    assert!(rest[0].book_id > first[0].book_id);
    assert!(
        s.progress_states(other.id, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "progress is per user"
    );
    assert!(
        s.progress_changes(other.id, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.progress_head(other.id).await.unwrap(), 0);
    // Event ids are scoped to their user.
    let mut theirs = w1.clone();
    theirs.user_id = other.id;
    theirs.expected_seq = 0;
    assert_eq!(
        s.record_progress(&theirs).await.unwrap(),
        RecordOutcome::Recorded
    );

    // Many concurrent writers for different users all commit (group commit).
    let mut users = Vec::new();
    for i in 0..32 {
        let (cu, cl) = new_user(&format!("conf_many_{i}"));
        s.create_user(&cu, &cl).await.unwrap();
        users.push(cu.id);
    }
    let futs = users.iter().map(|&uid| async move {
        s.record_progress(&write(uid, 1, true, state(b, d1, 5.0, 1)))
            .await
    });
    for r in futures_join_all(futs).await {
        assert_eq!(r.unwrap(), RecordOutcome::Recorded);
    }
    for uid in users {
        assert_eq!(s.progress_head(uid).await.unwrap(), 1);
    }
}

/// A chain of writes as one batch, from log head `head`: `books[i]` is the book of write
/// `i`, `applied[i]` whether it moves that book (each applied write of a book takes the
/// book's next version, starting after `versions`).
fn chain(
    user: UserId,
    head: u64,
    d: DeviceId,
    books: &[BookId],
    applied: &[bool],
    versions: &mut BTreeMap<BookId, u64>,
) -> Vec<ProgressWrite> {
    books
        .iter()
        .zip(applied)
        .enumerate()
        .map(|(i, (b, a))| {
            let seq = head + 1 + i as u64;
            let v = versions.entry(*b).or_insert(0);
            if *a {
                *v += 1;
            }
            write(user, seq, *a, state(*b, d, seq as f64, *v))
        })
        .collect()
}

/// Batches: all of a batch or none of it, duplicates reported before anything is written,
/// and a moved log or book state refusing the whole batch.
pub async fn batches(s: &dyn Store) {
    let (u, lib) = new_user("conf_batches");
    s.create_user(&u, &lib).await.unwrap();
    let (b1, b2) = (BookId::generate(), BookId::generate());
    let d = DeviceId::generate();
    let mut versions = BTreeMap::new();

    let first = chain(
        u.id,
        0,
        d,
        &[b1, b1, b2, b1],
        &[true, true, true, false],
        &mut versions,
    );
    assert_eq!(
        s.record_progress_batch(u.id, &first).await.unwrap(),
        BatchOutcome::Recorded
    );
    assert_eq!(
        s.progress_head(u.id).await.unwrap(),
        4,
        "a batch of four moves the head by four"
    );
    let st1 = s
        .progress_state(u.id, b1)
        .await
        .unwrap()
        .expect("book 1 has a state");
    assert_eq!(st1.version, 2, "two applied writes of book 1 in one batch");
    assert_eq!(
        st1, first[1].event.state,
        "the last applied write of book 1 is its state"
    );
    let positions = s.device_positions(u.id, b1).await.unwrap();
    assert_eq!(
        positions[0].percent, first[3].position.percent,
        "a skipped write in a batch still records the device's position"
    );
    assert_eq!(
        s.record_progress_batch(u.id, &[]).await.unwrap(),
        BatchOutcome::Recorded
    );

    // A batch holding a logged id: nothing of it is written, the first event comes back.
    let mut again = chain(u.id, 4, d, &[b2, b2], &[true, true], &mut versions.clone());
    again[1].event.event_id = first[2].event.event_id;
    match s.record_progress_batch(u.id, &again).await.unwrap() {
        BatchOutcome::Duplicates(found) => {
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].seq, 3, "the duplicate names the first event's seq");
            assert_eq!(found[0].body, first[2].event.body);
        }
        other => panic!("a logged id in a batch must be reported, got {other:?}"),
    }
    assert_eq!(
        s.progress_head(u.id).await.unwrap(),
        4,
        "a refused batch writes nothing"
    );

    // Another owner moved the log: refused whole.
    let stale = chain(u.id, 3, d, &[b2], &[true], &mut versions.clone());
    assert!(
        matches!(
            s.record_progress_batch(u.id, &stale).await,
            Err(StoreError::VersionConflict { .. })
        ),
        "a batch based on an old head is a version conflict"
    );
    // A book state moved under the batch's last write: its first writes are rolled back.
    let mut moved = chain(u.id, 4, d, &[b2, b1], &[true, true], &mut versions.clone());
    moved[1].event.state.version = 7;
    assert!(
        matches!(
            s.record_progress_batch(u.id, &moved).await,
            Err(StoreError::VersionConflict { .. })
        ),
        "an applied write on a moved book state is a version conflict"
    );
    assert_eq!(
        s.progress_head(u.id).await.unwrap(),
        4,
        "the refused batch left no event"
    );
    assert_eq!(
        s.progress_state(u.id, b2)
            .await
            .unwrap()
            .map(|st| st.version),
        Some(1),
        "the refused batch left no state"
    );
    // A batch that is not a chain is refused before the store is touched.
    let mut gap = chain(u.id, 4, d, &[b2, b2], &[true, true], &mut versions.clone());
    gap[1].event.seq += 1;
    assert!(
        s.record_progress_batch(u.id, &gap).await.is_err(),
        "a gap in a batch is refused"
    );
    let next = chain(u.id, 4, d, &[b2, b2], &[true, true], &mut versions);
    assert_eq!(
        s.record_progress_batch(u.id, &next).await.unwrap(),
        BatchOutcome::Recorded
    );
    let changes = s.progress_changes(u.id, 0, 100).await.unwrap();
    assert_eq!(
        changes.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 5, 6],
        "the feed holds every applied event of every batch, in seq order"
    );
}
