//! Shelves: named sets of books (Kobo shows them as collections). A user's own shelves
//! change through the user's actor; a library's shelves (every member sees them, its owner
//! and editors change them) are changed by whichever node takes the request. Either way
//! the store takes a change only against the shelf as it was read, and a change that lost a
//! race is applied again to what is stored now, so two devices never lose an edit.

use crate::app::Dogear;
use crate::error::AppError;
pub use crate::messages::ShelfOp;
use crate::placement::reply;
use crate::user_actor::{UserOp, UserReply};
use dogear_storage::{BookId, LibraryId, Shelf, ShelfId, Store, Timestamp, UserId};
use std::borrow::Cow;

fn valid_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 256 {
        return Err(AppError::bad("name", "must be 1-256 bytes of text"));
    }
    Ok(name.to_string())
}

/// Whose shelves an op is about.
#[derive(Clone, Copy, Debug)]
pub enum ShelvesOf {
    /// The user's own.
    User(UserId),
    /// A library's, changed by this member (who is the maker of a shelf it creates).
    Library(LibraryId, UserId),
}

impl ShelvesOf {
    fn holds(&self, s: &Shelf) -> bool {
        match self {
            ShelvesOf::User(u) => s.user_id == *u && s.library_id.is_none(),
            ShelvesOf::Library(l, _) => s.library_id == Some(*l),
        }
    }
}

/// Applies `op` to one of the user's own shelves (run by the user's actor). `Ok(None)`: no
/// such live shelf of this user.
pub async fn apply(
    store: &dyn Store,
    user: UserId,
    op: ShelfOp,
) -> Result<Option<Shelf>, AppError> {
    apply_to(store, ShelvesOf::User(user), op).await
}

/// Applies `op` to a shelf of `of`. The store takes the change only against the shelf as
/// read here; if another writer changed it meanwhile, the op is applied again to what is
/// stored now.
pub async fn apply_to(
    store: &dyn Store,
    of: ShelvesOf,
    op: ShelfOp,
) -> Result<Option<Shelf>, AppError> {
    for _ in 0..3 {
        match apply_once(store, of, op.clone()).await {
            Err(AppError::Conflict(_)) => continue,
            other => return other,
        }
    }
    Err(AppError::Unavailable("the shelf kept changing".into()))
}

async fn apply_once(
    store: &dyn Store,
    of: ShelvesOf,
    op: ShelfOp,
) -> Result<Option<Shelf>, AppError> {
    let now = Timestamp::now();
    let load = |id: ShelfId| async move {
        Ok::<_, AppError>(
            store
                .shelf(id)
                .await?
                .filter(|s| of.holds(s) && s.deleted_at.is_none()),
        )
    };
    let (user, library) = match of {
        ShelvesOf::User(u) => (u, None),
        ShelvesOf::Library(l, u) => (u, Some(l)),
    };
    let mut shelf = match &op {
        ShelfOp::Create { name, books } => {
            let mut list: Vec<BookId> = Vec::new();
            for b in books {
                if !list.contains(b) {
                    list.push(*b);
                }
            }
            let shelf = Shelf {
                id: ShelfId::generate(),
                user_id: user,
                name: valid_name(name)?,
                books: list,
                created_at: now,
                updated_at: now,
                deleted_at: None,
                change_seq: 0,
                library_id: library,
                public: false,
            };
            return Ok(Some(store.put_shelf(&shelf).await?));
        }
        ShelfOp::Rename { id, .. }
        | ShelfOp::Delete { id }
        | ShelfOp::Add { id, .. }
        | ShelfOp::Remove { id, .. }
        | ShelfOp::SetPublic { id, .. } => match load(*id).await? {
            Some(s) => s,
            None => return Ok(None),
        },
    };
    let before = shelf.clone();
    match op {
        ShelfOp::Create { .. } => {}
        ShelfOp::Rename { name, .. } => shelf.name = valid_name(&name)?,
        ShelfOp::Delete { .. } => shelf.deleted_at = Some(now),
        ShelfOp::Add { books, .. } => {
            for b in books {
                if !shelf.books.contains(&b) {
                    shelf.books.push(b);
                }
            }
        }
        ShelfOp::Remove { books, .. } => shelf.books.retain(|b| !books.contains(b)),
        ShelfOp::SetPublic { public, .. } => {
            if library.is_some() && public {
                return Err(AppError::bad(
                    "public",
                    "only your own shelves are shown on your profile",
                ));
            }
            shelf.public = public;
        }
    }
    if shelf == before {
        // Nothing changed: no new change number, so devices are not told again.
        return Ok(Some(shelf));
    }
    shelf.updated_at = now;
    Ok(Some(store.put_shelf(&shelf).await?))
}

