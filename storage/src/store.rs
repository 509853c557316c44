//! The one trait every backend implements. Methods are small and named for what they store;
//! every write that could race with another owner carries the version it expects.

use crate::error::StoreError;
use crate::ids::*;
use crate::reading::{
    DocQuery, IdempotentAnswer, Related, Relation, RelationKind, RelationOp, UserBook, UserDoc,
};
use crate::records::*;
use crate::sharing::{AuditDraft, AuditEntry, Invite, SharingOp};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;

/// What happened to a progress write at the store.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordOutcome {
    /// Stored and durable.
    Recorded,
    /// The user already has an event with this id; nothing was written.
    Duplicate(Box<ProgressEvent>),
}

/// What happened to a batch of one user's progress writes at the store.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchOutcome {
    /// Every write of the batch is stored and durable.
    Recorded,
    /// Some of the batch's event ids are in the user's log already: nothing of the batch was
    /// written. These are the events first logged under those ids, so the owner can decide
    /// the batch again knowing them.
    Duplicates(Vec<ProgressEvent>),
}

/// Takes a submitted progress batch's outcome ([`Store::submit_progress_batch`]) once.
/// Dropped without one (a writer that stopped with the batch in its queue), it reports the
/// store unavailable, so the submitter never waits for an answer that cannot come. Dropped
/// by a panic, it is dropped uncalled: what the closure holds is dropped (a channel then
/// closes), so the submitter learns that the store panicked rather than that it refused.
pub struct BatchDone(Option<TakeOutcome>);

type TakeOutcome = Box<dyn FnOnce(Result<BatchOutcome, StoreError>) + Send>;

impl BatchDone {
    pub fn new(f: impl FnOnce(Result<BatchOutcome, StoreError>) + Send + 'static) -> BatchDone {
        BatchDone(Some(Box::new(f)))
    }

    pub fn call(mut self, outcome: Result<BatchOutcome, StoreError>) {
        if let Some(f) = self.0.take() {
            f(outcome);
        }
    }

    /// Drops it uncalled, as a panic does: the store panicked storing the batch.
    pub fn abandon(mut self) {
        drop(self.0.take());
    }
}

impl Drop for BatchDone {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Some(f) = self.0.take() {
            f(Err(StoreError::Unavailable(
                "the progress batch was dropped unanswered".into(),
            )));
        }
    }
}

/// What happened when a refresh token was presented for rotation.
#[derive(Clone, Debug, PartialEq)]
pub enum RotateOutcome {
    /// The old token is now spent and the new one stored in its family.
    Rotated { user_id: UserId },
    /// The token had been used or revoked already: its whole family is now revoked.
    Reused,
    /// No such token, or it has expired.
    Invalid,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Flushes and closes; later calls fail with `Unavailable`.
    async fn close(&self) -> Result<(), StoreError>;

    // Users and their personal library, created together or not at all.
    async fn create_user(&self, user: &User, personal: &Library) -> Result<(), StoreError>;
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// The user name of the earliest administrator, if any.
    async fn first_admin(&self) -> Result<Option<String>, StoreError>;

    // Refresh tokens.
    async fn insert_refresh_token(&self, token: &RefreshToken) -> Result<(), StoreError>;
    /// Spends the token `old_hash` and stores `new_hash` in its family (same user), valid
    /// until `expires_at`. A spent or revoked token revokes its whole family instead.
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<RotateOutcome, StoreError>;
    /// Revokes the family of this token; unknown tokens are ignored.
    async fn revoke_refresh_family(&self, hash: &str) -> Result<(), StoreError>;

    // Devices.
    async fn create_device(&self, device: &Device) -> Result<(), StoreError>;
    async fn devices(&self, user: UserId) -> Result<Vec<Device>, StoreError>;
    /// Deletes the device if it belongs to `user`; `false` if there was none.
    async fn delete_device(&self, user: UserId, id: DeviceId) -> Result<bool, StoreError>;

    // Libraries.
    async fn library(&self, id: LibraryId) -> Result<Option<Library>, StoreError>;
    async fn memberships(&self, library: LibraryId) -> Result<Vec<Membership>, StoreError>;
    async fn libraries_of(&self, user: UserId) -> Result<Vec<(Library, Role)>, StoreError>;

