//! Backend-neutral records. Validation lives in the constructors, so a record that exists is
//! a record that may be stored.

use crate::ids::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A reading position in percent. It cannot be NaN, negative or above 100.
#[derive(Clone, Copy, PartialEq, PartialOrd, Debug, Serialize)]
#[serde(transparent)]
pub struct Percent(f64);

impl Percent {
    pub const ZERO: Percent = Percent(0.0);
    pub const FULL: Percent = Percent(100.0);

    pub fn new(v: f64) -> Option<Percent> {
        // `-0.0 + 0.0` is `0.0`: a negative zero never reaches storage or a client.
        (v.is_finite() && (0.0..=100.0).contains(&v)).then_some(Percent(v + 0.0))
    }
    pub fn get(&self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Percent::new(v).ok_or_else(|| serde::de::Error::custom("must be between 0 and 100"))
    }
}

/// An opaque position inside a book (EPUB CFI, Kobo span id, KOReader xpointer, PDF page),
/// at most [`Locator::MAX_BYTES`] bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct Locator(String);

impl Locator {
    pub const MAX_BYTES: usize = 4096;
    pub fn new(s: String) -> Option<Locator> {
        (s.len() <= Self::MAX_BYTES).then_some(Locator(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Locator {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = String::deserialize(d)?;
        Locator::new(v).ok_or_else(|| serde::de::Error::custom("must be at most 4096 bytes"))
    }
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(
    /// Where a reader is with a book.
    ReadStatus { Unread = "unread", Reading = "reading", Finished = "finished" }
);
wire_enum!(
    /// What sort of device a reader registered.
    DeviceKind {
        Web = "web",
        Mobile = "mobile",
        Desktop = "desktop",
        Kobo = "kobo",
        Koreader = "koreader",
        Other = "other",
    }
);
wire_enum!(
    /// Personal libraries have one member; shared ones many.
    LibraryKind { Personal = "personal", Shared = "shared" }
);
wire_enum!(
    /// A member's role in a library. Owners and editors change books; readers only read.
    Role { Owner = "owner", Editor = "editor", Reader = "reader" }
);
wire_enum!(
    /// Why a progress write was not applied (or was a repeat).
    Reason { Duplicate = "duplicate", Behind = "behind", Stale = "stale" }
);

impl Role {
    pub fn can_edit(&self) -> bool {
        matches!(self, Role::Owner | Role::Editor)
    }
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: Option<String>,
    /// PHC string of an argon2id hash.
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: Timestamp,
    /// The name shown to others; the user name when absent.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Grows when every access token issued before must stop working (a password change,
    /// the account disabled): tokens carry the epoch they were issued in.
    #[serde(default)]
    pub token_epoch: u64,
    /// Set by an administrator: the account cannot sign in, its tokens are refused.
    #[serde(default)]
    pub disabled_at: Option<Timestamp>,
    /// Who sees the reader's profile (`crate::reading::Visibility`).
    #[serde(default)]
    pub visibility: crate::reading::Visibility,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub user_id: UserId,
    pub name: String,
    pub kind: DeviceKind,
    pub created_at: Timestamp,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Library {
    pub id: LibraryId,
    pub name: String,
    pub kind: LibraryKind,
    pub owner_id: UserId,
    pub created_at: Timestamp,
    /// A member the owner offered the library to, until they accept (or the offer is
    /// withdrawn).
    #[serde(default)]
    pub pending_owner: Option<UserId>,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Membership {
    pub library_id: LibraryId,
    pub user_id: UserId,
    pub role: Role,
}

/// A book record. `version` starts at 1 and grows by one with every change, so that a
/// writer holding an old copy cannot overwrite a newer one.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Book {
    pub id: BookId,
    pub library_id: LibraryId,
    pub title: String,
    pub authors: Vec<String>,
    pub language: Option<String>,
    pub identifiers: BTreeMap<String, String>,
    pub added_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set when deleted: the record stays as a tombstone so devices learn of the removal.
    pub deleted_at: Option<Timestamp>,
    pub version: u64,
    pub meta: BookMeta,
}

/// A refresh token as stored: only its SHA-256, never the token itself.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct RefreshToken {
    pub hash: String,
    pub user_id: UserId,
    pub family_id: FamilyId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The canonical reading position of one user in one book.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ProgressState {
    pub book_id: BookId,
    pub percent: Percent,
    pub locator: Option<Locator>,
    pub status: ReadStatus,
    pub device_id: DeviceId,
    pub client_ts: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

/// The last position a device reported for a book, applied or not.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct DevicePosition {
    pub device_id: DeviceId,
    pub book_id: BookId,
    pub percent: Percent,
    pub locator: Option<Locator>,
    pub client_ts: Timestamp,
}

/// One received progress write, as appended to the user's event log (`progress_updated`).
/// Every write is logged, applied or not, so that its `event_id` answers the same way forever.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// Position in the user's log, starting at 1, without gaps.
    pub seq: u64,
    pub event_id: EventId,
    pub book_id: BookId,
    pub device_id: DeviceId,
    /// A fingerprint of the request body (its canonical form, hashed), to tell a retry
    /// (same body) from a reuse of the id with another body.
    pub body: String,
    pub applied: bool,
    pub reason: Option<Reason>,
    /// The book's state after this event (the new state when applied, else the current one).
    pub state: ProgressState,
    pub received_at: Timestamp,
}

/// Everything one progress write stores, in one atomic step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressWrite {
    pub user_id: UserId,
    /// The user's log head the writer based its decision on; the store refuses the write if
    /// the head has moved (another owner wrote).
    pub expected_seq: u64,
    pub event: ProgressEvent,
    pub position: DevicePosition,
}

/// What `list_books` should return.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BookQuery {
    pub libraries: Vec<LibraryId>,
    /// Full-text search over title, authors, series and tags (every word must match).
    pub q: Option<String>,
    /// Exact author name (case-insensitive).
    pub author: Option<String>,
    /// Exact series name (case-insensitive).
    pub series: Option<String>,
    /// Exact tag (case-insensitive).
    pub tag: Option<String>,
    pub sort: BookSort,
    /// The order reversed (newest first, Z to A); `after` then means "before" in the
    /// ascending order, which is how a page before another is read.
    #[serde(default)]
    pub descending: bool,
    /// The book's language (case-insensitive).
    #[serde(default)]
    pub language: Option<String>,
    /// Books that have a file of this format.
    #[serde(default)]
    pub format: Option<Format>,
    /// Only books with at least one file (a catalog lists what can be downloaded).
    #[serde(default)]
    pub with_files: bool,
    /// Only books whose record for `mine.user` matches (status, favourite, rated).
    #[serde(default)]
    pub mine: Option<crate::reading::MineFilter>,
    /// Return books that sort after this.
    pub after: Option<BookAfter>,
    pub limit: usize,
}

/// A field books are grouped by in a catalog's browse lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BookFacet {
    Author,
    Series,
    Tag,
    Language,
}

wire_enum!(
    /// How a book came in. `api` books were made by `POST /v1/books` without a file.
    BookSource { Api = "api", Upload = "upload", Folder = "folder", Calibre = "calibre" }
);
wire_enum!(
    /// A file format Dogear stores and serves.
    Format { Epub = "epub", Kepub = "kepub", Pdf = "pdf", Cbz = "cbz" }
);

impl Format {
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Epub => "application/epub+zip",
            Format::Kepub => "application/kepub+zip",
            Format::Pdf => "application/pdf",
            Format::Cbz => "application/vnd.comicbook+zip",
        }
    }
    /// The file name extension, without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Epub => "epub",
            Format::Kepub => "kepub.epub",
            Format::Pdf => "pdf",
            Format::Cbz => "cbz",
        }
    }
}

