//! Dogear's actors and the domain rules they enforce. The gateway talks to [`Dogear`]; each
//! use case reaches the actor owning its state through [`placement::Placement`].

pub mod account;
pub mod app;
pub mod auth;
pub mod books;
pub mod catalog;
pub mod cluster;
pub mod device_actor;
pub mod device_cache;
pub(crate) mod device_secrets;
pub mod docs;
pub mod edits;
pub mod error;
pub mod idle;
pub mod import;
pub mod kobo;
pub mod kosync;
pub mod libraries;
pub mod library_actor;
pub mod messages;
pub mod mine;
pub mod placement;
pub mod progress;
pub mod reader;
pub mod shelves;
pub mod social;
pub mod spawn;
pub mod supervisor;
pub mod user_actor;

pub use app::{Dogear, FeedCursor, LiveFeed, Sharing};
pub use error::AppError;