impl Dogear {
    /// The user's own shelves, then those of their libraries.
    pub async fn shelves(&self, user: UserId) -> Result<Vec<Shelf>, AppError> {
        let mut all = self.store.shelves(user).await?;
        let libraries = self.scope(user, None).await?;
        all.extend(self.store.library_shelves(&libraries).await?);
        Ok(all)
    }

    /// One of the user's own shelves, or of a library they belong to.
    pub async fn shelf(&self, user: UserId, id: ShelfId) -> Result<Shelf, AppError> {
        let found = self
            .store
            .shelf(id)
            .await?
            .filter(|s| s.deleted_at.is_none());
        match found {
            Some(s) if s.library_id.is_none() && s.user_id == user => Ok(s),
            Some(s) => match s.library_id {
                Some(l) if self.library_role(user, l).await?.is_some() => Ok(s),
                _ => Err(AppError::NotFound(Cow::Borrowed("shelf"))),
            },
            None => Err(AppError::NotFound(Cow::Borrowed("shelf"))),
        }
    }

    /// A new shelf of a library (owner or editor), of books of that library.
    pub async fn create_library_shelf(
        &self,
        user: UserId,
        library: LibraryId,
        name: &str,
        books: &[BookId],
    ) -> Result<Shelf, AppError> {
        self.require_library_editor(user, library).await?;
        self.books_of_library(user, library, books).await?;
        let op = ShelfOp::Create {
            name: name.to_string(),
            books: books.to_vec(),
        };
        crate::shelves::apply_to(&*self.store, ShelvesOf::Library(library, user), op)
            .await?
            .ok_or(AppError::NotFound(Cow::Borrowed("shelf")))
    }

    /// `404` unless the user is a member of the library, `403` unless they may change it.
    async fn require_library_editor(
        &self,
        user: UserId,
        library: LibraryId,
    ) -> Result<(), AppError> {
        match self.library_role(user, library).await? {
            None => Err(AppError::NotFound(Cow::Borrowed("library"))),
            Some(r) if !r.can_edit() => Err(AppError::Forbidden(Cow::Borrowed(
                "changing a library's shelves needs the owner or editor role in it",
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Every book of `ids` is a book of `library` the user can read, else `400` naming it.
    async fn books_of_library(
        &self,
        user: UserId,
        library: LibraryId,
        ids: &[BookId],
    ) -> Result<(), AppError> {
        for id in ids {
            match self.book(user, *id).await {
                Ok(b) if b.library_id == library => {}
                Ok(_) | Err(AppError::NotFound(_)) => {
                    return Err(AppError::bad(
                        "book_ids",
                        format!("{id} is not a book of the shelf's library"),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The books of `ids` the user may read; with `strict`, any other is an error naming
    /// `field` (the REST API), else it is left out (a Kobo names store books too).
    pub async fn readable_books(
        &self,
        user: UserId,
        ids: &[BookId],
        strict: Option<&str>,
    ) -> Result<Vec<BookId>, AppError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.book(user, *id).await {
                Ok(_) => out.push(*id),
                Err(AppError::NotFound(_)) => {
                    if let Some(field) = strict {
                        return Err(AppError::bad(
                            field,
                            format!("{id} is not one of your books"),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Applies a shelf change: to one of the user's own shelves through the user's actor,
    /// to a library's shelf after checking the user's role in it. `NotFound` for a shelf the
    /// user cannot see.
    pub async fn change_shelf(&self, user: UserId, op: ShelfOp) -> Result<Shelf, AppError> {
        let target = match &op {
            ShelfOp::Create { .. } => None,
            ShelfOp::Rename { id, .. }
            | ShelfOp::Delete { id }
            | ShelfOp::Add { id, .. }
            | ShelfOp::Remove { id, .. }
            | ShelfOp::SetPublic { id, .. } => Some(*id),
        };
        if let Some(id) = target {
            let shelf = self.shelf(user, id).await?;
            if let Some(library) = shelf.library_id {
                self.require_library_editor(user, library).await?;
                if let ShelfOp::Add { books, .. } = &op {
                    self.books_of_library(user, library, books).await?;
                }
                return crate::shelves::apply_to(
                    &*self.store,
                    ShelvesOf::Library(library, user),
                    op,
                )
                .await?
                .ok_or(AppError::NotFound(Cow::Borrowed("shelf")));
            }
        }
        reply!(
            self.placement.ask_user(user, UserOp::Shelf(op)).await,
            UserReply::Shelf
        )?
        .ok_or(AppError::NotFound(Cow::Borrowed("shelf")))
    }
}