/// Where the bytes of a stored file are.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileLocation {
    /// In Dogear's object store under this key.
    Object { key: String },
    /// A file Dogear does not own (a Calibre library), read in place, never written.
    External { path: String },
}

/// One format of a book. `hash` is the xxh3-64 of the bytes as 16 lower-case hex digits.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct BookFile {
    pub format: Format,
    pub size: u64,
    pub hash: String,
    pub location: FileLocation,
    /// KOReader's partial MD5 of the bytes (how KOReader names a document when it syncs);
    /// absent on files stored before Dogear computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub koreader: Option<String>,
}

/// The cover as stored: the full image and a thumbnail (made on first use when absent).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Cover {
    pub full: FileLocation,
    pub thumb: Option<FileLocation>,
    /// Changes whenever the image does; the HTTP `ETag`.
    pub etag: String,
    pub content_type: String,
}

impl BookMeta {
    /// Adds the object-store keys of the files and cover this record names to `out`.
    pub fn object_keys(&self, out: &mut std::collections::BTreeSet<String>) {
        let mut add = |l: &FileLocation| {
            if let FileLocation::Object { key } = l {
                out.insert(key.clone());
            }
        };
        for f in &self.formats {
            add(&f.location);
        }
        if let Some(c) = &self.cover {
            add(&c.full);
            if let Some(t) = &c.thumb {
                add(t);
            }
        }
    }
}

