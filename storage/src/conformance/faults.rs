//! Fault injection for tests: [`Faulty`] wraps any store and makes one named call fail or
//! panic, so a test of what happens when storage breaks is a few lines:
//!
//! ```ignore
//! let store = Arc::new(Faulty::new(sqlite));
//! store.arm("record_progress", Fault::Panic);
//! ```
//!
//! Every other call passes through unchanged. Compiled with the `conformance` feature only.

use crate::error::StoreError;
use crate::ids::*;
use crate::reading::{
    DocQuery, IdempotentAnswer, Related, Relation, RelationKind, RelationOp, UserBook, UserDoc,
};
use crate::records::*;
use crate::sharing::{AuditDraft, AuditEntry, Invite, SharingOp};
use crate::store::{RotateOutcome, Store};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::sync::Mutex;

/// What an armed call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Panics, as a bug in the backend would (the caller's actor crashes).
    Panic,
    /// Answers `StoreError::Unavailable`, as a full disk or a lost connection would.
    Fail,
}

/// A store whose calls can be made to fail, one at a time, or wait.
pub struct Faulty<S> {
    pub inner: S,
    /// Armed faults: the method's name, what it does, and how many more calls it hits.
    armed: Mutex<Vec<(&'static str, Fault, usize)>>,
    /// Methods whose calls wait until [`Faulty::release`] (only those that can: see
    /// [`Faulty::hold`]), and whether they are released.
    held: Mutex<Vec<&'static str>>,
    open: tokio::sync::watch::Sender<bool>,
    /// How many times each method was called.
    calls: Mutex<std::collections::HashMap<&'static str, usize>>,
}

impl<S: Store> Faulty<S> {
    pub fn new(inner: S) -> Faulty<S> {
        Faulty {
            inner,
            armed: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            open: tokio::sync::watch::Sender::new(true),
            calls: Mutex::new(Default::default()),
        }
    }

    /// Calls of `method` wait until [`Faulty::release`], as behind a slow disk. Only
    /// `record_progress` waits so far.
    pub fn hold(&self, method: &'static str) {
        if let Ok(mut h) = self.held.lock() {
            h.push(method);
        }
        self.open.send_replace(false);
    }

    /// Lets every held call go on, and the calls after them.
    pub fn release(&self) {
        if let Ok(mut h) = self.held.lock() {
            h.clear();
        }
        self.open.send_replace(true);
    }

