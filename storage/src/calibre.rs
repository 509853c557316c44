//! Reading a Calibre library's `metadata.db`: opened read-only (no write can happen, and
//! none of calibre's SQL functions are needed), read in one short transaction so Calibre
//! desktop is never blocked for long, retried when Calibre holds a write lock.

use rusqlite::{Connection, OpenFlags};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CalibreError {
    #[error("cannot open the Calibre library: {0}")]
    Open(String),
    #[error("the Calibre library is busy (Calibre is writing); try again")]
    Busy,
    #[error("the Calibre library is not in the expected format: {0}")]
    Format(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CalibreFile {
    /// Calibre's format name, upper case (`EPUB`).
    pub format: String,
    /// The file's name without extension, inside the book's folder.
    pub name: String,
    pub size: u64,
}

impl CalibreFile {
    /// Path relative to the library root.
    pub fn relative_path(&self, book_path: &str) -> String {
        format!(
            "{book_path}/{}.{}",
            self.name,
            self.format.to_ascii_lowercase()
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CalibreBook {
    pub id: i64,
    pub title: String,
    pub sort: Option<String>,
    pub timestamp: Option<String>,
    pub pubdate: Option<String>,
    pub series_index: Option<f64>,
    pub path: String,
    pub uuid: Option<String>,
    pub has_cover: bool,
    pub last_modified: String,
    /// (name, sort) in Calibre's order.
    pub authors: Vec<(String, String)>,
    pub series: Option<String>,
    pub tags: Vec<String>,
    pub publisher: Option<String>,
    /// ISO 639-2 codes as Calibre stores them.
    pub languages: Vec<String>,
    pub identifiers: BTreeMap<String, String>,
    /// 0-10.
    pub rating: Option<u8>,
    pub comments: Option<String>,
    pub formats: Vec<CalibreFile>,
}

fn open(db: &Path) -> Result<Connection, CalibreError> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| CalibreError::Open(e.to_string()))?;
    conn.busy_timeout(Duration::from_millis(200))
        .map_err(|e| CalibreError::Open(e.to_string()))?;
    Ok(conn)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Every book of the library. Retries for about 10 s while Calibre holds its write lock.
pub fn read_library(db: &Path) -> Result<Vec<CalibreBook>, CalibreError> {
    let mut last = None;
    for attempt in 0..50 {
        let conn = open(db)?;
        match read_all(&conn) {
            Ok(b) => return Ok(b),
            Err(e) if is_busy(&e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(50 + 10 * attempt));
            }
            Err(e) => return Err(CalibreError::Format(e.to_string())),
        }
    }
    tracing::warn!(error = ?last, "Calibre library stayed busy");
    Err(CalibreError::Busy)
}

fn read_all(c: &Connection) -> rusqlite::Result<Vec<CalibreBook>> {
    // One deferred read transaction: a consistent view, held only for these SELECTs.
    c.execute_batch("BEGIN")?;
    let r = read_tables(c);
    let _ = c.execute_batch("COMMIT");
    r
}

fn pairs(c: &Connection, sql: &str) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut st = c.prepare(sql)?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        ))
    })?;
    rows.collect()
}

