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
