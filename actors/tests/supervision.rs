//! Storage that breaks under an actor (through [`Faulty`]): a user actor that panics in the
//! middle of a write is restarted by its supervisor, on its own, with every acknowledged write
//! intact; a write the store fails is an error for that write only.

use dogear_actors::placement::{ActorSettings, Placement, user_key};
use dogear_actors::progress::ProgressWrite;
use dogear_actors::user_actor::{UserMsg, UserOp, UserReply};
use dogear_storage::conformance::faults::{Fault, Faulty};
use dogear_storage::conformance::{self, seed_reader};
use dogear_storage::sqlite::{SqliteOptions, SqliteStore};
use dogear_storage::*;
use std::sync::Arc;
use std::time::Duration;

/// A progress write of the seeded reader's book at `pct`, the device clock at `ts` ms.
fn progress_write(seeded: &conformance::Seeded, pct: f64, ts: i64) -> ProgressWrite {
    ProgressWrite {
        event_id: EventId::generate(),
        book_id: seeded.book.id,
        device_id: seeded.device.id,
        percent: Percent::new(pct).unwrap(),
        locator: None,
        status: None,
        client_ts: Timestamp::from_millis(ts),
        rewind: false,
    }
}

/// SQLite in `dir`, wrapped so that calls can be made to fail, seeded with one reader.
async fn faulty_store(
    dir: &std::path::Path,
    name: &str,
) -> (
    Arc<Faulty<SqliteStore>>,
    Arc<dyn Store>,
    conformance::Seeded,
) {
    let faulty = Arc::new(Faulty::new(
        SqliteStore::open(&dir.join("d.db"), SqliteOptions::default()).unwrap(),
    ));
    let store: Arc<dyn Store> = faulty.clone();
    let seeded = seed_reader(store.as_ref(), name).await;
    (faulty, store, seeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_user_actor_is_restarted_with_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    // SQLite, except that the progress write armed below panics.
    let (crashy, store, seeded) = faulty_store(dir.path(), "panicky").await;
    let (user, book) = (seeded.user.id, seeded.book.id);
    let placement = Placement::start(store, ActorSettings::default(), None)
        .await
        .unwrap();
    let write = |pct: f64, ts: i64| progress_write(&seeded, pct, ts);
    let send = |w: ProgressWrite| {
        let p = placement.clone();
        async move {
            let actor = p.user(user).await.unwrap();
            actor
                .call(
                    |reply| {
                        UserMsg::Op(
                            UserOp::Write {
                                write: w,
                                origin: None,
                            },
                            reply,
                        )
                    },
                    Some(Duration::from_secs(5)),
                )
                .await
                .map(|r| r.map(|r| r.and_then(write_outcome)))
        }
    };

    let acked = write(25.0, 1);
    let r = send(acked.clone()).await.unwrap();
    assert!(matches!(r, ractor::rpc::CallResult::Success(Ok(ref o)) if o.applied));
    let before = ractor::registry::where_is(user_key(user)).unwrap().get_id();

    crashy.arm("record_progress", Fault::Panic);
    let r = send(write(50.0, 2)).await;
    assert!(
        !matches!(r, Ok(ractor::rpc::CallResult::Success(_))),
        "the write that crashed the actor got no answer"
    );
    // The supervisor restarts it without anyone asking.
    let mut restarted = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(cell) = ractor::registry::where_is(user_key(user))
            && cell.get_id() != before
        {
            restarted = Some(cell);
            break;
        }
    }
    assert!(
        restarted.is_some(),
        "the supervisor restarted the user actor"
    );

    // Nothing acknowledged was lost, and the actor carries on from storage.
    let view = match placement
        .ask_user(user, UserOp::Get { book })
        .await
        .unwrap()
    {
        UserReply::Progress(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(view.state.as_ref().unwrap().percent.get(), 25.0);
    let again = send(acked).await.unwrap();
    assert!(
        matches!(again, ractor::rpc::CallResult::Success(Ok(ref o)) if o.reason == Some(Reason::Duplicate))
    );
    let next = send(write(60.0, 3)).await.unwrap();
    assert!(
        matches!(next, ractor::rpc::CallResult::Success(Ok(ref o)) if o.applied && o.state.version == 2)
    );
}

/// A store write that fails is an error for that write only: the actor reloads what is
/// stored and the next write goes on, with nothing half-applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_write_fails_that_write_only() {
    let dir = tempfile::tempdir().unwrap();
    let (faulty, store, seeded) = faulty_store(dir.path(), "unlucky").await;
    let placement = Placement::start(store, ActorSettings::default(), None)
        .await
        .unwrap();
    let write = |pct: f64, ts: i64| progress_write(&seeded, pct, ts);
    let send = |w: ProgressWrite| {
        let p = placement.clone();
        async move {
            p.ask_user(
                seeded.user.id,
                UserOp::Write {
                    write: w,
                    origin: None,
                },
            )
            .await
            .and_then(write_outcome)
        }
    };
    faulty.arm("record_progress", Fault::Fail);
    let r = send(write(40.0, 1)).await;
    assert!(
        matches!(r, Err(dogear_actors::AppError::Unavailable(_))),
        "{r:?}"
    );
    assert!(!faulty.pending(), "the fault was hit");
    let o = send(write(30.0, 2)).await.unwrap();
    assert!(
        o.applied && o.state.version == 1,
        "nothing of the failed write: {o:?}"
    );
}

fn write_outcome(
    r: UserReply,
) -> Result<dogear_actors::user_actor::WriteOutcome, dogear_actors::AppError> {
    match r {
        UserReply::Write(o) => Ok(o),
        other => Err(dogear_actors::AppError::Unavailable(format!("{other:?}"))),
    }
}

/// A Kobo's state is merged onto its book's current one, so it waits for writes to that book
/// being stored; writes to other books do not hold it up. Here a web write is held in the
/// store while the reader's Kobo reports two other books, then the web write's book: the
/// two are stored together in the next batch, the third after them, once it could see them
/// (waiting each time would make four store calls, never waiting two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kobo_states_of_other_books_are_batched_behind_a_write_being_stored() {
    use dogear_actors::kobo::KoboReading;
    use dogear_actors::kobo::state::Bookmark;
    use dogear_actors::progress::parts::{DeviceTime, Stamped};
    let dir = tempfile::tempdir().unwrap();
    let (faulty, store, seeded) = faulty_store(dir.path(), "kobo_batches").await;
    let mut others = Vec::new();
    for title in ["Macbeth", "Othello"] {
        let b = conformance::books::book(seeded.library.id, title, "William Shakespeare");
        store.create_book(&b).await.unwrap();
        others.push(b.id);
    }
    let placement = Placement::start(store, ActorSettings::default(), None)
        .await
        .unwrap();
    let actor = placement.user(seeded.user.id).await.unwrap();
    let kobo = |pct: u32| {
        let at = DeviceTime::parse(&format!("2026-12-01T10:00:{pct:02}Z")).unwrap();
        Box::new(KoboReading {
            at: Some(at.clone()),
            bookmark: Some(Stamped {
                at,
                value: Bookmark {
                    percent: Some(pct.into()),
                    source_percent: None,
                    location: None,
                },
            }),
            statistics: None,
            status: None,
        })
    };
    let before = faulty.calls("record_progress");
    faulty.hold("record_progress");
    let (web_tx, web) = tokio::sync::oneshot::channel();
    let web_write = UserOp::Write {
        write: progress_write(&seeded, 10.0, 1),
        origin: None,
    };
    actor
        .send_message(UserMsg::Op(web_write, web_tx.into()))
        .unwrap();
    let mut answers = Vec::new();
    for (i, book) in others.iter().chain([&seeded.book.id]).enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let op = UserOp::KoboWrite {
            reading: kobo(20 + i as u32),
            book: *book,
            device: seeded.device.id,
        };
        actor.send_message(UserMsg::Op(op, tx.into())).unwrap();
        answers.push(rx);
    }
    faulty.release();
    assert!(matches!(web.await.unwrap(), Ok(UserReply::Write(ref o)) if o.applied));
    for (rx, pct) in answers.into_iter().zip([20.0, 21.0, 22.0]) {
        match rx.await.unwrap() {
            Ok(UserReply::Kobo(k)) => {
                assert!(k.write.applied);
                assert_eq!(k.write.state.percent.get(), pct);
            }
            other => panic!("a Kobo write answers with its outcome, got {other:?}"),
        }
    }
    assert_eq!(
        faulty.calls("record_progress") - before,
        3,
        "the held web write, both Kobo writes to other books in one batch, then the last"
    );
}
