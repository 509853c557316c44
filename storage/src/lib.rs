//! Dogear's storage layer: the records every backend stores, the [`Store`] trait the actors
//! persist through, and its backends. The embedded SQLite backend is the default; any other
//! backend must pass the same conformance suite (`conformance`, behind the feature of that
//! name).

pub mod calibre;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod digest;
pub mod error;
pub mod ids;
pub mod objects;
pub mod postgres;
pub mod reading;
pub mod records;
pub mod shared;
pub mod sharing;
mod sql;
pub mod sqlite;
pub mod store;
pub mod time;

pub use digest::md5_hex;
pub use error::StoreError;
pub use ids::{
    BookId, DeviceId, DocId, EventId, FamilyId, InviteId, JobId, LibraryId, ShelfId, UserId,
};
pub use objects::{ObjectError, ObjectRead, Objects};
pub use reading::{
    BookStatus, DocKind, DocQuery, IdempotentAnswer, MineFilter, Rating, Related, Relation,
    RelationKind, RelationOp, StatusSource, UserBook, UserDoc, Visibility,
};
pub use records::*;
pub use sharing::{
    AuditAction, AuditDraft, AuditEntry, ChainBreak, Invite, SharingOp, check_chain,
};
pub use store::{BatchDone, BatchOutcome, RecordOutcome, RotateOutcome, Store};
pub use time::Timestamp;