/// Everything about a book beyond the core fields, stored together.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BookMeta {
    pub subtitle: Option<String>,
    /// How to sort by title ("Tempest, The"); the title when absent.
    pub title_sort: Option<String>,
    /// The authors' sort names, in the order of `authors`.
    pub author_sorts: Vec<String>,
    pub series: Option<String>,
    pub series_index: Option<f64>,
    pub publisher: Option<String>,
    /// The publication date as the source wrote it.
    pub published: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub languages: Vec<String>,
    /// 0-10, two per star (Calibre's scale).
    pub rating: Option<u8>,
    /// A fixed-layout EPUB (`rendition:layout` `pre-paginated`): Kobo renders it page by
    /// page as it is (`EPUB3FL`), not as a KEPUB.
    // Never skipped when false: postcard (between nodes) is not self-describing and would
    // misread a record whose fields depend on their values.
    #[serde(default)]
    pub fixed_layout: bool,
    pub cover: Option<Cover>,
    pub formats: Vec<BookFile>,
    pub source: Option<BookSource>,
    /// When and from where each field a person edited was last set (by field name): shared
    /// edits merge field by field on these (`dogear_actors::edits`). Empty for fields only
    /// ever set by an import.
    pub field_clocks: BTreeMap<String, FieldClock>,
}

/// The client time and device of the edit that set a field.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct FieldClock {
    pub at: Timestamp,
    pub device: Option<DeviceId>,
}

impl BookMeta {
    pub fn source(&self) -> BookSource {
        self.source.unwrap_or(BookSource::Api)
    }
    pub fn format(&self, f: Format) -> Option<&BookFile> {
        self.formats.iter().find(|x| x.format == f)
    }

    /// The file a reader opens the book in: the EPUB first (a KEPUB's spans are only for
    /// Kobos), then the KEPUB, the PDF, the comic.
    pub fn readable(&self) -> Option<&BookFile> {
        [Format::Epub, Format::Kepub, Format::Pdf, Format::Cbz]
            .iter()
            .find_map(|f| self.format(*f))
    }
}

/// The orders `GET /v1/books` offers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub enum BookSort {
    #[default]
    Id,
    Title,
    Author,
    Added,
    Series,
}

/// Where a page of a sorted book list continues: after this key and id.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BookAfter {
    pub key: String,
    pub id: BookId,
}

/// A file seen in a watched folder or a book seen in a Calibre library, and the book it
/// became. `source` names the folder or library; `path` is relative to it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct SourceFile {
    pub source: String,
    pub path: String,
    pub library_id: LibraryId,
    pub hash: String,
    pub size: u64,
    /// Modification time (ms) for folders, Calibre's `last_modified` (ms) for Calibre books.
    pub mtime: i64,
    pub book_id: Option<BookId>,
}

