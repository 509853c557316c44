//! Actors over a real SQLite store: writes to one user serialize, and an actor killed in
//! the middle of its life comes back with every acknowledged write.

use dogear_actors::AppError;
use dogear_actors::placement::{ActorSettings, Placement, user_key};
use dogear_actors::progress::ProgressWrite;
use dogear_actors::user_actor::{UserOp, UserReply, WriteOutcome};
use dogear_storage::conformance::seed_reader;
use dogear_storage::sqlite::{SqliteOptions, SqliteStore};
use dogear_storage::*;
use std::sync::Arc;
use std::time::Duration;

struct World {
    _dir: tempfile::TempDir,
    placement: Placement,
    user: UserId,
    device: DeviceId,
    book: BookId,
}

async fn world(name: &str, idle: Duration) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("d.db"), SqliteOptions::default()).unwrap());
    let seeded = seed_reader(store.as_ref(), name).await;
    let settings = ActorSettings {
        idle_timeout: idle,
        socket_queue: 8,
        ..Default::default()
    };
    let placement = Placement::start(store, settings, None).await.unwrap();
    World {
        _dir: dir,
        placement,
        user: seeded.user.id,
        device: seeded.device.id,
        book: seeded.book.id,
    }
}

fn write(w: &World, pct: f64, ts: i64) -> ProgressWrite {
    ProgressWrite {
        event_id: EventId::generate(),
        book_id: w.book,
        device_id: w.device,
        percent: Percent::new(pct).unwrap(),
        locator: None,
        status: None,
        client_ts: Timestamp::from_millis(ts),
        rewind: false,
    }
}

async fn send(p: &Placement, user: UserId, w: ProgressWrite) -> Result<WriteOutcome, AppError> {
    match p
        .ask_user(
            user,
            UserOp::Write {
                write: w,
                origin: None,
            },
        )
        .await?
    {
        UserReply::Write(o) => Ok(o),
        other => Err(AppError::Unavailable(format!("{other:?}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_one_user_serialize() {
    let w = Arc::new(world("serial", Duration::from_secs(600)).await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            send(&w.placement, w.user, write(&w, i as f64, i)).await
        }));
    }
    let mut applied = 0;
    let mut versions = Vec::new();
    for t in tasks {
        let o = t.await.unwrap().unwrap();
        if o.applied {
            applied += 1;
            versions.push(o.state.version);
        }
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=applied).collect::<Vec<u64>>(),
        "one version per applied write, no gaps"
    );
    let view = w
        .placement
        .ask_user(w.user, UserOp::Get { book: w.book })
        .await
        .map(progress_view)
        .unwrap();
    assert_eq!(
        view.state.unwrap().percent.get(),
        63.0,
        "the maximum wins whatever the order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_user_actor_comes_back_with_its_writes() {
    let w = world("killed", Duration::from_secs(600)).await;
    let first = write(&w, 10.0, 1);
    let o = send(&w.placement, w.user, first.clone()).await.unwrap();
    assert!(o.applied);
    let cell = ractor::registry::where_is(user_key(w.user)).expect("user actor is running");
    let old_id = cell.get_id();
    cell.kill();
    // Restarted by its supervisor or on next use: either way with the stored state.
    let o = send(&w.placement, w.user, write(&w, 20.0, 2))
        .await
        .unwrap();
    assert!(o.applied);
    assert_eq!(o.state.version, 2, "the new actor continued from storage");
    let again = send(&w.placement, w.user, first).await.unwrap();
    assert_eq!(
        again.reason,
        Some(Reason::Duplicate),
        "the acknowledged event is remembered"
    );
    let now = ractor::registry::where_is(user_key(w.user)).unwrap();
    assert_ne!(now.get_id(), old_id, "a new actor serves the key");
}

/// Ten idle minutes pass in an instant: the actors' clock is tokio's, paused and advanced
/// here, so the test neither sleeps nor depends on the machine's speed.
#[tokio::test(flavor = "current_thread")]
async fn idle_actors_stop_and_come_back() {
    let w = world("idler", Duration::from_secs(600)).await;
    send(&w.placement, w.user, write(&w, 30.0, 1))
        .await
        .unwrap();
    assert!(ractor::registry::where_is(user_key(w.user)).is_some());
    tokio::time::pause();
    // Not yet: nine minutes of quiet.
    tokio::time::advance(Duration::from_secs(540)).await;
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(
        ractor::registry::where_is(user_key(w.user)).is_some(),
        "stopped before its timeout"
    );
    tokio::time::advance(Duration::from_secs(120)).await;
    let mut gone = false;
    for _ in 0..1000 {
        tokio::task::yield_now().await;
        if ractor::registry::where_is(user_key(w.user)).is_none() {
            gone = true;
            break;
        }
    }
    tokio::time::resume();
    assert!(gone, "the idle actor stopped");
    let o = send(&w.placement, w.user, write(&w, 31.0, 2))
        .await
        .unwrap();
    assert_eq!(o.state.version, 2);
}

fn progress_view(r: UserReply) -> dogear_actors::user_actor::ProgressView {
    match r {
        UserReply::Progress(v) => v,
        other => panic!("{other:?}"),
    }
}
