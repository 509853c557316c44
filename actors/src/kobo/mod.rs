//! Kobo e-readers: what a Kobo is given of the user's books, how its reading state maps onto
//! Dogear's one progress, and the per-device sync that decides what goes out next. The
//! gateway's `kobo` module only turns these into Kobo's JSON and back.

pub mod annotations;
pub mod book;
pub mod position;
pub mod state;
pub mod sync;
pub mod token;

pub use book::{KoboBook, KoboFormat};
pub use state::{KoboReading, KoboWrite, PartOutcome, PartOutcomes, ReadingView};
pub use sync::{KoboItem, SyncPage};
pub mod service;