wire_enum!(
    /// Where an import job is.
    JobState { Queued = "queued", Running = "running", Done = "done", Failed = "failed" }
);

/// A `{code, message}` pair, as jobs report errors and warnings.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct JobIssue {
    pub code: String,
    pub message: String,
}

/// One file to import, queued persistently so that a restart resumes it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ImportJob {
    pub id: JobId,
    pub library_id: LibraryId,
    /// Who asked (uploads); `None` for folders and the command line.
    pub user_id: Option<UserId>,
    pub source: BookSource,
    /// The watched folder's key for folder jobs (`SourceFile::source`).
    pub source_key: Option<String>,
    /// The file to read: a staged upload, or a file in a watched folder.
    pub path: String,
    /// The name the file came with, for the filename fallback and downloads.
    pub filename: String,
    /// Whether `path` is Dogear's own staged copy, to delete once the job ends.
    pub staged: bool,
    pub state: JobState,
    pub attempts: u32,
    pub run_at: Timestamp,
    pub book_id: Option<BookId>,
    pub duplicate_of: Option<BookId>,
    pub error: Option<JobIssue>,
    pub warnings: Vec<JobIssue>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The node that must run the job, because its file is on that node's disk (a staged
    /// upload); `None`: any node that can read `path` (watched folders, Calibre libraries).
    #[serde(default)]
    pub node: Option<String>,
}

/// What registering an imported book did.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum RegisterOutcome {
    Created,
    /// A live book of the library already has a file with this hash.
    Duplicate(BookId),
}

impl Book {
    /// The lower-cased key `sort=title` orders by: the title's sort form, else the title
    /// without a leading English article.
    pub fn title_key(&self) -> String {
        let base = match &self.meta.title_sort {
            Some(t) if !t.is_empty() => t.clone(),
            _ => {
                let t = self.title.trim();
                let lower = t.to_lowercase();
                ["the ", "a ", "an "]
                    .iter()
                    .find(|a| lower.starts_with(*a))
                    .map(|a| t[a.len()..].to_string())
                    .unwrap_or_else(|| t.to_string())
            }
        };
        base.to_lowercase()
    }

    /// The key `sort=author` orders by: the first author's sort name.
    pub fn author_key(&self) -> String {
        self.meta
            .author_sorts
            .first()
            .or(self.authors.first())
            .map(|s| s.to_lowercase())
            .unwrap_or_default()
    }

    /// The key `sort=series` orders by: series, then index, then title; books without a
    /// series after all others.
    pub fn series_key(&self) -> String {
        match &self.meta.series {
            Some(s) => format!(
                "{}\u{1}{:016.4}\u{1}{}",
                s.to_lowercase(),
                self.meta.series_index.unwrap_or(0.0).clamp(0.0, 1e10),
                self.title_key()
            ),
            None => format!("\u{ffff}{}", self.title_key()),
        }
    }

    /// The cursor key of this book under `sort` (what [`BookAfter::key`] holds).
    pub fn sort_key(&self, sort: BookSort) -> String {
        match sort {
            BookSort::Id => String::new(),
            BookSort::Title => self.title_key(),
            BookSort::Author => self.author_key(),
            BookSort::Series => self.series_key(),
            BookSort::Added => self.added_at.millis().to_string(),
        }
    }

    /// The file name a download of `format` is served under (`Title - Author.epub`).
    pub fn download_name(&self, format: Format) -> String {
        let mut name = self.title.clone();
        if let Some(a) = self.authors.first() {
            name = format!("{name} - {a}");
        }
        format!(
            "{}.{}",
            name.replace(['/', '\\', '"', '\r', '\n'], "_"),
            format.extension()
        )
    }

    /// The name a Kobo downloads a file under (Nickel picks its renderer by `.kepub.epub`).
    pub fn kobo_download_name(&self, format: Format) -> String {
        let ext = if format == Format::Kepub {
            "kepub.epub"
        } else {
            "epub"
        };
        format!(
            "{}.{ext}",
            self.title.replace(['/', '\\', '"', '\r', '\n'], "_")
        )
    }