fn read_tables(c: &Connection) -> rusqlite::Result<Vec<CalibreBook>> {
    let mut books: Vec<CalibreBook> = {
        let mut st = c.prepare(
            "SELECT id, title, sort, timestamp, pubdate, series_index, path, uuid, has_cover, last_modified
             FROM books ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(CalibreBook {
                id: r.get(0)?,
                title: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                sort: r.get(2)?,
                timestamp: r.get(3)?,
                pubdate: r.get(4)?,
                series_index: r.get(5)?,
                path: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                uuid: r.get(7)?,
                has_cover: r.get::<_, Option<bool>>(8)?.unwrap_or(false),
                last_modified: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                authors: vec![],
                series: None,
                tags: vec![],
                publisher: None,
                languages: vec![],
                identifiers: BTreeMap::new(),
                rating: None,
                comments: None,
                formats: vec![],
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let index: HashMap<i64, usize> = books.iter().enumerate().map(|(i, b)| (b.id, i)).collect();
    let at = |id: i64| index.get(&id).copied();

    let mut st = c.prepare(
        "SELECT l.book, a.name, a.sort FROM books_authors_link l JOIN authors a ON a.id = l.author ORDER BY l.book, l.id",
    )?;
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })? {
        let (book, name, sort) = row?;
        if let Some(i) = at(book) {
            let sort = sort.unwrap_or_else(|| name.clone());
            books[i].authors.push((name, sort));
        }
    }
    for (book, name) in pairs(
        c,
        "SELECT l.book, s.name FROM books_series_link l JOIN series s ON s.id = l.series",
    )? {
        if let Some(i) = at(book) {
            books[i].series = Some(name);
        }
    }
    for (book, name) in pairs(
        c,
        "SELECT l.book, t.name FROM books_tags_link l JOIN tags t ON t.id = l.tag ORDER BY l.book, t.name",
    )? {
        if let Some(i) = at(book) {
            books[i].tags.push(name);
        }
    }
    for (book, name) in pairs(
        c,
        "SELECT l.book, p.name FROM books_publishers_link l JOIN publishers p ON p.id = l.publisher",
    )? {
        if let Some(i) = at(book) {
            books[i].publisher = Some(name);
        }
    }
    for (book, code) in pairs(
        c,
        "SELECT l.book, g.lang_code FROM books_languages_link l JOIN languages g ON g.id = l.lang_code ORDER BY l.book, l.item_order",
    )? {
        if let Some(i) = at(book) {
            books[i].languages.push(code);
        }
    }
    let mut st = c.prepare("SELECT book, type, val FROM identifiers ORDER BY book, id")?;
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })? {
        let (book, kind, val) = row?;
        if let Some(i) = at(book) {
            books[i]
                .identifiers
                .entry(kind.to_ascii_lowercase())
                .or_insert(val);
        }
    }
    let mut st = c.prepare(
        "SELECT l.book, r.rating FROM books_ratings_link l JOIN ratings r ON r.id = l.rating",
    )?;
    for row in st.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
    })? {
        let (book, rating) = row?;
        if let (Some(i), Some(r)) = (at(book), rating)
            && (1..=10).contains(&r)
        {
            books[i].rating = Some(r as u8);
        }
    }
    for (book, text) in pairs(c, "SELECT book, text FROM comments")? {
        if let Some(i) = at(book)
            && !text.trim().is_empty()
        {
            books[i].comments = Some(text);
        }
    }
    let mut st =
        c.prepare("SELECT book, format, name, uncompressed_size FROM data ORDER BY book, format")?;
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<i64>>(3)?,
        ))
    })? {
        let (book, format, name, size) = row?;
        if let Some(i) = at(book) {
            books[i].formats.push(CalibreFile {
                format: format.to_ascii_uppercase(),
                name,
                size: size.unwrap_or(0).max(0) as u64,
            });
        }
    }
    Ok(books)
}

/// ISO 639-2 (Calibre) to the BCP 47 tag Dogear uses, for the common languages; others
/// stay as they are (three-letter codes are valid BCP 47 too).
pub fn bcp47(code: &str) -> String {
    let two = match code {
        "eng" => "en",
        "fra" | "fre" => "fr",
        "deu" | "ger" => "de",
        "spa" => "es",
        "ita" => "it",
        "por" => "pt",
        "nld" | "dut" => "nl",
        "tur" => "tr",
        "rus" => "ru",
        "jpn" => "ja",
        "zho" | "chi" => "zh",
        "kor" => "ko",
        "ara" => "ar",
        "pol" => "pl",
        "swe" => "sv",
        "dan" => "da",
        "nor" | "nob" => "no",
        "fin" => "fi",
        "ces" | "cze" => "cs",
        "ell" | "gre" => "el",
        "heb" => "he",
        "hun" => "hu",
        "lat" => "la",
        "ukr" => "uk",
        "cat" => "ca",
        "ron" | "rum" => "ro",
        other => other,
    };
    two.to_string()
}
