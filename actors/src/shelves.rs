//! Shelves: a user's named sets of books (Kobo shows them as collections). Every change
//! goes through the user's actor, so two devices editing one shelf never lose an edit.

use crate::app::Dogear;
use crate::error::AppError;
pub use crate::messages::ShelfOp;
use crate::placement::reply;
use crate::user_actor::{UserOp, UserReply};
use dogear_storage::{BookId, Shelf, ShelfId, Store, Timestamp, UserId};
use std::borrow::Cow;

fn valid_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 256 {
        return Err(AppError::bad("name", "must be 1-256 bytes of text"));
    }
    Ok(name.to_string())
}

/// Applies `op` (run by the user's actor). `Ok(None)`: no such live shelf of this user.
/// The store takes the change only against the shelf as read here; if another owner (a
/// partition) changed it meanwhile, the op is applied again to what is stored now.
pub async fn apply(
    store: &dyn Store,
    user: UserId,
    op: ShelfOp,
) -> Result<Option<Shelf>, AppError> {
    for _ in 0..3 {
        match apply_once(store, user, op.clone()).await {
            Err(AppError::Conflict(_)) => continue,
            other => return other,
        }
    }
    Err(AppError::Unavailable("the shelf kept changing".into()))
}

async fn apply_once(
    store: &dyn Store,
    user: UserId,
    op: ShelfOp,
) -> Result<Option<Shelf>, AppError> {
    let now = Timestamp::now();
    let load = |id: ShelfId| async move {
        Ok::<_, AppError>(
            store
                .shelf(id)
                .await?
                .filter(|s| s.user_id == user && s.deleted_at.is_none()),
        )
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
            };
            return Ok(Some(store.put_shelf(&shelf).await?));
        }
        ShelfOp::Rename { id, .. }
        | ShelfOp::Delete { id }
        | ShelfOp::Add { id, .. }
        | ShelfOp::Remove { id, .. } => match load(*id).await? {
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
    }
    if shelf == before {
        // Nothing changed: no new change number, so devices are not told again.
        return Ok(Some(shelf));
    }
    shelf.updated_at = now;
    Ok(Some(store.put_shelf(&shelf).await?))
}

impl Dogear {
    pub async fn shelves(&self, user: UserId) -> Result<Vec<Shelf>, AppError> {
        Ok(self.store.shelves(user).await?)
    }

    pub async fn shelf(&self, user: UserId, id: ShelfId) -> Result<Shelf, AppError> {
        self.store
            .shelf(id)
            .await?
            .filter(|s| s.user_id == user && s.deleted_at.is_none())
            .ok_or(AppError::NotFound(Cow::Borrowed("shelf")))
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

    /// Applies a shelf change through the user's actor; `NotFound` for a shelf that is not
    /// the user's.
    pub async fn change_shelf(&self, user: UserId, op: ShelfOp) -> Result<Shelf, AppError> {
        reply!(
            self.placement.ask_user(user, UserOp::Shelf(op)).await,
            UserReply::Shelf
        )?
        .ok_or(AppError::NotFound(Cow::Borrowed("shelf")))
    }
}