    /// Every name KOReader may know this book's files by: the partial MD5 of each stored
    /// (and served) file, and the MD5 of each name a download is served under (KOReader's
    /// "filename" matching). Many-to-one: a digest may name several books.
    pub fn koreader_digests(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in &self.meta.formats {
            if let Some(d) = &f.koreader {
                out.push(d.clone());
            }
            out.push(crate::md5_hex(self.download_name(f.format).as_bytes()));
            if matches!(f.format, Format::Epub | Format::Kepub) {
                out.push(crate::md5_hex(self.kobo_download_name(f.format).as_bytes()));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The content hashes that identify this book in its library (derived KEPUBs excluded).
    pub fn content_hashes(&self) -> Vec<&str> {
        self.meta
            .formats
            .iter()
            .filter(|f| f.format != Format::Kepub)
            .map(|f| f.hash.as_str())
            .collect()
    }
}

/// A user's named set of books. Deleting one leaves a tombstone, so that devices that were
/// given it learn to drop it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shelf {
    pub id: ShelfId,
    pub user_id: UserId,
    pub name: String,
    /// In the order they were put on the shelf.
    pub books: Vec<BookId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    /// Position in the change sequence shared with books (set by the store on every write).
    pub change_seq: u64,
    /// A library's shelf (every member sees it; its owner and editors change it), made by
    /// `user_id`; `None`: the user's own.
    #[serde(default)]
    pub library_id: Option<LibraryId>,
    /// Shown on the owner's profile to those who may see it.
    #[serde(default)]
    pub public: bool,
}

/// What one Kobo was given of one book: the fingerprint of the entitlement it received,
/// whether it was then told to remove it, and whether the reader archived it on the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KoboLedgerEntry {
    pub book_id: BookId,
    pub library_id: LibraryId,
    pub fingerprint: String,
    pub removed: bool,
    pub archived: bool,
}

/// A Kobo's device token, stored as the SHA-256 of the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KoboToken {
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub token_hash: String,
    pub created_at: Timestamp,
}

/// A token in an OPDS catalog's URL, for apps that cannot send a password (and covers that
/// apps fetch without one): one device each, only its hash stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpdsToken {
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub token_hash: String,
    pub created_at: Timestamp,
}

/// A KOReader login: the user name typed into KOReader's progress sync, for one device of
/// kind `koreader`, and a slow hash of the key KOReader sends (the MD5 of the password).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KoreaderLogin {
    pub username: String,
    pub device_id: DeviceId,
    pub user_id: UserId,
    /// argon2id PHC string of the key.
    pub key_hash: String,
    pub created_at: Timestamp,
}

/// A KOReader position as a device wrote it, kept per (user, document digest): how two
/// KOReaders sync a book Dogear does not know, and what a later import attaches to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KoreaderPosition {
    pub user_id: UserId,
    pub document: String,
    pub progress: String,
    /// 0 to 1, as KOReader sends it.
    pub percentage: f64,
    pub device: String,
    pub device_id: Option<String>,
    /// The Dogear device (a `koreader` one) that wrote it.
    pub written_by: DeviceId,
    /// The book it was attached to, once one with this digest is known.
    pub book_id: Option<BookId>,
    pub updated_at: Timestamp,
}

/// One sync page's writes to a Kobo's stored state, committed together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KoboSyncWrite {
    /// Forget everything delivered before (the device came back without a sync token).
    pub reset: bool,
    /// The sync position, opaque to the store.
    pub state: String,
    pub ledger: Vec<KoboLedgerEntry>,
    /// Shelves the device now has (`true`) or was told to delete (`false`).
    pub tags: Vec<(ShelfId, bool)>,
    /// The position this page was built from (`None`: the device had none). The store
    /// refuses the page (`VersionConflict`) if another was committed since, so two nodes
    /// serving one device at once cannot both move it.
    pub expected: Option<String>,
}
