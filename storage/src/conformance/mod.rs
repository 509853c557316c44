//! The conformance suite every backend must pass. It speaks only through [`Store`], so a new
//! backend (PostgreSQL, ScyllaDB) runs it unchanged: call [`run_all`] on a fresh, empty store,
//! or one capability at a time while the backend grows (`accounts::users`,
//! `books::book_metadata`, `progress::progress`, ...). Each check panics with a message naming
//! the rule that was broken.
//!
//! Compiled only with the `conformance` feature (tests of this crate and of the actors turn it
//! on): none of it is in the `dogear` binary.

pub mod accounts;
pub mod books;
pub mod faults;
pub mod imports;
pub mod kobo;
pub mod koreader;
pub mod lifecycle;
pub mod progress;
pub mod reading;
pub mod sharing;
pub mod shelves;

use books::{book, file};

use crate::error::StoreError;
use crate::ids::*;
use crate::records::*;
use crate::store::{BatchOutcome, RecordOutcome, RotateOutcome, Store};
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// Runs every check against `store`, which must be empty and open. Closes it at the end.
pub async fn run_all(store: &dyn Store) {
    accounts::users(store).await;
    accounts::refresh_tokens(store).await;
    accounts::devices(store).await;
    books::books(store).await;
    books::book_metadata(store).await;
    books::multi_library_pages(store).await;
    books::catalog_queries(store).await;
    imports::imports(store).await;
    progress::progress(store).await;
    progress::batches(store).await;
    books::change_feeds(store).await;
    shelves::shelves(store).await;
    kobo::kobo_devices(store).await;
    koreader::koreader(store).await;
    koreader::opds_tokens(store).await;
    sharing::sharing(store).await;
    reading::user_books(store).await;
    reading::idempotent_answers(store).await;
    reading::docs(store).await;
    reading::relations(store).await;
    reading::account_management(store).await;
    lifecycle::closing(store).await;
}

/// A user with a personal library, as registration creates them.
pub fn new_user(name: &str) -> (User, Library) {
    let now = Timestamp::now();
    let user = User {
        id: UserId::generate(),
        username: name.to_string(),
        email: Some(format!("{name}@example.org")),
        password_hash: "$argon2id$fake".into(),
        is_admin: false,
        created_at: now,
        display_name: None,
        token_epoch: 0,
        disabled_at: None,
        visibility: Default::default(),
    };
    let lib = Library {
        id: LibraryId::generate(),
        name: format!("{name}'s library"),
        kind: LibraryKind::Personal,
        owner_id: user.id,
        created_at: now,
        pending_owner: None,
    };
    (user, lib)
}

/// A stored user with a personal library, one device and one book: enough for a test to
/// write progress through the actors.
pub struct Seeded {
    pub user: User,
    pub library: Library,
    pub device: Device,
    pub book: Book,
}

pub async fn seed_reader(s: &dyn Store, name: &str) -> Seeded {
    let (user, library) = new_user(name);
    s.create_user(&user, &library).await.expect("create user");
    let device = Device {
        id: DeviceId::generate(),
        user_id: user.id,
        name: "e-reader".into(),
        kind: DeviceKind::Kobo,
        created_at: Timestamp::now(),
    };
    s.create_device(&device).await.expect("create device");
    let book = books::book(library.id, "Hamlet", "William Shakespeare");
    s.create_book(&book).await.expect("create book");
    Seeded {
        user,
        library,
        device,
        book,
    }
}

/// Runs futures concurrently on the current task without a dependency on `futures`.
async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, h) in handles.iter_mut().enumerate() {
            if let Some(f) = h {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        outputs[i] = Some(v);
                        *h = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
