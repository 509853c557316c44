//! `LibraryActor`: one per library, owns its membership and serializes changes to its books,
//! so that two editors' writes to one book are ordered and checked against the roles.

use crate::books::{BookPatch, NewBook};
use crate::error::AppError;
use crate::idle::Idle;
pub use crate::messages::{LibraryMsg, LibraryOp, LibraryReply};
use crate::messages::{LibraryNotice, NoticeKind};
use crate::placement::Placement;
use crate::user_actor::UserOp;
use dogear_storage::{
    Book, BookId, BookMeta, Library, LibraryId, RegisterOutcome, Role, Store, Timestamp, UserId,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

pub struct LibraryArgs {
    pub library: LibraryId,
    pub placement: Placement,
}

pub struct LibraryState {
    pub(crate) library: LibraryId,
    store: Arc<dyn Store>,
    pub(crate) placement: Placement,
    pub(crate) members: HashMap<UserId, Role>,
    /// `None` until made (a shared library's first op is its creation) or once deleted.
    pub(crate) lib: Option<Library>,
    idle: Idle,
}

pub struct LibraryActor;

impl Actor for LibraryActor {
    type Msg = LibraryMsg;
    type State = LibraryState;
    type Arguments = LibraryArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<LibraryMsg>,
        args: LibraryArgs,
    ) -> Result<LibraryState, ActorProcessingErr> {
        let store = args.placement.store().clone();
        let members = store
            .memberships(args.library)
            .await?
            .into_iter()
            .map(|m| (m.user_id, m.role))
            .collect();
        let lib = store.library(args.library).await?;
        let idle = Idle::start(
            &myself,
            "library",
            args.placement.settings().idle_timeout,
            || LibraryMsg::Tick,
        );
        Ok(LibraryState {
            library: args.library,
            store,
            placement: args.placement,
            members,
            lib,
            idle,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<LibraryMsg>,
        msg: LibraryMsg,
        st: &mut LibraryState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(msg, LibraryMsg::Tick) {
            st.idle.touch();
        }
        match msg {
            LibraryMsg::Op(LibraryOp::Import(book, source, job), reply) => {
                // Registration is one atomic insert-unless-duplicate in the store, so it
                // needs no ordering against this library's other writes: let it commit
                // without holding the mailbox, and concurrent imports share a commit.
                let store = st.store.clone();
                let (placement, members) = (st.placement.clone(), st.member_ids());
                let added = LibraryNotice {
                    book_id: Some(book.id),
                    ..LibraryNotice::new(NoticeKind::BookAdded, st.library)
                };
                tokio::spawn(async move {
                    let r = store
                        .register_import(&book, source.as_ref(), job.as_deref())
                        .await
                        .map(LibraryReply::Registered)
                        .map_err(AppError::from);
                    let created =
                        matches!(r, Ok(LibraryReply::Registered(RegisterOutcome::Created)));
                    let _ = reply.send(r);
                    if created {
                        for m in &members {
                            placement.tell_user(*m, UserOp::Notice(added.clone()));
                        }
                        crate::kosync::attach_positions(placement, vec![*book], members).await;
                    }
                });
            }
            LibraryMsg::Op(op, reply) => {
                let _ = reply.send(st.op(op).await);
            }
            LibraryMsg::Tick => {
                if st.idle.expired() {
                    myself.stop(Some("idle".into()));
                }
            }
        }
        Ok(())
    }
}

impl LibraryState {
    fn member_ids(&self) -> Vec<UserId> {
        self.members.keys().copied().collect()
    }

    /// Positions KOReaders wrote under one of the book's digests before it arrived are
    /// attached to it, off the mailbox.
    fn attach_koreader(&self, book: &Book) {
        tokio::spawn(crate::kosync::attach_positions(
            self.placement.clone(),
            vec![book.clone()],
            self.member_ids(),
        ));
    }

    async fn op(&mut self, op: LibraryOp) -> Result<LibraryReply, AppError> {
        Ok(match op {
            LibraryOp::Role(user) => LibraryReply::Role(self.members.get(&user).copied()),
            LibraryOp::CreateBook(user, new) => {
                LibraryReply::Book(Box::new(self.create(user, new).await?))
            }
            LibraryOp::UpdateBook(user, id, patch) => {
                LibraryReply::Book(Box::new(self.update(user, id, patch).await?))
            }
            LibraryOp::DeleteBook(user, id) => {
                self.delete(user, id).await?;
                LibraryReply::Done
            }
            LibraryOp::Import(book, source, job) => LibraryReply::Registered(
                self.store
                    .register_import(&book, source.as_ref(), job.as_deref())
                    .await?,
            ),
            LibraryOp::ImportMany(books) => {
                let store = &self.store;
                let results =
                    futures_util::future::join_all(books.iter().map(|(b, s)| async move {
                        store
                            .register_import(b, s.as_ref(), None)
                            .await
                            .map_err(AppError::from)
                    }))
                    .await;
                // One look-up for the whole batch (a Calibre library's first sync registers
                // thousands at once), not one per book.
                let created: Vec<Book> = books
                    .iter()
                    .zip(&results)
                    .filter(|(_, r)| matches!(r, Ok(RegisterOutcome::Created)))
                    .map(|((b, _), _)| b.clone())
                    .collect();
                if !created.is_empty() {
                    self.announce(
                        LibraryNotice::new(NoticeKind::BooksChanged, self.library),
                        None,
                    );
                }
                tokio::spawn(crate::kosync::attach_positions(
                    self.placement.clone(),
                    created,
                    self.member_ids(),
                ));
                LibraryReply::Many(results)
            }
            LibraryOp::Refresh(book) => LibraryReply::Book(Box::new(self.refresh(*book).await?)),
            LibraryOp::Sharing(caller, action) => self.sharing(caller, action).await?,
            LibraryOp::Remove(id) => {
                match self.live_book(id).await {
                    Ok(b) => self.tombstone(b).await?,
                    Err(AppError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                LibraryReply::Done
            }
        })
    }

    /// Members may read; owners and editors may write. Outsiders learn nothing (404).
    fn require_editor(&self, user: UserId, what: &'static str) -> Result<(), AppError> {
        match self.members.get(&user) {
            None => Err(AppError::NotFound(Cow::Borrowed(what))),
            Some(r) if !r.can_edit() => Err(AppError::Forbidden(Cow::Borrowed(
                "changing books needs the owner or editor role in this library",
            ))),
            Some(_) => Ok(()),
        }
    }

    async fn create(&mut self, user: UserId, new: NewBook) -> Result<Book, AppError> {
        self.require_editor(user, "library")?;
        let new = new.validated()?;
        let now = Timestamp::now();
        let book = Book {
            id: BookId::generate(),
            library_id: self.library,
            title: new.title,
            authors: new.authors,
            language: new.language,
            identifiers: new.identifiers,
            added_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
            meta: BookMeta::default(),
        };
        self.store.create_book(&book).await?;
        self.book_notice(NoticeKind::BookAdded, book.id);
        Ok(book)
    }

    async fn live_book(&self, id: BookId) -> Result<Book, AppError> {
        match self.store.book(id).await? {
            Some(b) if b.library_id == self.library && b.deleted_at.is_none() => Ok(b),
            _ => Err(AppError::NotFound(Cow::Borrowed("book"))),
        }
    }

    async fn update(
        &mut self,
        user: UserId,
        id: BookId,
        patch: BookPatch,
    ) -> Result<Book, AppError> {
        self.require_editor(user, "book")?;
        let current = self.live_book(id).await?;
        let now = Timestamp::now();
        // A client clock far ahead would win every later edit: taken as now instead.
        let skew = i64::try_from(self.placement.settings().max_clock_skew.as_secs())
            .unwrap_or(i64::MAX / 4);
        let clock = match patch.clock {
            Some(c) if c.at <= now.plus_secs(skew) => c,
            Some(c) => dogear_storage::FieldClock { at: now, ..c },
            None => dogear_storage::FieldClock {
                at: now,
                device: None,
            },
        };
        let mut next = patch.merge_into(&current, clock)?;
        if next == current {
            // Every field lost to a later edit (or changed nothing): nothing to write.
            return Ok(current);
        }
        next.version = current.version + 1;
        next.updated_at = now;
        self.store.update_book(&next).await?;
        self.attach_koreader(&next);
        self.book_notice(NoticeKind::BookChanged, next.id);
        Ok(next)
    }

    async fn delete(&mut self, user: UserId, id: BookId) -> Result<(), AppError> {
        self.require_editor(user, "book")?;
        let current = self.live_book(id).await?;
        if self.is_shared() {
            return self.delete_audited(user, current).await;
        }
        self.tombstone(current).await
    }

    /// Tells every member's sockets that a book of the library changed.
    fn book_notice(&self, kind: NoticeKind, book: BookId) {
        self.announce(
            LibraryNotice {
                book_id: Some(book),
                ..LibraryNotice::new(kind, self.library)
            },
            None,
        );
    }

    async fn refresh(&mut self, book: Book) -> Result<Book, AppError> {
        let current = self.live_book(book.id).await?;
        let mut next = book;
        next.library_id = current.library_id;
        next.added_at = current.added_at;
        next.deleted_at = None;
        next.version = current.version + 1;
        next.updated_at = Timestamp::now();
        if next
            == (Book {
                version: next.version,
                updated_at: next.updated_at,
                ..current.clone()
            })
        {
            return Ok(current);
        }
        self.store.update_book(&next).await?;
        self.attach_koreader(&next);
        self.book_notice(NoticeKind::BookChanged, next.id);
        Ok(next)
    }

    pub(crate) async fn tombstone(&mut self, current: Book) -> Result<(), AppError> {
        let id = current.id;
        self.store.update_book(&tombstone_of(current)).await?;
        self.book_removed(id);
        Ok(())
    }

    /// Tells members' actors and sockets that a book is gone.
    pub(crate) fn book_removed(&self, id: BookId) {
        for member in self.members.keys() {
            self.placement
                .tell_user(*member, crate::user_actor::UserOp::BookRemoved(id));
        }
        self.book_notice(NoticeKind::BookRemoved, id);
    }
}

/// The deleted version of a book, as of now.
pub(crate) fn tombstone_of(current: Book) -> Book {
    let now = Timestamp::now();
    Book {
        deleted_at: Some(now),
        updated_at: now,
        version: current.version + 1,
        ..current
    }
}
