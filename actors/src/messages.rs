//! The messages of the keyed actors (users, devices, libraries) and what they answer. They
//! live apart from the actors so that placement, which routes them (to this node's actor or
//! to the owner's node), depends on the messages and not on the actors: the actors depend on
//! placement, never the reverse. Ops and replies are serializable; they cross between nodes.

use crate::books::{BookPatch, NewBook};
use crate::error::AppError;
use crate::kobo::state::{KoboReading, PartOutcomes};
use crate::kobo::sync::SyncPage;
use crate::progress::ProgressWrite;
use dogear_storage::{
    AuditEntry, Book, BookId, Device, DeviceId, DeviceKind, DevicePosition, ImportJob, Invite,
    InviteId, Library, LibraryId, Membership, ProgressState, Reason, RegisterOutcome, Role, Shelf,
    ShelfId, SourceFile, Timestamp, UserId,
};
use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;

/// The answer to a progress write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub applied: bool,
    pub reason: Option<Reason>,
    pub state: ProgressState,
    /// The event's position in the user's log (the changes-feed cursor).
    pub seq: u64,
    /// `(sent, used)`: the client time the write carried, when it was too far ahead of the
    /// server's, and the server's time used instead.
    pub clamped: Option<(Timestamp, Timestamp)>,
}

/// A Kobo `PUT`'s outcome: the write's, each part's, and the state's time as answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KoboPutOutcome {
    pub write: WriteOutcome,
    pub parts: PartOutcomes,
    pub at: String,
}

/// `GET /v1/books/{id}/progress`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressView {
    pub state: Option<ProgressState>,
    pub devices: Vec<DevicePosition>,
}

/// An applied change, as pushed live to the user's other sockets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Change {
    pub seq: u64,
    pub state: ProgressState,
    pub origin_device: DeviceId,
    /// The socket that made the write (it gets an ack instead of a push).
    pub origin_socket: Option<SocketId>,
}

/// What may be asked of a user's actor, from this node or another: serializable, so that
/// the node that received a request can hand it to the node that owns the user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum UserOp {
    Write {
        write: ProgressWrite,
        origin: Option<SocketId>,
    },
    Get {
        book: BookId,
    },
    /// A Kobo's reading-state `PUT`, mapped onto a progress write here, against the state
    /// this actor holds, so two racing PUTs each merge onto the other's result.
    KoboWrite {
        /// Travels as its JSON (it holds the device's numbers as it wrote them).
        #[serde(with = "crate::cluster::wire::as_json")]
        reading: Box<KoboReading>,
        book: BookId,
        device: DeviceId,
    },
    HasDevice(DeviceId),
    CreateDevice {
        name: String,
        kind: DeviceKind,
        /// What the device signs in with, created with it in one transaction.
        secret: Option<DeviceSecret>,
    },
    ListDevices,
    DeleteDevice(DeviceId),
    /// A device with open sockets on node `node` wants this user's live changes.
    Subscribe {
        device: DeviceId,
        node: String,
    },
    Unsubscribe {
        device: DeviceId,
    },
    /// A book was deleted: forget that it was readable.
    BookRemoved(BookId),
    /// A change to one of the user's shelves.
    Shelf(ShelfOp),
    /// A Kobo of the user removed a book from its library (or took it back).
    KoboArchive {
        device: DeviceId,
        book: BookId,
        archived: bool,
    },
    /// Something changed in one of the user's libraries (or in their membership of it):
    /// passed on live to the user's sockets.
    Notice(LibraryNotice),
    // New variants go last: ops cross between nodes by position.
    /// The user's own record of a book (`crate::mine`).
    Mine(MineOp),
    /// Deletes the account and what is the user's alone (`crate::account`); the actor
    /// stops after answering.
    Erase,
    /// Writes to notes, todos and annotations, each on its own, in order (`crate::docs`).
    Docs(Vec<crate::docs::DocWrite>),
}

/// What may be done to a user's records of books.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MineOp {
    Get(BookId),
    Patch(BookId, crate::mine::MinePatch),
    /// Many changes at once, each applied whole or not at all; with a key, the answer is
    /// stored with the writes and given again to a retry with the same items.
    Batch {
        key: Option<String>,
        items: Vec<crate::mine::BatchItem>,
    },
}

/// A change in a library, pushed live to every member's sockets as
/// `{"type": kind, "library_id", ...}`. Not in the progress log: a client that was away reads
/// the libraries and books again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LibraryNotice {
    pub kind: NoticeKind,
    pub library_id: LibraryId,
    /// The member it is about (joined, left, removed, role changed, new owner).
    pub user_id: Option<UserId>,
    pub role: Option<Role>,
    /// The library's name after a rename.
    pub name: Option<String>,
    pub book_id: Option<BookId>,
    pub at: Timestamp,
}

