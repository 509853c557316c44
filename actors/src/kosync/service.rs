//! The KOReader use cases on [`Dogear`]: logins, sign-in, the position write and read, and
//! attaching positions kept under a digest to a book that arrives later.

use super::{
    KoreaderMark, device_id_hex, pages, percent_of, percentage_of, unix_seconds, write_for,
    xpointer,
};
use crate::app::Dogear;
use crate::error::AppError;
use crate::kobo::position;
use crate::kobo::state::KoboMark;
use crate::messages::DeviceSecret;
use crate::placement::{Placement, reply};
use crate::user_actor::{UserOp, UserReply};
use dogear_storage::{
    Book, BookFile, Device, DeviceId, DeviceKind, Format, KoreaderLogin, KoreaderPosition,
    ProgressState, Timestamp, UserId, md5_hex,
};

/// A `PUT /syncs/progress` as the gateway parsed and checked it.
#[derive(Clone, Debug, PartialEq)]
pub struct KosyncPut {
    pub document: String,
    pub progress: String,
    pub percentage: f64,
    pub device: String,
    pub device_id: Option<String>,
}

/// What `GET /syncs/progress/:document` answers with.
#[derive(Clone, Debug, PartialEq)]
pub struct KosyncRecord {
    pub document: String,
    pub percentage: f64,
    pub progress: String,
    pub device: String,
    pub device_id: Option<String>,
    /// Unix seconds of the write, by the server's clock.
    pub timestamp: i64,
}

/// How long a verified sign-in is trusted without hashing the key again.
pub const LOGIN_CACHE_SECS: u64 = 60;

/// Recent sign-ins, by the SHA-256 of name and key: argon2 costs tens of milliseconds, and
/// a KOReader signs in on every request.
pub type LoginCache = crate::device_cache::DeviceCache<KoreaderLogin>;

/// Letters and digits that cannot be mistaken for one another on an e-reader's keyboard.
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

