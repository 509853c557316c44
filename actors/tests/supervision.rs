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