impl LibraryNotice {
    pub fn new(kind: NoticeKind, library_id: LibraryId) -> LibraryNotice {
        LibraryNotice {
            kind,
            library_id,
            user_id: None,
            role: None,
            name: None,
            book_id: None,
            at: Timestamp::now(),
        }
    }
}

/// What a [`LibraryNotice`] says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// Renamed, ownership offered or transferred: read the library again.
    LibraryChanged,
    LibraryDeleted,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    RoleChanged,
    BookAdded,
    BookChanged,
    BookRemoved,
    /// Many books changed at once (an import): read the library's books again.
    BooksChanged,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::LibraryChanged => "library_changed",
            NoticeKind::LibraryDeleted => "library_deleted",
            NoticeKind::MemberJoined => "member_joined",
            NoticeKind::MemberLeft => "member_left",
            NoticeKind::MemberRemoved => "member_removed",
            NoticeKind::RoleChanged => "role_changed",
            NoticeKind::BookAdded => "book_added",
            NoticeKind::BookChanged => "book_changed",
            NoticeKind::BookRemoved => "book_removed",
            NoticeKind::BooksChanged => "books_changed",
        }
    }
}

/// What a device signs in with, stored with it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum DeviceSecret {
    /// A Kobo's token, hashed.
    KoboToken(String),
    /// A KOReader login: the user name and a slow hash of the key KOReader sends.
    Koreader { username: String, key_hash: String },
    /// A token in OPDS catalog URLs, hashed.
    OpdsToken(String),
}

/// The answer to each [`UserOp`], in the same order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UserReply {
    Write(WriteOutcome),
    Progress(ProgressView),
    Kobo(KoboPutOutcome),
    Bool(bool),
    Device(Device),
    Devices(Vec<Device>),
    Done,
    Shelf(Option<Shelf>),
    // New variants go last: replies cross between nodes by position.
    Mine(Box<dogear_storage::UserBook>),
    Batch(crate::mine::BatchAnswer),
    /// The devices the deleted account had, and the object-store files no book uses now.
    Erased {
        devices: Vec<DeviceId>,
        keys: Vec<String>,
    },
    Docs(Vec<Result<crate::docs::DocOutcome, AppError>>),
}

#[derive(ractor_cluster::RactorMessage)]
pub enum UserMsg {
    Op(UserOp, RpcReplyPort<Result<UserReply, AppError>>),
    /// An op whose answer nobody waits for.
    Tell(UserOp),
    /// Another node may have written this user meanwhile: forget what is cached (the
    /// subscribers stay).
    Reload,
    Tick,
    /// The batch with this number reached the store (stored or refused): the owner answers
    /// its writers and takes the next one.
    Persisted(u64),
}

/// One change to a user's shelves.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum ShelfOp {
    Create {
        name: String,
        books: Vec<BookId>,
    },
    Rename {
        id: ShelfId,
        name: String,
    },
    Delete {
        id: ShelfId,
    },
    Add {
        id: ShelfId,
        books: Vec<BookId>,
    },
    Remove {
        id: ShelfId,
        books: Vec<BookId>,
    },
    // New variants go last: ops cross between nodes by position.
    /// Shows the shelf on the owner's profile (or stops showing it).
    SetPublic {
        id: ShelfId,
        public: bool,
    },
}

/// Identifies one WebSocket connection, across the cluster: changes carry the id of the
/// socket that made them (it gets an ack, not a push) to every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SocketId(pub u64);