fn random_chars(n: usize) -> Result<String, AppError> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf).map_err(|e| AppError::Unavailable(format!("getrandom: {e}")))?;
        // Rejection sampling: no letter is likelier than another.
        let limit = 256 - 256 % ALPHABET.len();
        for b in buf {
            if (b as usize) < limit && out.len() < n {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// The key as compared: KOReader sends the MD5 of the password in lower-case hex; another
/// client's upper-case hex is the same key.
fn normal_key(key: &str) -> String {
    if key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        key.to_ascii_lowercase()
    } else {
        key.to_string()
    }
}

impl Dogear {
    /// A new KOReader device with its login: the user name and the password to type into
    /// KOReader (shown once; only a slow hash of its MD5, the key KOReader sends, is kept).
    pub async fn create_koreader_login(
        &self,
        user: UserId,
        device_name: &str,
    ) -> Result<(Device, String, String), AppError> {
        let name = crate::app::device_name(device_name, "device_name")?;
        let me = self.me(user).await?;
        // Three groups of four: 59 bits, typed on an e-reader's keyboard without doubt.
        let password = format!(
            "{}-{}-{}",
            random_chars(4)?,
            random_chars(4)?,
            random_chars(4)?
        );
        let key_hash = crate::auth::hash_secret(md5_hex(password.as_bytes())).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let username = format!("{}-{}", me.username, random_chars(4)?);
            let r = reply!(
                self.placement
                    .ask_user(
                        user,
                        UserOp::CreateDevice {
                            name: name.clone(),
                            kind: DeviceKind::Koreader,
                            secret: Some(DeviceSecret::Koreader {
                                username: username.clone(),
                                key_hash: key_hash.clone(),
                            }),
                        },
                    )
                    .await,
                UserReply::Device
            );
            match r {
                Ok(device) => return Ok((device, username, password)),
                Err(AppError::Conflict(_)) if attempt < 5 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// KOReader's "Register" (when the operator allows it): a Dogear account named
    /// `username` with a KOReader login of the same name whose key is `key`. The account's
    /// own password is random and unknown: it is a KOReader-only account until its owner
    /// is given a password (`dogear user` commands). `UsernameTaken` when either name is.
    pub async fn kosync_register(&self, username: &str, key: &str) -> Result<(), AppError> {
        if self.store.koreader_login(username).await?.is_some() {
            return Err(AppError::UsernameTaken);
        }
        let password = crate::auth::random_token()?;
        let user = self
            .accounts()
            .create_user(username, &password, None, false, false)
            .await?;
        let key_hash = crate::auth::hash_secret(normal_key(key)).await?;
        let r = self
            .placement
            .ask_user(
                user.id,
                UserOp::CreateDevice {
                    name: "KOReader".into(),
                    kind: DeviceKind::Koreader,
                    secret: Some(DeviceSecret::Koreader {
                        username: username.to_string(),
                        key_hash,
                    }),
                },
            )
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(AppError::Conflict(_)) => Err(AppError::UsernameTaken),
            Err(e) => Err(e),
        }
    }

    /// The user's KOReader logins with their devices, oldest first.
    pub async fn koreader_logins(
        &self,
        user: UserId,
    ) -> Result<Vec<(Device, KoreaderLogin)>, AppError> {
        let devices = self.devices(user).await?;
        let logins = self.store.koreader_logins(user).await?;
        Ok(crate::device_secrets::with_devices(&devices, logins))
    }

    /// Revokes a KOReader login by deleting its device.
    pub async fn revoke_koreader_login(
        &self,
        user: UserId,
        device: DeviceId,
    ) -> Result<(), AppError> {
        let held = self.store.koreader_logins(user).await?;
        self.revoke_held(user, device, &held, "koreader login")
            .await
    }

    /// The login KOReader's `x-auth-user` and `x-auth-key` stand for; `None` for a wrong key,
    /// an unknown user and a missing header alike. Failures count against the same limits
    /// as password logins (`429` once used up).
    pub async fn koreader_sign_in(
        &self,
        username: &str,
        key: &str,
        addr: Option<&str>,
    ) -> Result<Option<KoreaderLogin>, AppError> {
        let key = normal_key(key);
        let cache_key = crate::auth::sha256_hex(&format!("{username}\0{key}"));
        if let Some(l) = self.koreader_logins_cache.get(&cache_key) {
            // A disabled or deleted account's logins are refused at once.
            return Ok(Some(l).filter(|l| !self.accounts().is_cut_off(l.user_id)));
        }
        let plausible = !username.is_empty() && username.len() <= 64 && key.len() <= 256;
        let login = if plausible {
            self.store.koreader_login(username).await?
        } else {
            None
        };
        let phc = login.as_ref().map(|l| l.key_hash.clone());
        let ok = self
            .accounts()
            .check_secret(username, &key, phc, addr)
            .await?;
        match login {
            Some(l) if ok && !self.accounts().is_cut_off(l.user_id) => {
                self.koreader_logins_cache.put(cache_key, l.clone());
                Ok(Some(l))
            }
            _ => Ok(None),
        }
    }

    /// The one live book the reader may read that KOReader calls `digest`, and the file of
    /// it the digest names (if it names a file rather than only a served name).
    async fn koreader_book(
        &self,
        user: UserId,
        digest: &str,
    ) -> Result<Option<(Book, Option<BookFile>)>, AppError> {
        let digest = digest.to_ascii_lowercase();
        let mut found = Vec::new();
        for id in self.store.koreader_books(&digest).await? {
            match self.book(user, id).await {
                Ok(b) => found.push(b),
                Err(AppError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // Only a digest that names one book is unified with it: two books with the same
        // file (two libraries) keep KOReader's position under the digest alone.
        if found.len() != 1 {
            return Ok(None);
        }
        let Some(book) = found.pop() else {
            return Ok(None);
        };
        let file = book
            .meta
            .formats
            .iter()
            .find(|f| {
                f.koreader.as_deref() == Some(digest.as_str())
                    || md5_hex(book.download_name(f.format).as_bytes()) == digest
                    || md5_hex(book.kobo_download_name(f.format).as_bytes()) == digest
            })
            .cloned();
        Ok(Some((book, file)))
    }

    /// A KOReader `PUT`: the same write through the user's actor as any other when the
    /// digest names a book, and kept under the digest in every case. The server's time
    /// of the write.
    pub async fn kosync_put(
        &self,
        login: &KoreaderLogin,
        put: KosyncPut,
    ) -> Result<Timestamp, AppError> {
        if percent_of(put.percentage).is_none() {
            return Err(AppError::bad("percentage", "must be a number from 0 to 1"));
        }
        let now = Timestamp::now();
        let mut pos = KoreaderPosition {
            user_id: login.user_id,
            document: put.document,
            progress: put.progress,
            percentage: put.percentage.clamp(0.0, 1.0),
            device: put.device,
            device_id: put.device_id,
            written_by: login.device_id,
            book_id: None,
            updated_at: now,
        };
        if let Some((book, _)) = self.koreader_book(login.user_id, &pos.document).await? {
            pos.book_id = Some(book.id);
            if let Some(w) = write_for(&pos, book.id) {
                match self.write_progress(login.user_id, w, None).await {
                    // A replay of a body already written (KOReader's offline queue): its
                    // position was recorded the first time.
                    Ok(_) | Err(AppError::IdempotencyMismatch) => {}
                    // Deleted meanwhile: kept under the digest only.
                    Err(AppError::NotFound(_)) => pos.book_id = None,
                    Err(e) => return Err(e),
                }
            }
        }
        self.store.put_koreader_position(&pos).await?;
        Ok(now)
    }

    /// A KOReader `GET`: the book's one position in a form KOReader applies, or what
    /// KOReaders wrote under the digest; `None` when neither exists.
    pub async fn kosync_get(
        &self,
        login: &KoreaderLogin,
        document: &str,
    ) -> Result<Option<KosyncRecord>, AppError> {
        if let Some((book, file)) = self.koreader_book(login.user_id, document).await?
            && let Some(state) = self.progress(login.user_id, book.id).await?.state
        {
            return Ok(Some(
                self.kosync_record(login.user_id, &book, file.as_ref(), &state, document)
                    .await?,
            ));
        }
        let raw = self
            .store
            .koreader_position(login.user_id, document)
            .await?;
        Ok(raw.map(|p| KosyncRecord {
            document: p.document,
            percentage: p.percentage,
            progress: p.progress,
            device: p.device,
            device_id: p.device_id,
            timestamp: unix_seconds(p.updated_at),
        }))
    }

    async fn kosync_record(
        &self,
        user: UserId,
        book: &Book,
        file: Option<&BookFile>,
        state: &ProgressState,
        document: &str,
    ) -> Result<KosyncRecord, AppError> {
        let mark = KoreaderMark::from_locator(state.locator.as_ref());
        let progress = match &mark {
            Some(m) if m.document.eq_ignore_ascii_case(document) => m.progress.clone(),
            _ => {
                self.koreader_progress(book, file, state, mark.as_ref())
                    .await
            }
        };
        let (device, device_id) = match mark {
            Some(m) => (m.device, m.device_id),
            None => {
                let name = self
                    .devices(user)
                    .await?
                    .into_iter()
                    .find(|d| d.id == state.device_id)
                    .map_or_else(|| "Dogear".to_string(), |d| d.name);
                (name, Some(device_id_hex(state.device_id)))
            }
        };
        Ok(KosyncRecord {
            document: document.to_string(),
            percentage: percentage_of(state),
            progress,
            device,
            device_id,
            timestamp: unix_seconds(state.updated_at),
        })
    }

    /// Gives books stored before Dogear computed KOReader digests theirs (the partial MD5 of
    /// each file), through their library's actor, which indexes them and attaches positions
    /// KOReaders wrote under them. Run in the background at start; the number of books.
    pub async fn backfill_koreader_digests(&self) -> Result<u64, AppError> {
        let mut after = None;
        let mut done = 0;
        loop {
            let page = self.store.books_without_koreader(after, 100).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for book in page {
                let mut next = book.clone();
                for f in next.meta.formats.iter_mut() {
                    if f.koreader.is_none() {
                        let file = f.clone();
                        f.koreader = self
                            .with_local(&file, |p| dogear_storage::digest::partial_md5_file(p).ok())
                            .await;
                    }
                }
                if next.meta.formats.iter().all(|f| f.koreader.is_none()) {
                    continue;
                }
                let r = self
                    .placement
                    .ask_library(
                        book.library_id,
                        crate::library_actor::LibraryOp::Refresh(Box::new(next)),
                    )
                    .await;
                match r {
                    Ok(_) => done += 1,
                    // Deleted or changed meanwhile: its next write brings its own digests.
                    Err(AppError::NotFound(_) | AppError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(done)
    }

    /// `f` of the file on this node's disk (copied there first from a remote object store),
    /// on the blocking pool; `None` if the file cannot be had.
    async fn with_local<T: Send + 'static>(
        &self,
        file: &BookFile,
        f: impl FnOnce(&std::path::Path) -> Option<T> + Send + 'static,
    ) -> Option<T> {
        let (path, temporary) = match self.local_copy(&file.location).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "file unavailable for a KOReader position");
                return None;
            }
        };
        let p = path.clone();
        let out = tokio::task::spawn_blocking(move || f(&p))
            .await
            .ok()
            .flatten();
        if temporary {
            let _ = tokio::fs::remove_file(&path).await;
        }
        out
    }

    /// A position written elsewhere as KOReader can apply it: a page for paged formats, the
    /// start of the spine document holding it for EPUB.
    async fn koreader_progress(
        &self,
        book: &Book,
        file: Option<&BookFile>,
        state: &ProgressState,
        mark: Option<&KoreaderMark>,
    ) -> String {
        let file = file.cloned().or_else(|| book.meta.readable().cloned());
        let percent = state.percent.get();
        let Some(file) = file else {
            return xpointer::fragment_start(1);
        };
        if matches!(file.format, Format::Pdf | Format::Cbz) {
            // Another KOReader's page of this book, else the page at the percentage.
            if let Some(p) = mark.and_then(|m| xpointer::page_of(&m.progress)) {
                return p.to_string();
            }
            let pages = match self.koreader_found.get(&file.hash, 0) {
                Some(n) => n,
                None => {
                    let format = file.format;
                    let n = self
                        .with_local(&file, move |p| pages::count(p, format))
                        .await;
                    self.koreader_found.put(&file.hash, 0, n);
                    n
                }
            };
            return xpointer::page_for(percent, pages.unwrap_or(1)).to_string();
        }
        if let Some(n) = mark.and_then(|m| xpointer::doc_fragment(&m.progress)) {
            return xpointer::fragment_start(n);
        }
        let kobo_source = KoboMark::from_locator(state.locator.as_ref()).and_then(|k| k.source);
        let key = match &kobo_source {
            Some(s) => xxhash_rust::xxh3::xxh3_64(s.as_bytes()) | 1,
            None => percent.to_bits() & !1,
        };
        let index = match self.koreader_found.get(&file.hash, key) {
            Some(i) => i,
            None => {
                let i = self
                    .with_local(&file, move |p| {
                        let i = match kobo_source {
                            Some(s) => position::spine_index_of(p, &s),
                            None => None,
                        };
                        i.or_else(|| position::spine_index(p, percent))
                            .and_then(|i| u32::try_from(i).ok())
                    })
                    .await;
                self.koreader_found.put(&file.hash, key, i);
                i
            }
        };
        xpointer::fragment_start(index.map_or(1, |i| i as usize + 1))
    }
}

/// Attaches the positions KOReaders wrote under the digests of `books` before Dogear had
/// them, for the library's `members`: each becomes the write it would have been, through
/// the owner. One look-up for all the books.
pub(crate) async fn attach_positions(placement: Placement, books: Vec<Book>, members: Vec<UserId>) {
    let mut by_digest: std::collections::HashMap<String, dogear_storage::BookId> =
        std::collections::HashMap::new();
    for b in books.iter().filter(|b| b.deleted_at.is_none()) {
        for d in b.koreader_digests() {
            by_digest.insert(d, b.id);
        }
    }
    if by_digest.is_empty() {
        return;
    }
    let store = placement.store().clone();
    let digests: Vec<String> = by_digest.keys().cloned().collect();
    let waiting = match store.unattached_koreader_positions(&digests).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "KOReader positions not attached");
            return;
        }
    };
    for p in waiting {
        let Some(book) = by_digest.get(&p.document.to_ascii_lowercase()).copied() else {
            continue;
        };
        if !members.contains(&p.user_id) {
            continue;
        }
        let Some(write) = write_for(&p, book) else {
            continue;
        };
        let r = placement
            .ask_user(
                p.user_id,
                UserOp::Write {
                    write,
                    origin: None,
                },
            )
            .await;
        match r {
            Ok(_) | Err(AppError::IdempotencyMismatch) => {
                if let Err(e) = store
                    .attach_koreader_position(p.user_id, &p.document, book)
                    .await
                {
                    tracing::warn!(error = %e, "KOReader position not marked attached");
                }
            }
            Err(e) => tracing::warn!(error = %e, %book, "KOReader position not attached"),
        }
    }
}
