//! What a catalog (OPDS) asks that the REST API does not: browse lists of the reader's
//! books, their reading now and finished lists, and books by id in a given order. Each sees
//! exactly what the REST API would show that reader.

use crate::app::Dogear;
use crate::error::AppError;
use crate::messages::DeviceSecret;
use dogear_storage::{
    Book, BookFacet, BookId, Device, DeviceId, DeviceKind, LibraryId, OpdsToken, ProgressState,
    ReadStatus, UserId,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Most progress states a catalog list reads (a reader with more sees their newest).
const MAX_STATES: usize = 10_000;

/// How long a verified Basic sign-in is trusted without hashing the password again: an OPDS
/// app sends it with every request (every cover of a page).
pub const BASIC_CACHE_SECS: u64 = 60;

/// Browse lists already computed (grouping every book of the libraries costs tens of
/// milliseconds on 20,000 books), with the books version they were computed at: a list is
/// used while no book of its libraries has changed since.
#[derive(Default)]
pub struct FacetCache(Mutex<HashMap<FacetKey, (u64, FacetList)>>);

type FacetKey = (Vec<LibraryId>, BookFacet);
/// Values and their numbers of books.
pub type FacetList = Arc<Vec<(String, u64)>>;

/// Recent OPDS token look-ups, by token hash.
pub type OpdsTokenCache = crate::device_cache::DeviceCache<OpdsToken>;

/// Recent Basic sign-ins, by the SHA-256 of name and password.
#[derive(Default)]
pub struct BasicCache(Mutex<HashMap<String, (UserId, Instant)>>);

impl Dogear {
    /// A new OPDS app (a device of kind `other`) and the secret token for its catalog URLs
    /// (returned once, stored hashed).
    pub async fn create_opds_token(
        &self,
        user: UserId,
        name: &str,
    ) -> Result<(Device, String), AppError> {
        let secret = crate::kobo::token::generate()?;
        let hash = crate::kobo::token::hash(&secret);
        let device = self
            .create_device_with(
                user,
                (name, "device_name"),
                DeviceKind::Other,
                Some(DeviceSecret::OpdsToken(hash)),
            )
            .await?;
        Ok((device, secret))
    }

    /// The user's OPDS tokens with their devices, oldest first.
    pub async fn opds_tokens(&self, user: UserId) -> Result<Vec<(Device, OpdsToken)>, AppError> {
        let devices = self.devices(user).await?;
        let tokens = self.store.opds_tokens(user).await?;
        Ok(crate::device_secrets::with_devices(&devices, tokens))
    }

    /// Revokes an OPDS token by deleting its device.
    pub async fn revoke_opds_token(&self, user: UserId, device: DeviceId) -> Result<(), AppError> {
        let held = self.store.opds_tokens(user).await?;
        self.revoke_held(user, device, &held, "opds token").await
    }

    /// The token a catalog URL carries; looked up on every request, so answers are kept for
    /// a few seconds (a revocation drops them at once, on every node through Redis).
    pub async fn opds_device(&self, secret: &str) -> Result<Option<OpdsToken>, AppError> {
        let found =
            crate::device_secrets::by_token(&self.opds_tokens_cache, secret, |hash| async move {
                self.store.opds_token(&hash).await
            })
            .await?;
        Ok(found.filter(|t| !self.accounts().is_cut_off(t.user_id)))
    }

    /// The reader an OPDS app's HTTP Basic credentials stand for; `None` when wrong. Checked
    /// as a login is (the same failure budgets, `429` over them), then trusted for
    /// [`BASIC_CACHE_SECS`].
    pub async fn basic_sign_in(
        &self,
        username: &str,
        password: &str,
        addr: Option<&str>,
    ) -> Result<Option<UserId>, AppError> {
        let key = crate::auth::sha256_hex(&format!("{username}\0{password}"));
        if let Ok(map) = self.basic_cache.0.lock()
            && let Some((user, at)) = map.get(&key)
            && at.elapsed().as_secs() < BASIC_CACHE_SECS
        {
            // A disabled or deleted account is refused at once.
            return Ok(Some(*user).filter(|u| !self.accounts().is_cut_off(*u)));
        }
        let user = self
            .accounts()
            .verify_password(username, password, addr)
            .await?;
        if let (Some(u), Ok(mut map)) = (user, self.basic_cache.0.lock()) {
            if map.len() > 10_000 {
                map.retain(|_, (_, at)| at.elapsed().as_secs() < BASIC_CACHE_SECS);
            }
            map.insert(key, (u, Instant::now()));
        }
        Ok(user)
    }

    /// Every value of `facet` in the caller's libraries (or one of them) with its number of
    /// books, ordered case-insensitively.
    pub async fn book_facets(
        &self,
        user: UserId,
        library: Option<LibraryId>,
        facet: BookFacet,
    ) -> Result<FacetList, AppError> {
        let mut libraries = self.scope(user, library).await?;
        libraries.sort();
        let version = self.store.books_version(&libraries).await?;
        let key = (libraries, facet);
        if let Ok(map) = self.facet_cache.0.lock()
            && let Some((v, list)) = map.get(&key)
            && *v == version
        {
            return Ok(list.clone());
        }
        let list = Arc::new(self.store.book_facets(&key.0, facet).await?);
        if let Ok(mut map) = self.facet_cache.0.lock() {
            if map.len() >= 256 {
                map.clear();
            }
            map.insert(key, (version, list.clone()));
        }
        Ok(list)
    }

    /// The reader's progress on books they may still read, most recently moved first:
    /// `finished` only those, else those started and not finished.
    pub async fn recent_progress(
        &self,
        user: UserId,
        finished: bool,
    ) -> Result<Vec<ProgressState>, AppError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.progress_states(user, after, 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.book_id);
            let full = page.len() < 500;
            all.extend(page.into_iter().filter(|s| {
                if finished {
                    s.status == ReadStatus::Finished
                } else {
                    s.status == ReadStatus::Reading
                }
            }));
            if full || all.len() >= MAX_STATES {
                break;
            }
        }
        all.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then(a.book_id.cmp(&b.book_id))
        });
        Ok(all)
    }

    /// The books of `ids` the reader may read and download (they have a file), in that
    /// order; the others are left out.
    pub async fn books_in_order(
        &self,
        user: UserId,
        ids: &[BookId],
    ) -> Result<Vec<Book>, AppError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.book(user, *id).await {
                Ok(b) if b.meta.formats.is_empty() => {}
                Ok(b) => out.push(b),
                Err(AppError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