impl SocketId {
    pub fn next() -> SocketId {
        // A random start per process: two nodes' counters never meet in practice.
        static NEXT: std::sync::LazyLock<AtomicU64> = std::sync::LazyLock::new(|| {
            let mut b = [0u8; 8];
            let _ = getrandom::fill(&mut b);
            AtomicU64::new(u64::from_le_bytes(b) & !0xffff_ffff)
        });
        SocketId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What a socket's feed carries.
#[derive(Clone, Debug)]
pub enum LiveEvent {
    /// An applied change.
    Change(Arc<Change>),
    /// A change in one of the user's libraries.
    Notice(Arc<LibraryNotice>),
    /// A note, todo or annotation of the user was written.
    Doc(Arc<dogear_storage::UserDoc>),
    /// The owner of the user moved (or restarted): changes may have been applied while this
    /// node was not subscribed. The socket reads the log from where it is to catch up.
    CatchUp,
}

/// The device actor's side of one socket.
pub struct SocketHandle {
    pub id: SocketId,
    pub tx: mpsc::Sender<LiveEvent>,
    /// Set when the socket was dropped for falling behind.
    pub overflowed: Arc<AtomicBool>,
}

#[derive(ractor_cluster::RactorMessage)]
pub enum DeviceMsg {
    Attach(SocketHandle, RpcReplyPort<()>),
    Detach(SocketId),
    Push(Arc<Change>),
    Notice(Arc<LibraryNotice>),
    Doc(Arc<dogear_storage::UserDoc>),
    /// The owner of this device's user may have changed (membership changed): subscribe to
    /// whichever node owns it now, and have the sockets catch up from the log.
    Resubscribe,
    /// The actor of this user (re)started on its owner: same as `Resubscribe` for its devices.
    ResubscribeIfUser(UserId),
    /// The next page of this Kobo's library sync (`restart`: it came without its token).
    KoboSync {
        restart: bool,
        page_size: usize,
        reply: RpcReplyPort<Result<SyncPage, AppError>>,
    },
    Tick,
}

/// What may be asked of a library's actor, from this node or another. Books and jobs travel
/// as the JSON they are stored as (their files' locations are tagged enums).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LibraryOp {
    /// The caller's role, `None` if not a member.
    Role(UserId),
    CreateBook(UserId, NewBook),
    UpdateBook(UserId, BookId, BookPatch),
    DeleteBook(UserId, BookId),
    /// Registers an imported book (deduplicated by content hash), with the source file it
    /// came from and its finished job, atomically. From the import pipeline, not a person.
    Import(
        #[serde(with = "crate::cluster::wire::as_json")] Box<Book>,
        #[serde(with = "crate::cluster::wire::as_json")] Option<SourceFile>,
        #[serde(with = "crate::cluster::wire::as_json")] Option<Box<ImportJob>>,
    ),
    /// Registers many imported books at once (a Calibre library's first sync); the store
    /// commits them together.
    ImportMany(#[serde(with = "crate::cluster::wire::as_json")] Vec<(Book, Option<SourceFile>)>),
    /// Replaces a live book's metadata and files with what its source now says (a changed
    /// file, a Calibre edit), keeping its id and added time. From the pipeline, not a person.
    Refresh(#[serde(with = "crate::cluster::wire::as_json")] Box<Book>),
    /// Tombstones a book whose source is gone. From the pipeline, not a person.
    Remove(BookId),
    /// Making, changing and sharing the library, by `Caller`: role checks, invitations and
    /// the audit log (`crate::libraries`).
    Sharing(Caller, SharingAction),
}

/// Who asks, and from where: what the audit log records of a sharing action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Caller {
    pub user: UserId,
    pub device: Option<DeviceId>,
    pub addr: Option<String>,
}

/// What a sharing [`LibraryOp`] does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SharingAction {
    /// Makes this (new) library, shared, owned by the caller.
    Create {
        name: String,
    },
    /// The library and the caller's role.
    Get,
    Rename(String),
    Delete,
    Members,
    SetRole(UserId, Role),
    /// Removes a member; the caller's own id: leaves.
    RemoveMember(UserId),
    CreateInvite {
        role: Role,
        expires_at: Option<Timestamp>,
        max_uses: Option<u32>,
        /// The hash of the code the caller's node made (the code itself never travels).
        code_hash: String,
    },
    Invites,
    RevokeInvite(InviteId),
    /// The caller joins through this invitation.
    Redeem(InviteId),
    /// Offers the library to a member (`None`: withdraws the offer).
    OfferOwnership(Option<UserId>),
    /// The member the library was offered to takes it; the old owner becomes an editor.
    AcceptOwnership,
    /// The audit log after entry `after`.
    Audit {
        after: u64,
        limit: usize,
    },
}

/// The answer to each [`LibraryOp`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LibraryReply {
    Role(Option<Role>),
    Book(#[serde(with = "crate::cluster::wire::as_json")] Box<Book>),
    Registered(RegisterOutcome),
    Many(Vec<Result<RegisterOutcome, AppError>>),
    Done,
    // Sharing; new variants go last (replies cross between nodes by position).
    Library(Box<Library>, Role),
    Members(Vec<Membership>),
    Invite(Box<Invite>),
    Invites(Vec<Invite>),
    Audit(Vec<AuditEntry>),
}

// An op is moved into the mailbox once and out again: its size costs one copy, not worth a
// box for the few `Tick`s.
#[allow(clippy::large_enum_variant)]
#[derive(ractor_cluster::RactorMessage)]
pub enum LibraryMsg {
    Op(LibraryOp, RpcReplyPort<Result<LibraryReply, AppError>>),
    Tick,
}
