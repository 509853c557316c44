//! The Kobo use cases on [`Dogear`]: tokens, sync pages, a book's metadata and state, the
//! reading-state write, archive, covers at the device's size, downloads.

use super::book::{KoboBook, KoboFormat};
use super::state::{KoboReading, ReadingView, reading_state};
use super::sync::{KoboItem, SyncPage};
use super::token;
use crate::app::Dogear;
use crate::error::AppError;
use crate::placement::reply;
use crate::user_actor::{KoboPutOutcome, UserOp, UserReply};
use dogear_storage::{
    Book, BookFile, BookId, Device, DeviceId, DeviceKind, FileLocation, Format, KoboToken, UserId,
};
use std::borrow::Cow;

/// How long a token look-up is trusted.
pub const TOKEN_CACHE_SECS: u64 = 10;

/// Recent token look-ups, by token hash.
pub type TokenCache = crate::device_cache::DeviceCache<KoboToken>;

/// Largest cover side a Kobo may ask for; larger requests get this.
pub const MAX_COVER_SIDE: u32 = 2000;

impl Dogear {
    /// A new Kobo device and its secret token (returned once, stored hashed).
    pub async fn create_kobo_token(
        &self,
        user: UserId,
        name: &str,
    ) -> Result<(Device, String), AppError> {
        let secret = token::generate()?;
        let hash = token::hash(&secret);
        let secret_kind = crate::messages::DeviceSecret::KoboToken(hash);
        let device = self
            .create_device_with(
                user,
                (name, "device_name"),
                DeviceKind::Kobo,
                Some(secret_kind),
            )
            .await?;
        Ok((device, secret))
    }

    /// The user's Kobo devices that hold a token, oldest first.
    pub async fn kobo_tokens(&self, user: UserId) -> Result<Vec<(Device, KoboToken)>, AppError> {
        let devices = self.devices(user).await?;
        let tokens = self.store.kobo_tokens(user).await?;
        Ok(crate::device_secrets::with_devices(&devices, tokens))
    }

    /// Revokes a Kobo's token by deleting the device (its sync state and ledger go with it).
    pub async fn revoke_kobo_token(&self, user: UserId, device: DeviceId) -> Result<(), AppError> {
        let held = self.store.kobo_tokens(user).await?;
        self.revoke_held(user, device, &held, "kobo token").await?;
        self.placement.stop_device(device, "revoked");
        Ok(())
    }

    /// The device a token in a Kobo's path stands for. Every Kobo request asks, so answers
    /// are kept for a few seconds; a revocation drops them at once on this node, and on the
    /// other nodes of a cluster through Redis (without Redis, within [`TOKEN_CACHE_SECS`]).
    pub async fn kobo_device(&self, secret: &str) -> Result<Option<KoboToken>, AppError> {
        let found =
            crate::device_secrets::by_token(&self.kobo_tokens_cache, secret, |hash| async move {
                self.store.kobo_token(&hash).await
            })
            .await?;
        // A disabled or deleted account's devices are refused at once.
        Ok(found.filter(|t| !self.accounts().is_cut_off(t.user_id)))
    }

    /// The next page of the device's library sync, built by its actor (one at a time).
    pub async fn kobo_sync(
        &self,
        dev: &KoboToken,
        restart: bool,
        page_size: usize,
    ) -> Result<SyncPage, AppError> {
        let mut page = self
            .placement
            .kobo_sync(dev.user_id, dev.device_id, restart, page_size)
            .await?;
        for item in &mut page.items {
            match item {
                KoboItem::NewEntitlement { book, state, .. } => {
                    self.place(&book.book, state).await;
                }
                KoboItem::ChangedReadingState(state) if state.locate_at.is_some() => {
                    if let Ok(id) = state.entitlement_id.parse::<BookId>()
                        && let Ok(Some(book)) = self.store.book(id).await
                    {
                        self.place(&book, state).await;
                    }
                }
                _ => {}
            }
        }
        Ok(page)
    }

    /// Puts a position from elsewhere on a span of the book's KEPUB, when it has one.
    async fn place(&self, book: &Book, state: &mut ReadingView) {
        let Some(percent) = state.locate_at else {
            return;
        };
        let Some(kepub) = book.meta.format(Format::Kepub).cloned() else {
            return;
        };
        if let Some(at) = self.kepub_place(&kepub, percent).await {
            state.place(&at);
        }
    }