    /// How many times `method` was called so far.
    pub fn calls(&self, method: &'static str) -> usize {
        self.calls
            .lock()
            .map(|c| c.get(method).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    async fn wait_if_held(&self, method: &'static str) {
        let held = self.held.lock().is_ok_and(|h| h.contains(&method));
        if held {
            // Subscribed after the check: a release in between is seen as `true` at once.
            let _ = self.open.subscribe().wait_for(|open| *open).await;
        }
    }

    /// The next call of `method` does `fault`.
    pub fn arm(&self, method: &'static str, fault: Fault) {
        self.arm_times(method, fault, 1);
    }

    /// The next `times` calls of `method` do `fault`.
    pub fn arm_times(&self, method: &'static str, fault: Fault, times: usize) {
        if let (Ok(mut a), true) = (self.armed.lock(), times > 0) {
            a.push((method, fault, times));
        }
    }

    /// Whether any armed fault is still waiting for its call.
    pub fn pending(&self) -> bool {
        self.armed.lock().map(|a| !a.is_empty()).unwrap_or(false)
    }

    fn fault(&self, method: &'static str) -> Result<(), StoreError> {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(method).or_default() += 1;
        }
        let hit = {
            let Ok(mut armed) = self.armed.lock() else {
                return Ok(());
            };
            let Some(i) = armed.iter().position(|(m, _, _)| *m == method) else {
                return Ok(());
            };
            let fault = armed[i].1;
            armed[i].2 -= 1;
            if armed[i].2 == 0 {
                armed.remove(i);
            }
            fault
        };
        match hit {
            Fault::Panic => panic!("injected fault: {method} panicked"),
            Fault::Fail => Err(StoreError::Unavailable(format!(
                "injected fault: {method} failed"
            ))),
        }
    }
}

#[async_trait]
impl<S: Store> Store for Faulty<S> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.fault("ping")?;
        self.inner.ping().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.fault("close")?;
        self.inner.close().await
    }
    async fn create_user(&self, u: &User, l: &Library) -> Result<(), StoreError> {
        self.fault("create_user")?;
        self.inner.create_user(u, l).await
    }
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.fault("user")?;
        self.inner.user(id).await
    }
    async fn user_by_name(&self, n: &str) -> Result<Option<User>, StoreError> {
        self.fault("user_by_name")?;
        self.inner.user_by_name(n).await
    }
    async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<(), StoreError> {
        self.fault("insert_refresh_token")?;
        self.inner.insert_refresh_token(t).await
    }
    async fn rotate_refresh_token(
        &self,
        o: &str,
        n: &str,
        now: Timestamp,
        e: Timestamp,
    ) -> Result<RotateOutcome, StoreError> {
        self.fault("rotate_refresh_token")?;
        self.inner.rotate_refresh_token(o, n, now, e).await
    }
    async fn revoke_refresh_family(&self, h: &str) -> Result<(), StoreError> {
        self.fault("revoke_refresh_family")?;
        self.inner.revoke_refresh_family(h).await
    }
    async fn create_device(&self, d: &Device) -> Result<(), StoreError> {
        self.fault("create_device")?;
        self.inner.create_device(d).await
    }
    async fn devices(&self, u: UserId) -> Result<Vec<Device>, StoreError> {
        self.fault("devices")?;
        self.inner.devices(u).await
    }
    async fn delete_device(&self, u: UserId, d: DeviceId) -> Result<bool, StoreError> {
        self.fault("delete_device")?;
        self.inner.delete_device(u, d).await
    }
    async fn library(&self, id: LibraryId) -> Result<Option<Library>, StoreError> {
        self.fault("library")?;
        self.inner.library(id).await
    }
    async fn memberships(&self, l: LibraryId) -> Result<Vec<Membership>, StoreError> {
        self.fault("memberships")?;
        self.inner.memberships(l).await
    }
    async fn libraries_of(&self, u: UserId) -> Result<Vec<(Library, Role)>, StoreError> {
        self.fault("libraries_of")?;
        self.inner.libraries_of(u).await
    }
    async fn create_book(&self, b: &Book) -> Result<(), StoreError> {
        self.fault("create_book")?;
        self.inner.create_book(b).await
    }
    async fn book(&self, id: BookId) -> Result<Option<Book>, StoreError> {
        self.fault("book")?;
        self.inner.book(id).await
    }
    async fn update_book(&self, b: &Book) -> Result<(), StoreError> {
        self.fault("update_book")?;
        self.inner.update_book(b).await
    }
    async fn list_books(&self, q: &BookQuery) -> Result<Vec<Book>, StoreError> {
        self.fault("list_books")?;
        self.inner.list_books(q).await
    }
    async fn first_admin(&self) -> Result<Option<String>, StoreError> {
        self.fault("first_admin")?;
        self.inner.first_admin().await
    }
    async fn book_by_hash(&self, l: LibraryId, h: &str) -> Result<Option<BookId>, StoreError> {
        self.fault("book_by_hash")?;
        self.inner.book_by_hash(l, h).await
    }
    async fn register_import(
        &self,
        b: &Book,
        s: Option<&SourceFile>,
        j: Option<&ImportJob>,
    ) -> Result<RegisterOutcome, StoreError> {
        self.fault("register_import")?;
        self.inner.register_import(b, s, j).await
    }
    async fn upsert_job(&self, j: &ImportJob) -> Result<(), StoreError> {
        self.fault("upsert_job")?;
        self.inner.upsert_job(j).await
    }
    async fn job(&self, id: JobId) -> Result<Option<ImportJob>, StoreError> {
        self.fault("job")?;
        self.inner.job(id).await
    }
    async fn claim_jobs(
        &self,
        now: Timestamp,
        n: usize,
        node: &str,
    ) -> Result<Vec<ImportJob>, StoreError> {
        self.fault("claim_jobs")?;
        self.inner.claim_jobs(now, n, node).await
    }
    async fn requeue_running_jobs(&self, node: &str) -> Result<u64, StoreError> {
        self.fault("requeue_running_jobs")?;
        self.inner.requeue_running_jobs(node).await
    }
    async fn requeue_jobs_of(&self, lost: &[String]) -> Result<u64, StoreError> {
        self.fault("requeue_jobs_of")?;
        self.inner.requeue_jobs_of(lost).await
    }
    async fn requeue_abandoned_jobs(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.fault("requeue_abandoned_jobs")?;
        self.inner.requeue_abandoned_jobs(before).await
    }
    async fn next_job_at(&self, node: &str) -> Result<Option<Timestamp>, StoreError> {
        self.fault("next_job_at")?;
        self.inner.next_job_at(node).await
    }
    async fn list_jobs(
        &self,
        l: &[LibraryId],
        s: Option<JobState>,
        b: Option<JobId>,
        n: usize,
    ) -> Result<Vec<ImportJob>, StoreError> {
        self.fault("list_jobs")?;
        self.inner.list_jobs(l, s, b, n).await
    }
    async fn job_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        self.fault("job_counts")?;
        self.inner.job_counts().await
    }
    async fn source_files(&self, s: &str) -> Result<Vec<SourceFile>, StoreError> {
        self.fault("source_files")?;
        self.inner.source_files(s).await
    }
    async fn source_files_of_book(&self, b: BookId) -> Result<Vec<SourceFile>, StoreError> {
        self.fault("source_files_of_book")?;
        self.inner.source_files_of_book(b).await
    }
    async fn put_source_files(
        &self,
        u: &[SourceFile],
        r: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.fault("put_source_files")?;
        self.inner.put_source_files(u, r).await
    }
    async fn progress_head(&self, u: UserId) -> Result<u64, StoreError> {
        self.fault("progress_head")?;
        self.inner.progress_head(u).await
    }
    async fn record_progress_batch(
        &self,
        u: UserId,
        w: &[crate::ProgressWrite],
    ) -> Result<crate::BatchOutcome, StoreError> {
        self.fault("record_progress")?;
        self.wait_if_held("record_progress").await;
        self.inner.record_progress_batch(u, w).await
    }
    async fn progress_state(
        &self,
        u: UserId,
        b: BookId,
    ) -> Result<Option<ProgressState>, StoreError> {
        self.fault("progress_state")?;
        self.inner.progress_state(u, b).await
    }
    async fn progress_states(
        &self,
        u: UserId,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<ProgressState>, StoreError> {
        self.fault("progress_states")?;
        self.inner.progress_states(u, after, limit).await
    }
    async fn device_positions(
        &self,
        u: UserId,
        b: BookId,
    ) -> Result<Vec<DevicePosition>, StoreError> {
        self.fault("device_positions")?;
        self.inner.device_positions(u, b).await
    }
    async fn progress_changes(
        &self,
        u: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ProgressState)>, StoreError> {
        self.fault("progress_changes")?;
        self.inner.progress_changes(u, after, limit).await
    }
    async fn progress_states_of(
        &self,
        u: UserId,
        books: &[BookId],
    ) -> Result<Vec<ProgressState>, StoreError> {
        self.fault("progress_states_of")?;
        self.inner.progress_states_of(u, books).await
    }
    async fn books_changed(
        &self,
        l: LibraryId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Book)>, StoreError> {
        self.fault("books_changed")?;
        self.inner.books_changed(l, after, limit).await
    }
    async fn put_shelf(&self, s: &Shelf) -> Result<Shelf, StoreError> {
        self.fault("put_shelf")?;
        self.inner.put_shelf(s).await
    }
    async fn shelf(&self, id: ShelfId) -> Result<Option<Shelf>, StoreError> {
        self.fault("shelf")?;
        self.inner.shelf(id).await
    }
    async fn shelves(&self, u: UserId) -> Result<Vec<Shelf>, StoreError> {
        self.fault("shelves")?;
        self.inner.shelves(u).await
    }
    async fn library_shelves(&self, l: &[LibraryId]) -> Result<Vec<Shelf>, StoreError> {
        self.fault("library_shelves")?;
        self.inner.library_shelves(l).await
    }
    async fn shelves_changed(
        &self,
        u: UserId,
        l: &[LibraryId],
        after: u64,
        limit: usize,
    ) -> Result<Vec<Shelf>, StoreError> {
        self.fault("shelves_changed")?;
        self.inner.shelves_changed(u, l, after, limit).await
    }
    async fn create_kobo_device(&self, d: &Device, t: &KoboToken) -> Result<(), StoreError> {
        self.fault("create_kobo_device")?;
        self.inner.create_kobo_device(d, t).await
    }
    async fn kobo_token(&self, h: &str) -> Result<Option<KoboToken>, StoreError> {
        self.fault("kobo_token")?;
        self.inner.kobo_token(h).await
    }
    async fn kobo_tokens(&self, u: UserId) -> Result<Vec<KoboToken>, StoreError> {
        self.fault("kobo_tokens")?;
        self.inner.kobo_tokens(u).await
    }
    async fn kobo_sync_state(&self, d: DeviceId) -> Result<Option<String>, StoreError> {
        self.fault("kobo_sync_state")?;
        self.inner.kobo_sync_state(d).await
    }
    async fn kobo_ledger(
        &self,
        d: DeviceId,
        books: &[BookId],
    ) -> Result<Vec<KoboLedgerEntry>, StoreError> {
        self.fault("kobo_ledger")?;
        self.inner.kobo_ledger(d, books).await
    }
    async fn kobo_ledger_outside(
        &self,
        d: DeviceId,
        libs: &[LibraryId],
        limit: usize,
    ) -> Result<Vec<KoboLedgerEntry>, StoreError> {
        self.fault("kobo_ledger_outside")?;
        self.inner.kobo_ledger_outside(d, libs, limit).await
    }
    async fn kobo_tags(&self, d: DeviceId) -> Result<Vec<ShelfId>, StoreError> {
        self.fault("kobo_tags")?;
        self.inner.kobo_tags(d).await
    }
    async fn save_kobo_sync(&self, d: DeviceId, w: &KoboSyncWrite) -> Result<(), StoreError> {
        self.fault("save_kobo_sync")?;
        self.inner.save_kobo_sync(d, w).await
    }
    async fn set_kobo_archived(
        &self,
        d: DeviceId,
        b: BookId,
        archived: bool,
    ) -> Result<bool, StoreError> {
        self.fault("set_kobo_archived")?;
        self.inner.set_kobo_archived(d, b, archived).await
    }
    async fn books_without_koreader(
        &self,
        a: Option<BookId>,
        l: usize,
    ) -> Result<Vec<Book>, StoreError> {
        self.fault("books_without_koreader")?;
        self.inner.books_without_koreader(a, l).await
    }
    async fn books_version(&self, l: &[LibraryId]) -> Result<u64, StoreError> {
        self.fault("books_version")?;
        self.inner.books_version(l).await
    }
    async fn book_facets(
        &self,
        l: &[LibraryId],
        f: BookFacet,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.fault("book_facets")?;
        self.inner.book_facets(l, f).await
    }
    async fn create_koreader_device(
        &self,
        d: &Device,
        l: &KoreaderLogin,
    ) -> Result<(), StoreError> {
        self.fault("create_koreader_device")?;
        self.inner.create_koreader_device(d, l).await
    }
    async fn koreader_login(&self, n: &str) -> Result<Option<KoreaderLogin>, StoreError> {
        self.fault("koreader_login")?;
        self.inner.koreader_login(n).await
    }
    async fn koreader_logins(&self, u: UserId) -> Result<Vec<KoreaderLogin>, StoreError> {
        self.fault("koreader_logins")?;
        self.inner.koreader_logins(u).await
    }
    async fn koreader_books(&self, d: &str) -> Result<Vec<BookId>, StoreError> {
        self.fault("koreader_books")?;
        self.inner.koreader_books(d).await
    }
    async fn put_koreader_position(&self, p: &KoreaderPosition) -> Result<bool, StoreError> {
        self.fault("put_koreader_position")?;
        self.inner.put_koreader_position(p).await
    }
    async fn koreader_position(
        &self,
        u: UserId,
        d: &str,
    ) -> Result<Option<KoreaderPosition>, StoreError> {
        self.fault("koreader_position")?;
        self.inner.koreader_position(u, d).await
    }
    async fn unattached_koreader_positions(
        &self,
        d: &[String],
    ) -> Result<Vec<KoreaderPosition>, StoreError> {
        self.fault("unattached_koreader_positions")?;
        self.inner.unattached_koreader_positions(d).await
    }
    async fn attach_koreader_position(
        &self,
        u: UserId,
        d: &str,
        b: BookId,
    ) -> Result<(), StoreError> {
        self.fault("attach_koreader_position")?;
        self.inner.attach_koreader_position(u, d, b).await
    }
    async fn create_opds_device(&self, d: &Device, t: &OpdsToken) -> Result<(), StoreError> {
        self.fault("create_opds_device")?;
        self.inner.create_opds_device(d, t).await
    }
    async fn opds_token(&self, h: &str) -> Result<Option<OpdsToken>, StoreError> {
        self.fault("opds_token")?;
        self.inner.opds_token(h).await
    }
    async fn opds_tokens(&self, u: UserId) -> Result<Vec<OpdsToken>, StoreError> {
        self.fault("opds_tokens")?;
        self.inner.opds_tokens(u).await
    }
    async fn sharing_write(
        &self,
        ops: &[SharingOp],
        a: &AuditDraft,
    ) -> Result<AuditEntry, StoreError> {
        self.fault("sharing_write")?;
        self.inner.sharing_write(ops, a).await
    }
    async fn invites(&self, l: LibraryId) -> Result<Vec<Invite>, StoreError> {
        self.fault("invites")?;
        self.inner.invites(l).await
    }
    async fn invite_by_code(&self, h: &str) -> Result<Option<Invite>, StoreError> {
        self.fault("invite_by_code")?;
        self.inner.invite_by_code(h).await
    }
    async fn invite(&self, id: InviteId) -> Result<Option<Invite>, StoreError> {
        self.fault("invite")?;
        self.inner.invite(id).await
    }
    async fn audit_entries(
        &self,
        l: LibraryId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.fault("audit_entries")?;
        self.inner.audit_entries(l, after, limit).await
    }
    async fn audited_libraries(&self) -> Result<Vec<LibraryId>, StoreError> {
        self.fault("audited_libraries")?;
        self.inner.audited_libraries().await
    }
    async fn purge_audit(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.fault("purge_audit")?;
        self.inner.purge_audit(before).await
    }
    async fn user_book(&self, u: UserId, b: BookId) -> Result<Option<UserBook>, StoreError> {
        self.fault("user_book")?;
        self.inner.user_book(u, b).await
    }
    async fn user_books(
        &self,
        u: UserId,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<UserBook>, StoreError> {
        self.fault("user_books")?;
        self.inner.user_books(u, after, limit).await
    }
    async fn put_user_books(
        &self,
        u: UserId,
        books: &[UserBook],
        answer: Option<&IdempotentAnswer>,
    ) -> Result<(), StoreError> {
        self.fault("put_user_books")?;
        self.inner.put_user_books(u, books, answer).await
    }
    async fn idempotent_answer(
        &self,
        u: UserId,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<IdempotentAnswer>, StoreError> {
        self.fault("idempotent_answer")?;
        self.inner.idempotent_answer(u, key, now).await
    }
    async fn purge_idempotent_answers(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.fault("purge_idempotent_answers")?;
        self.inner.purge_idempotent_answers(before).await
    }
    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.fault("users")?;
        self.inner.users().await
    }
    async fn update_user(&self, u: &User) -> Result<bool, StoreError> {
        self.fault("update_user")?;
        self.inner.update_user(u).await
    }
    async fn revoke_user_sessions(&self, u: UserId) -> Result<(), StoreError> {
        self.fault("revoke_user_sessions")?;
        self.inner.revoke_user_sessions(u).await
    }
    async fn token_cutoffs(&self, since: Timestamp) -> Result<Vec<(UserId, u64)>, StoreError> {
        self.fault("token_cutoffs")?;
        self.inner.token_cutoffs(since).await
    }
    async fn delete_user(
        &self,
        u: UserId,
        now: Timestamp,
    ) -> Result<Option<Vec<FileLocation>>, StoreError> {
        self.fault("delete_user")?;
        self.inner.delete_user(u, now).await
    }

    async fn relate(&self, ops: &[RelationOp]) -> Result<(), StoreError> {
        self.fault("relate")?;
        self.inner.relate(ops).await
    }
    async fn relations_between(&self, a: UserId, b: UserId) -> Result<Vec<Relation>, StoreError> {
        self.fault("relations_between")?;
        self.inner.relations_between(a, b).await
    }
    async fn relations_of(
        &self,
        user: UserId,
        kind: RelationKind,
        incoming: bool,
    ) -> Result<Vec<Related>, StoreError> {
        self.fault("relations_of")?;
        self.inner.relations_of(user, kind, incoming).await
    }

    async fn put_doc(&self, doc: &UserDoc) -> Result<UserDoc, StoreError> {
        self.fault("put_doc")?;
        self.inner.put_doc(doc).await
    }
    async fn doc(&self, u: UserId, id: DocId) -> Result<Option<UserDoc>, StoreError> {
        self.fault("doc")?;
        self.inner.doc(u, id).await
    }
    async fn docs(&self, q: &DocQuery) -> Result<Vec<UserDoc>, StoreError> {
        self.fault("docs")?;
        self.inner.docs(q).await
    }
}
