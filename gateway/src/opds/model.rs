//! A catalog feed before it is written as Atom or JSON: what both versions say alike.

use dogear_storage::{Book, Timestamp};

/// One feed of the catalog.
pub struct Feed {
    /// A stable id (`urn:dogear:opds:...`).
    pub id: String,
    pub title: String,
    /// This feed's URL, absolute.
    pub url: String,
    /// The parent feed's URL, if any.
    pub up: Option<String>,
    pub updated: Timestamp,
    pub kind: Kind,
    pub pages: Pages,
    pub facets: Vec<Facet>,
}

pub enum Kind {
    Navigation(Vec<Nav>),
    Acquisition(Vec<Book>),
}

/// A link to another feed.
pub struct Nav {
    pub id: String,
    pub title: String,
    pub url: String,
    pub summary: Option<String>,
    /// The target lists books (else more links).
    pub acquisition: bool,
    /// How many books it lists, when known.
    pub count: Option<u64>,
    /// Newest first (`http://opds-spec.org/sort/new`).
    pub newest: bool,
}

/// Links to the other pages of a paged feed (absolute URLs).
#[derive(Default)]
pub struct Pages {
    pub first: Option<String>,
    pub previous: Option<String>,
    pub next: Option<String>,
    pub last: Option<String>,
    /// Total items, when known exactly.
    pub total: Option<u64>,
    pub per_page: usize,
    /// 1-based, when the feed pages by number.
    pub current: Option<u64>,
}

/// One choice of a facet group (sort order, format) of an acquisition feed.
pub struct Facet {
    pub group: &'static str,
    pub title: String,
    pub url: String,
    pub active: bool,
}