    /// The span at `percent` of a KEPUB in the local object store, found once per KEPUB and
    /// percentage (a sync may ask for the same book on every device).
    pub(crate) async fn kepub_place(
        &self,
        kepub: &dogear_storage::BookFile,
        percent: f64,
    ) -> Option<super::position::Located> {
        if let Some(found) = self.kobo_places.get(&kepub.hash, percent) {
            return found;
        }
        let path = self.importer.objects().local_path(&kepub.location)?;
        let found = tokio::task::spawn_blocking(move || super::position::locate(&path, percent))
            .await
            .ok()
            .flatten();
        self.kobo_places.put(&kepub.hash, percent, found.clone());
        found
    }

    /// A book as a Kobo gets it, if the user may read it and a Kobo can take it.
    pub async fn kobo_book(&self, user: UserId, id: BookId) -> Result<Option<KoboBook>, AppError> {
        match self.book(user, id).await {
            Ok(b) => Ok(KoboBook::of(&b)),
            Err(AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn kobo_state(
        &self,
        dev: &KoboToken,
        id: BookId,
    ) -> Result<Option<ReadingView>, AppError> {
        let book = match self.book(dev.user_id, id).await {
            Ok(b) => b,
            Err(AppError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let view = self.progress(dev.user_id, id).await?;
        let mut state = reading_state(id, book.added_at, view.state.as_ref(), dev.device_id);
        self.place(&book, &mut state).await;
        Ok(Some(state))
    }

    /// A Kobo's reading-state `PUT`: the same write through the user's actor as any other.
    /// `None`: the user has no such book.
    pub async fn kobo_put_state(
        &self,
        dev: &KoboToken,
        id: BookId,
        reading: KoboReading,
    ) -> Result<Option<KoboPutOutcome>, AppError> {
        let r = reply!(
            self.placement
                .ask_user(
                    dev.user_id,
                    UserOp::KoboWrite {
                        reading: Box::new(reading),
                        book: id,
                        device: dev.device_id,
                    },
                )
                .await,
            UserReply::Kobo
        );
        match r {
            Ok(o) => Ok(Some(o)),
            Err(AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The reader removed the book from the device (or took it back from its archive).
    pub async fn kobo_archive(
        &self,
        dev: &KoboToken,
        id: BookId,
        archived: bool,
    ) -> Result<(), AppError> {
        // Through the reader's owner, like every other change the reader makes.
        self.placement
            .ask_user(
                dev.user_id,
                UserOp::KoboArchive {
                    device: dev.device_id,
                    book: id,
                    archived,
                },
            )
            .await
            .map(|_| ())
    }

    /// The file a Kobo downloads: the KEPUB (made now if need be) or the EPUB.
    pub async fn kobo_download(
        &self,
        user: UserId,
        id: BookId,
        format: KoboFormat,
    ) -> Result<(Book, BookFile), AppError> {
        match self.book_file(user, id, format.format()).await {
            Err(AppError::NotFound(Cow::Borrowed("format"))) if format == KoboFormat::Kepub => {
                // The converter refused this EPUB: the device still gets the book.
                self.book_file(user, id, Format::Epub).await
            }
            r => r,
        }
    }

    /// The cover scaled to fit `width` x `height` as JPEG (greyscale on request), made on
    /// first request and kept under the cover's etag and the size.
    pub async fn kobo_cover(
        &self,
        user: UserId,
        id: BookId,
        width: u32,
        height: u32,
        grey: bool,
    ) -> Result<(FileLocation, String), AppError> {
        let book = self.book(user, id).await?;
        let cover = book
            .meta
            .cover
            .clone()
            .ok_or(AppError::NotFound(Cow::Borrowed("cover")))?;
        let (w, h) = (
            width.clamp(16, MAX_COVER_SIDE) & !1,
            height.clamp(16, MAX_COVER_SIDE) & !1,
        );
        let etag = format!("{}-{w}x{h}{}", cover.etag, if grey { "g" } else { "" });
        let key = format!("covers/{etag}.jpg");
        let objects = self.importer.objects();
        if !objects.exists(&key).await.unwrap_or(false) {
            let unavailable = |e: String| AppError::Unavailable(format!("cover: {e}"));
            let bytes = objects
                .read_small(&cover.full, crate::import::MAX_COVER_BYTES)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let made = tokio::task::spawn_blocking(move || {
                crate::import::cover::scaled(bytes.to_vec(), w, h, grey)
            })
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(|_| AppError::NotFound(Cow::Borrowed("cover")))?;
            objects
                .put_bytes(&key, made.into())
                .await
                .map_err(|e| unavailable(e.to_string()))?;
        }
        Ok((FileLocation::Object { key }, etag))
    }
}