    // Books.
    async fn create_book(&self, book: &Book) -> Result<(), StoreError>;
    /// Also returns tombstones.
    async fn book(&self, id: BookId) -> Result<Option<Book>, StoreError>;
    /// Replaces the book if the stored version is `book.version - 1`.
    async fn update_book(&self, book: &Book) -> Result<(), StoreError>;
    /// Live books only, in the query's order.
    async fn list_books(&self, query: &BookQuery) -> Result<Vec<Book>, StoreError>;
    /// Every value of `facet` among the live books of `libraries` that have a file, with its
    /// number of books, ordered case-insensitively (a catalog's browse list).
    async fn book_facets(
        &self,
        libraries: &[LibraryId],
        facet: BookFacet,
    ) -> Result<Vec<(String, u64)>, StoreError>;
    /// Live books with a file but no KOReader digest for any (stored before Dogear computed
    /// them), ordered by id, after `after`, at most `limit`.
    async fn books_without_koreader(
        &self,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<Book>, StoreError>;
    /// The newest change number of any book of `libraries` (0 if none): a list computed
    /// from their books is still right while this has not moved.
    async fn books_version(&self, libraries: &[LibraryId]) -> Result<u64, StoreError>;
    /// The live book of `library` that has a file with this content hash.
    async fn book_by_hash(
        &self,
        library: LibraryId,
        hash: &str,
    ) -> Result<Option<BookId>, StoreError>;
    /// Creates an imported book unless a live book of its library already has one of its
    /// content hashes, and in the same transaction records the source file it came from
    /// and its job's final state, so that a crash never leaves a book without its job
    /// done (or the reverse) and a retried job finds its own book as the duplicate.
    async fn register_import(
        &self,
        book: &Book,
        source: Option<&SourceFile>,
        job: Option<&ImportJob>,
    ) -> Result<RegisterOutcome, StoreError>;

    // The import queue.
    async fn upsert_job(&self, job: &ImportJob) -> Result<(), StoreError>;
    async fn job(&self, id: JobId) -> Result<Option<ImportJob>, StoreError>;
    /// Marks up to `limit` queued jobs due by `now` that `node` may run (theirs, or any
    /// node's) as running, claimed by `node`, and returns them. Nodes claiming at the same
    /// time never get the same job.
    async fn claim_jobs(
        &self,
        now: Timestamp,
        limit: usize,
        node: &str,
    ) -> Result<Vec<ImportJob>, StoreError>;
    /// Puts the jobs `node` was running back in the queue (at its start-up).
    async fn requeue_running_jobs(&self, node: &str) -> Result<u64, StoreError>;
    /// Puts jobs claimed by these (lost) nodes back in the queue, those any node may run:
    /// a job tied to a lost node's disk waits for that node.
    async fn requeue_jobs_of(&self, lost: &[String]) -> Result<u64, StoreError>;
    /// Puts back in the queue the jobs marked running by no node (`dogear import` runs its
    /// own) whose last change is older than `before`: a command killed midway leaves them.
    async fn requeue_abandoned_jobs(&self, before: Timestamp) -> Result<u64, StoreError>;
    /// When the earliest queued job `node` may run is due.
    async fn next_job_at(&self, node: &str) -> Result<Option<Timestamp>, StoreError>;
    async fn job_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError>;
    /// Jobs of these libraries, newest first, optionally in one state, older than `before`.
    async fn list_jobs(
        &self,
        libraries: &[LibraryId],
        state: Option<JobState>,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<ImportJob>, StoreError>;

    // What watched folders and Calibre libraries held at their last scan.
    async fn source_files(&self, source: &str) -> Result<Vec<SourceFile>, StoreError>;
    async fn source_files_of_book(&self, book: BookId) -> Result<Vec<SourceFile>, StoreError>;
    /// Upserts and removes (source, path) entries in one transaction.
    async fn put_source_files(
        &self,
        upserts: &[SourceFile],
        removals: &[(String, String)],
    ) -> Result<(), StoreError>;

    // Reading progress.
    /// The user's log head: the seq of their last event, 0 if none.
    async fn progress_head(&self, user: UserId) -> Result<u64, StoreError>;
    /// Appends one user's writes to their log in one atomic, durable step (one transaction,
    /// one round trip): all of them or none. Their seqs follow each other from the first
    /// write's `expected_seq + 1`; a seq already taken (another owner wrote) is a
    /// `VersionConflict`, as is an applied write whose book state is not at the version
    /// before its own.
    async fn record_progress_batch(
        &self,
        user: UserId,
        writes: &[ProgressWrite],
    ) -> Result<BatchOutcome, StoreError>;
    /// [`Store::record_progress_batch`] without waiting for it: `done` takes the outcome
    /// once the batch is durable or refused, on whichever thread ends it. Why: a user's
    /// owner stores batch after batch while taking new writes, and a task per batch only to
    /// wait for the store cost a spawn and two more wake-ups on every batch.
    fn submit_progress_batch(
        self: Arc<Self>,
        user: UserId,
        writes: Vec<ProgressWrite>,
        done: BatchDone,
    ) {
        tokio::spawn(async move {
            use futures_util::FutureExt;
            let stored = std::panic::AssertUnwindSafe(self.record_progress_batch(user, &writes))
                .catch_unwind()
                .await;
            match stored {
                Ok(r) => done.call(r),
                Err(panic) => {
                    done.abandon();
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }

    /// One write on its own: a batch of one.
    async fn record_progress(&self, write: &ProgressWrite) -> Result<RecordOutcome, StoreError> {
        match self
            .record_progress_batch(write.user_id, std::slice::from_ref(write))
            .await?
        {
            BatchOutcome::Recorded => Ok(RecordOutcome::Recorded),
            BatchOutcome::Duplicates(mut first) => match first.pop() {
                Some(e) => Ok(RecordOutcome::Duplicate(Box::new(e))),
                None => Err(StoreError::Corrupt("duplicate without its event".into())),
            },
        }
    }
    async fn progress_state(
        &self,
        user: UserId,
        book: BookId,
    ) -> Result<Option<ProgressState>, StoreError>;
    /// Current states of the user's books ordered by book id, those after `after`, at most
    /// `limit`.
    async fn progress_states(
        &self,
        user: UserId,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<ProgressState>, StoreError>;
    async fn device_positions(
        &self,
        user: UserId,
        book: BookId,
    ) -> Result<Vec<DevicePosition>, StoreError>;
    /// Applied events after `after_seq`, oldest first, with their seq.
    async fn progress_changes(
        &self,
        user: UserId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ProgressState)>, StoreError>;

    /// Current states of these books of the user (those that have one).
    async fn progress_states_of(
        &self,
        user: UserId,
        books: &[BookId],
    ) -> Result<Vec<ProgressState>, StoreError>;

    // Change feeds for devices that sync by difference.
    /// Books of `library` written after change `after` (tombstones included), in change
    /// order, with their change numbers.
    async fn books_changed(
        &self,
        library: LibraryId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Book)>, StoreError>;

    // Shelves.
    /// Creates the shelf (`change_seq` 0) or replaces it if its stored change number is still
    /// `shelf.change_seq` (what its writer read), else `VersionConflict`; the store gives it
    /// the next change number.
    async fn put_shelf(&self, shelf: &Shelf) -> Result<Shelf, StoreError>;
    /// Also returns tombstones.
    async fn shelf(&self, id: ShelfId) -> Result<Option<Shelf>, StoreError>;
    /// The user's own live shelves (not libraries'), oldest first.
    async fn shelves(&self, user: UserId) -> Result<Vec<Shelf>, StoreError>;
    /// The live shelves of these libraries, oldest first.
    async fn library_shelves(&self, libraries: &[LibraryId]) -> Result<Vec<Shelf>, StoreError>;
    /// The user's own shelves and those of `libraries` written after change `after`
    /// (tombstones included), in order.
    async fn shelves_changed(
        &self,
        user: UserId,
        libraries: &[LibraryId],
        after: u64,
        limit: usize,
    ) -> Result<Vec<Shelf>, StoreError>;

    // Kobo devices.
    /// Creates the device and its token together.
    async fn create_kobo_device(
        &self,
        device: &Device,
        token: &KoboToken,
    ) -> Result<(), StoreError>;
    async fn kobo_token(&self, token_hash: &str) -> Result<Option<KoboToken>, StoreError>;
    async fn kobo_tokens(&self, user: UserId) -> Result<Vec<KoboToken>, StoreError>;
    /// The device's stored sync position, opaque to the store.
    async fn kobo_sync_state(&self, device: DeviceId) -> Result<Option<String>, StoreError>;
    /// The ledger entries of these books (those that have one).
    async fn kobo_ledger(
        &self,
        device: DeviceId,
        books: &[BookId],
    ) -> Result<Vec<KoboLedgerEntry>, StoreError>;
    /// Entries not marked removed whose library is not one of `libraries`.
    async fn kobo_ledger_outside(
        &self,
        device: DeviceId,
        libraries: &[LibraryId],
        limit: usize,
    ) -> Result<Vec<KoboLedgerEntry>, StoreError>;
    /// Shelves the device was given and not told to delete.
    async fn kobo_tags(&self, device: DeviceId) -> Result<Vec<ShelfId>, StoreError>;
    /// Commits one sync page's position, ledger and tag changes in one transaction.
    async fn save_kobo_sync(
        &self,
        device: DeviceId,
        write: &KoboSyncWrite,
    ) -> Result<(), StoreError>;
    /// Marks a delivered book archived (or not) on the device; `false` if never delivered.
    async fn set_kobo_archived(
        &self,
        device: DeviceId,
        book: BookId,
        archived: bool,
    ) -> Result<bool, StoreError>;

    // KOReader.
    /// Creates the device and its login together; a user name already taken is
    /// `Conflict("koreader username")`.
    async fn create_koreader_device(
        &self,
        device: &Device,
        login: &KoreaderLogin,
    ) -> Result<(), StoreError>;
    async fn koreader_login(&self, username: &str) -> Result<Option<KoreaderLogin>, StoreError>;
    async fn koreader_logins(&self, user: UserId) -> Result<Vec<KoreaderLogin>, StoreError>;
    /// Books (tombstones included) one of whose files, or served names, KOReader may call
    /// `digest`: every digest a book ever had, so copies already on devices keep matching.
    async fn koreader_books(&self, digest: &str) -> Result<Vec<BookId>, StoreError>;
    /// Stores the position for (user, document) unless the stored one is further along
    /// (a higher `percentage`); `true` if it was stored.
    async fn put_koreader_position(&self, p: &KoreaderPosition) -> Result<bool, StoreError>;
    async fn koreader_position(
        &self,
        user: UserId,
        document: &str,
    ) -> Result<Option<KoreaderPosition>, StoreError>;
    /// Positions of any user under these digests not attached to a book yet.
    async fn unattached_koreader_positions(
        &self,
        digests: &[String],
    ) -> Result<Vec<KoreaderPosition>, StoreError>;
    async fn attach_koreader_position(
        &self,
        user: UserId,
        document: &str,
        book: BookId,
    ) -> Result<(), StoreError>;

    // OPDS tokens.
    /// Creates the device and its token together.
    async fn create_opds_device(
        &self,
        device: &Device,
        token: &OpdsToken,
    ) -> Result<(), StoreError>;
    async fn opds_token(&self, token_hash: &str) -> Result<Option<OpdsToken>, StoreError>;
    async fn opds_tokens(&self, user: UserId) -> Result<Vec<OpdsToken>, StoreError>;

    // Sharing (see `crate::sharing`).

    /// Applies a sharing action's changes and appends its audit entry (numbered and chained
    /// here) in one transaction; returns the entry. Nothing is written if any op fails.
    async fn sharing_write(
        &self,
        ops: &[SharingOp],
        audit: &AuditDraft,
    ) -> Result<AuditEntry, StoreError>;
    /// A library's invitations, oldest first (revoked and used-up ones included).
    async fn invites(&self, library: LibraryId) -> Result<Vec<Invite>, StoreError>;
    /// The invitation with this code hash, whatever its state.
    async fn invite_by_code(&self, code_hash: &str) -> Result<Option<Invite>, StoreError>;
    async fn invite(&self, id: InviteId) -> Result<Option<Invite>, StoreError>;
    /// A library's audit entries after `after` (0: from the first), in order.
    async fn audit_entries(
        &self,
        library: LibraryId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// Every library with an audit log, deleted ones included.
    async fn audited_libraries(&self) -> Result<Vec<LibraryId>, StoreError>;
    /// Removes the whole audit log of every library deleted before `deleted_before`; the
    /// number of entries removed. Live libraries' logs are never removed.
    async fn purge_audit(&self, deleted_before: Timestamp) -> Result<u64, StoreError>;

    // Readers' own records of books (see `crate::reading`).

    async fn user_book(&self, user: UserId, book: BookId) -> Result<Option<UserBook>, StoreError>;
    /// The user's records ordered by book id, those after `after`, at most `limit`.
    async fn user_books(
        &self,
        user: UserId,
        after: Option<BookId>,
        limit: usize,
    ) -> Result<Vec<UserBook>, StoreError>;
    /// Stores these records of `user` (each creates the record when its version is 1, else
    /// replaces the stored one at `version - 1`, else `VersionConflict`) and, when given,
    /// the answer of the request that made them, in one transaction. An answer whose key is
    /// held by an unexpired answer is `Conflict("idempotency key")` and nothing is written.
    async fn put_user_books(
        &self,
        user: UserId,
        books: &[UserBook],
        answer: Option<&IdempotentAnswer>,
    ) -> Result<(), StoreError>;
    /// The unexpired answer stored under this key of the user.
    async fn idempotent_answer(
        &self,
        user: UserId,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<IdempotentAnswer>, StoreError>;
    /// Removes answers that expired before `before`; how many.
    async fn purge_idempotent_answers(&self, before: Timestamp) -> Result<u64, StoreError>;

    // Account management.

    /// Every account, by user name.
    async fn users(&self) -> Result<Vec<User>, StoreError>;
    /// Replaces the user's name, email, display name, password hash, token epoch and
    /// disabled time; a name taken by another is `Conflict("username")`. `false`: no such
    /// user.
    async fn update_user(&self, user: &User) -> Result<bool, StoreError>;
    // Notes, todos and annotations (see `crate::reading::UserDoc`).

    /// Creates the document (`version` 1) or replaces it if its stored version is
    /// `version - 1` (else `VersionConflict`; an id the user has for another kind is
    /// `Conflict("document id")`), giving it the user's next change number; returns it as
    /// stored.
    async fn put_doc(&self, doc: &UserDoc) -> Result<UserDoc, StoreError>;
    /// Tombstones included.
    async fn doc(&self, user: UserId, id: DocId) -> Result<Option<UserDoc>, StoreError>;
    async fn docs(&self, q: &DocQuery) -> Result<Vec<UserDoc>, StoreError>;

    // Follows and blocks.

    /// Applies the changes in one transaction (putting one that exists changes nothing).
    async fn relate(&self, ops: &[RelationOp]) -> Result<(), StoreError>;
    /// Every relation between the two, either way.
    async fn relations_between(&self, a: UserId, b: UserId) -> Result<Vec<Relation>, StoreError>;
    /// The user's relations of `kind` to others (`incoming`: others' to the user), newest
    /// first, with the other reader's name; relations with deleted accounts are left out.
    async fn relations_of(
        &self,
        user: UserId,
        kind: RelationKind,
        incoming: bool,
    ) -> Result<Vec<Related>, StoreError>;

    /// Revokes every refresh token of the user.
    async fn revoke_user_sessions(&self, user: UserId) -> Result<(), StoreError>;
    /// Users whose tokens were cut off since `since` (token epoch raised, disabled or
    /// deleted) with the epoch from which tokens count; deleted users have `u64::MAX`.
    async fn token_cutoffs(&self, since: Timestamp) -> Result<Vec<(UserId, u64)>, StoreError>;
    /// Deletes the user and everything that is theirs alone in one transaction: devices and
    /// their tokens, sessions, progress, records, shelves, memberships, their personal
    /// library and its books. Refuses (`Conflict("libraries")`) while they own a shared
    /// library that is not deleted. Returns the object-store files no remaining book uses,
    /// for the caller to remove. `None`: no such user.
    async fn delete_user(
        &self,
        user: UserId,
        now: Timestamp,
    ) -> Result<Option<Vec<FileLocation>>, StoreError>;
}
