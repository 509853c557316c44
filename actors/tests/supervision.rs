//! A user actor that panics in the middle of a write is restarted by its supervisor, on its
//! own, with every acknowledged write intact.

use async_trait::async_trait;
use dogear_actors::placement::{ActorSettings, Placement, user_key};
use dogear_actors::progress::ProgressWrite;
use dogear_actors::user_actor::UserMsg;
use dogear_storage::conformance::seed_reader;
use dogear_storage::sqlite::{SqliteOptions, SqliteStore};
use dogear_storage::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// SQLite, except that the next progress write panics when `armed` is set.
struct Crashy {
    inner: SqliteStore,
    armed: AtomicBool,
}

#[async_trait]
impl Store for Crashy {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
    async fn create_user(&self, u: &User, l: &Library) -> Result<(), StoreError> {
        self.inner.create_user(u, l).await
    }
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.inner.user(id).await
    }
    async fn user_by_name(&self, n: &str) -> Result<Option<User>, StoreError> {
        self.inner.user_by_name(n).await
    }
    async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<(), StoreError> {
        self.inner.insert_refresh_token(t).await
    }
    async fn rotate_refresh_token(
        &self,
        o: &str,
        n: &str,
        now: Timestamp,
        e: Timestamp,
    ) -> Result<RotateOutcome, StoreError> {
        self.inner.rotate_refresh_token(o, n, now, e).await
    }
    async fn revoke_refresh_family(&self, h: &str) -> Result<(), StoreError> {
        self.inner.revoke_refresh_family(h).await
    }
    async fn create_device(&self, d: &Device) -> Result<(), StoreError> {
        self.inner.create_device(d).await
    }
    async fn devices(&self, u: UserId) -> Result<Vec<Device>, StoreError> {
        self.inner.devices(u).await
    }
    async fn delete_device(&self, u: UserId, d: DeviceId) -> Result<bool, StoreError> {
        self.inner.delete_device(u, d).await
    }
    async fn library(&self, id: LibraryId) -> Result<Option<Library>, StoreError> {
        self.inner.library(id).await
    }
    async fn memberships(&self, l: LibraryId) -> Result<Vec<Membership>, StoreError> {
        self.inner.memberships(l).await
    }
    async fn libraries_of(&self, u: UserId) -> Result<Vec<(Library, Role)>, StoreError> {
        self.inner.libraries_of(u).await
    }
    async fn create_book(&self, b: &Book) -> Result<(), StoreError> {
        self.inner.create_book(b).await
    }
    async fn book(&self, id: BookId) -> Result<Option<Book>, StoreError> {
        self.inner.book(id).await
    }
    async fn update_book(&self, b: &Book) -> Result<(), StoreError> {
        self.inner.update_book(b).await
    }
    async fn list_books(&self, q: &BookQuery) -> Result<Vec<Book>, StoreError> {
        self.inner.list_books(q).await
    }
    async fn first_admin(&self) -> Result<Option<String>, StoreError> {
        self.inner.first_admin().await
    }
    async fn book_by_hash(&self, l: LibraryId, h: &str) -> Result<Option<BookId>, StoreError> {
        self.inner.book_by_hash(l, h).await
    }
    async fn register_import(
        &self,
        b: &Book,
        s: Option<&SourceFile>,
        j: Option<&ImportJob>,
    ) -> Result<RegisterOutcome, StoreError> {
        self.inner.register_import(b, s, j).await
    }
    async fn upsert_job(&self, j: &ImportJob) -> Result<(), StoreError> {
        self.inner.upsert_job(j).await
    }
    async fn job(&self, id: JobId) -> Result<Option<ImportJob>, StoreError> {
        self.inner.job(id).await
    }
    async fn claim_jobs(&self, now: Timestamp, n: usize) -> Result<Vec<ImportJob>, StoreError> {
        self.inner.claim_jobs(now, n).await
    }
    async fn requeue_running_jobs(&self) -> Result<u64, StoreError> {
        self.inner.requeue_running_jobs().await
    }
    async fn next_job_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.next_job_at().await
    }
    async fn list_jobs(
        &self,
        l: &[LibraryId],
        s: Option<JobState>,
        b: Option<JobId>,
        n: usize,
    ) -> Result<Vec<ImportJob>, StoreError> {
        self.inner.list_jobs(l, s, b, n).await
    }
    async fn job_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        self.inner.job_counts().await
    }
    async fn source_files(&self, s: &str) -> Result<Vec<SourceFile>, StoreError> {
        self.inner.source_files(s).await
    }
    async fn source_files_of_book(&self, b: BookId) -> Result<Vec<SourceFile>, StoreError> {
        self.inner.source_files_of_book(b).await
    }
    async fn put_source_files(
        &self,
        u: &[SourceFile],
        r: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.inner.put_source_files(u, r).await
    }
    async fn progress_head(&self, u: UserId) -> Result<u64, StoreError> {
        self.inner.progress_head(u).await
    }
    async fn record_progress(
        &self,
        w: &dogear_storage::ProgressWrite,
    ) -> Result<RecordOutcome, StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("injected crash in the middle of a progress write");
        }
        self.inner.record_progress(w).await
    }
    async fn progress_state(
        &self,
        u: UserId,
        b: BookId,
    ) -> Result<Option<ProgressState>, StoreError> {
        self.inner.progress_state(u, b).await
    }
    async fn progress_states(
        &self,
        u: UserId,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<ProgressState>, StoreError> {
        self.inner.progress_states(u, after, limit).await
    }
    async fn device_positions(
        &self,
        u: UserId,
        b: BookId,
    ) -> Result<Vec<DevicePosition>, StoreError> {
        self.inner.device_positions(u, b).await
    }
    async fn progress_changes(
        &self,
        u: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ProgressState)>, StoreError> {
        self.inner.progress_changes(u, after, limit).await
    }
    async fn progress_states_of(
        &self,
        u: UserId,
        books: &[BookId],
    ) -> Result<Vec<ProgressState>, StoreError> {
        self.inner.progress_states_of(u, books).await
    }
    async fn books_changed(
        &self,
        l: LibraryId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Book)>, StoreError> {
        self.inner.books_changed(l, after, limit).await
    }
    async fn put_shelf(&self, s: &Shelf) -> Result<Shelf, StoreError> {
        self.inner.put_shelf(s).await
    }
    async fn shelf(&self, id: ShelfId) -> Result<Option<Shelf>, StoreError> {
        self.inner.shelf(id).await
    }
    async fn shelves(&self, u: UserId) -> Result<Vec<Shelf>, StoreError> {
        self.inner.shelves(u).await
    }
    async fn shelves_changed(
        &self,
        u: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Shelf>, StoreError> {
        self.inner.shelves_changed(u, after, limit).await
    }
    async fn create_kobo_device(&self, d: &Device, t: &KoboToken) -> Result<(), StoreError> {
        self.inner.create_kobo_device(d, t).await
    }
    async fn kobo_token(&self, h: &str) -> Result<Option<KoboToken>, StoreError> {
        self.inner.kobo_token(h).await
    }
    async fn kobo_tokens(&self, u: UserId) -> Result<Vec<KoboToken>, StoreError> {
        self.inner.kobo_tokens(u).await
    }
    async fn kobo_sync_state(&self, d: DeviceId) -> Result<Option<String>, StoreError> {
        self.inner.kobo_sync_state(d).await
    }
    async fn kobo_ledger(
        &self,
        d: DeviceId,
        books: &[BookId],
    ) -> Result<Vec<KoboLedgerEntry>, StoreError> {
        self.inner.kobo_ledger(d, books).await
    }
    async fn kobo_ledger_outside(
        &self,
        d: DeviceId,
        libs: &[LibraryId],
        limit: usize,
    ) -> Result<Vec<KoboLedgerEntry>, StoreError> {
        self.inner.kobo_ledger_outside(d, libs, limit).await
    }
    async fn kobo_tags(&self, d: DeviceId) -> Result<Vec<ShelfId>, StoreError> {
        self.inner.kobo_tags(d).await
    }
    async fn save_kobo_sync(&self, d: DeviceId, w: &KoboSyncWrite) -> Result<(), StoreError> {
        self.inner.save_kobo_sync(d, w).await
    }
    async fn set_kobo_archived(
        &self,
        d: DeviceId,
        b: BookId,
        archived: bool,
    ) -> Result<bool, StoreError> {
        self.inner.set_kobo_archived(d, b, archived).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_user_actor_is_restarted_with_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let crashy = Arc::new(Crashy {
        inner: SqliteStore::open(&dir.path().join("d.db"), SqliteOptions::default()).unwrap(),
        armed: AtomicBool::new(false),
    });
    let store: Arc<dyn Store> = crashy.clone();
    let seeded = seed_reader(store.as_ref(), "panicky").await;
    let (user, device, book) = (seeded.user, seeded.device, seeded.book);
    let placement = Placement::start(store, ActorSettings::default())
        .await
        .unwrap();
    let write = |pct: f64, ts: i64| ProgressWrite {
        event_id: EventId::generate(),
        book_id: book.id,
        device_id: device.id,
        percent: Percent::new(pct).unwrap(),
        locator: None,
        status: None,
        client_ts: Timestamp::from_millis(ts),
        rewind: false,
    };
    let send = |w: ProgressWrite| {
        let p = placement.clone();
        async move {
            let actor = p.user(user.id).await.unwrap();
            actor
                .call(
                    |reply| UserMsg::Write {
                        write: w,
                        origin: None,
                        reply,
                    },
                    Some(Duration::from_secs(5)),
                )
                .await
        }
    };

    let acked = write(25.0, 1);
    let r = send(acked.clone()).await.unwrap();
    assert!(matches!(r, ractor::rpc::CallResult::Success(Ok(ref o)) if o.applied));
    let before = ractor::registry::where_is(user_key(user.id))
        .unwrap()
        .get_id();

    crashy.armed.store(true, Ordering::SeqCst);
    let r = send(write(50.0, 2)).await;
    assert!(
        !matches!(r, Ok(ractor::rpc::CallResult::Success(_))),
        "the write that crashed the actor got no answer"
    );
    // The supervisor restarts it without anyone asking.
    let mut restarted = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(cell) = ractor::registry::where_is(user_key(user.id))
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
    let view = placement
        .call_user(user.id, |reply| UserMsg::Get {
            book: book.id,
            reply,
        })
        .await
        .unwrap()
        .unwrap();
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
