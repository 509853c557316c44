//! Book, job and source-file rows: how records become SQL parameters, and the book list query.

use super::rows::*;
use super::{json, map_unique};
use crate::error::StoreError;
use crate::records::*;
use crate::sql::{Bound, merge_pages, mine_clause, page_clauses};
use rusqlite::{Connection, OptionalExtension, params};

/// A book made ready for SQL outside the writer thread (JSON encoded, sort keys computed).
pub(super) struct BookRow {
    id: String,
    pub(super) library_id: String,
    title: String,
    authors: String,
    language: Option<String>,
    identifiers: String,
    added_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    version: i64,
    meta: String,
    title_key: String,
    author_key: String,
    series_key: String,
    pub(super) hashes: Vec<String>,
    koreader: Vec<String>,
}

impl BookRow {
    pub(super) fn new(b: &Book) -> Result<BookRow, StoreError> {
        Ok(BookRow {
            id: b.id.to_string(),
            library_id: b.library_id.to_string(),
            title: b.title.clone(),
            authors: json(&b.authors)?,
            language: b.language.clone(),
            identifiers: json(&b.identifiers)?,
            added_at: b.added_at.millis(),
            updated_at: b.updated_at.millis(),
            deleted_at: b.deleted_at.map(|t| t.millis()),
            version: b.version as i64,
            meta: json(&b.meta)?,
            title_key: b.title_key(),
            author_key: b.author_key(),
            series_key: b.series_key(),
            hashes: b.content_hashes().into_iter().map(str::to_string).collect(),
            koreader: b.koreader_digests(),
        })
    }

    pub(super) fn insert(&self, c: &Connection) -> Result<(), StoreError> {
        bump_changes(c)?;
        c.prepare_cached(
            "INSERT INTO books (id, library_id, title, authors, language, identifiers, added_at,
                                updated_at, deleted_at, version, meta, title_key, author_key, series_key,
                                change_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                     (SELECT seq FROM change_counter WHERE id = 1))",
        )?
        .execute(params![
            self.id,
            self.library_id,
            self.title,
            self.authors,
            self.language,
            self.identifiers,
            self.added_at,
            self.updated_at,
            self.deleted_at,
            self.version,
            self.meta,
            self.title_key,
            self.author_key,
            self.series_key
        ])
        .map_err(|e| map_unique(e, "book"))?;
        self.sync_hashes(c)
    }

    /// Replaces the stored book if its version is one less than this one.
    pub(super) fn update(&self, c: &Connection) -> Result<(), StoreError> {
        let expected = self.version - 1;
        bump_changes(c)?;
        let n = c
            .prepare_cached(
                "UPDATE books SET title = ?2, authors = ?3, language = ?4, identifiers = ?5,
                        updated_at = ?6, deleted_at = ?7, version = ?8, meta = ?9,
                        title_key = ?10, author_key = ?11, series_key = ?12,
                        change_seq = (SELECT seq FROM change_counter WHERE id = 1)
                 WHERE id = ?1 AND version = ?13",
            )?
            .execute(params![
                self.id,
                self.title,
                self.authors,
                self.language,
                self.identifiers,
                self.updated_at,
                self.deleted_at,
                self.version,
                self.meta,
                self.title_key,
                self.author_key,
                self.series_key,
                expected
            ])?;
        if n == 1 {
            return self.sync_hashes(c);
        }
        let found: Option<i64> = c
            .query_row("SELECT version FROM books WHERE id = ?1", [&self.id], |r| {
                r.get(0)
            })
            .optional()?;
        match found {
            None => Err(StoreError::NotFound),
            Some(v) => Err(StoreError::VersionConflict {
                expected: expected as u64,
                found: v as u64,
            }),
        }
    }

    /// A live book owns its content hashes in its library; a tombstone owns none, so the
    /// same file may be imported again after a delete.
    fn sync_hashes(&self, c: &Connection) -> Result<(), StoreError> {
        super::koreader::index_digests(c, &self.id, &self.koreader)?;
        c.prepare_cached("DELETE FROM book_hashes WHERE book_id = ?1")?
            .execute([&self.id])?;
        if self.deleted_at.is_none() {
            for h in &self.hashes {
                c.prepare_cached(
                    "INSERT INTO book_hashes (library_id, hash, book_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![self.library_id, h, self.id])?;
            }
        }
        Ok(())
    }
}

/// Recomputes every book's sort keys (after the migration that added them).
pub(super) fn rekey(c: &Connection) -> Result<(), StoreError> {
    let books: Vec<Book> = {
        let mut st = c.prepare(&format!("SELECT {BOOK_COLS} FROM books"))?;
        let rows = st.query_map([], book_row)?;
        rows.map(|r| r?).collect::<Result<_, _>>()?
    };
    let tx = c.unchecked_transaction()?;
    for b in &books {
        tx.execute(
            "UPDATE books SET title_key = ?2, author_key = ?3, series_key = ?4 WHERE id = ?1",
            params![
                b.id.to_string(),
                b.title_key(),
                b.author_key(),
                b.series_key()
            ],
        )?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) struct JobRow {
    job: ImportJob,
    error: Option<String>,
    warnings: String,
}

impl JobRow {
    pub(super) fn new(j: &ImportJob) -> Result<JobRow, StoreError> {
        Ok(JobRow {
            job: j.clone(),
            error: j.error.as_ref().map(json).transpose()?,
            warnings: json(&j.warnings)?,
        })
    }

    pub(super) fn upsert(&self, c: &Connection) -> Result<(), StoreError> {
        let j = &self.job;
        c.prepare_cached(
            "INSERT INTO import_jobs (id, library_id, user_id, source, source_key, path, filename,
                 staged, state, attempts, run_at, book_id, duplicate_of, error, warnings,
                 created_at, updated_at, node)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
                 run_at = excluded.run_at, book_id = excluded.book_id,
                 duplicate_of = excluded.duplicate_of, error = excluded.error,
                 warnings = excluded.warnings, updated_at = excluded.updated_at",
        )?
        .execute(params![
            j.id.to_string(),
            j.library_id.to_string(),
            j.user_id.map(|u| u.to_string()),
            j.source.as_str(),
            j.source_key,
            j.path,
            j.filename,
            j.staged,
            j.state.as_str(),
            j.attempts as i64,
            j.run_at.millis(),
            j.book_id.map(|b| b.to_string()),
            j.duplicate_of.map(|b| b.to_string()),
            self.error,
            self.warnings,
            j.created_at.millis(),
            j.updated_at.millis(),
            j.node
        ])?;
        Ok(())
    }
}

pub(super) fn upsert_source(c: &Connection, s: &SourceFile) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO source_files (source, path, library_id, hash, size, mtime, book_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (source, path) DO UPDATE SET library_id = excluded.library_id,
             hash = excluded.hash, size = excluded.size, mtime = excluded.mtime,
             book_id = excluded.book_id",
    )?
    .execute(params![
        s.source,
        s.path,
        s.library_id.to_string(),
        s.hash,
        s.size as i64,
        s.mtime,
        s.book_id.map(|b| b.to_string())
    ])?;
    Ok(())
}

/// Turns what a person typed into an FTS5 query: every word must match, as a prefix, and
/// nothing they type can be FTS5 syntax.
fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"*", w.replace('"', "")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// An FTS5 phrase restricted to one column, to find candidates for an exact filter.
fn fts_phrase(column: &str, text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    (!words.is_empty()).then(|| format!("{column} : \"{}\"", words.join(" ")))
}

/// A page of books. Each library is one range scan of the index for the order asked
/// (`library_id, key, id`); with several libraries the per-library pages are merged.
pub(super) fn list_books(c: &Connection, q: &BookQuery) -> Result<Vec<Book>, StoreError> {
    let mut all = Vec::new();
    for lib in &q.libraries {
        all.extend(list_one(c, q, &lib.to_string())?);
    }
    Ok(merge_pages(q, all))
}

fn list_one(c: &Connection, q: &BookQuery, library: &str) -> Result<Vec<Book>, StoreError> {
    let mut values: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    let mut bind = |v: Box<dyn rusqlite::ToSql>| {
        values.push(v);
        format!("?{}", values.len())
    };
    let lib = bind(Box::new(library.to_string()));
    let mut filters = vec![
        "deleted_at IS NULL".to_string(),
        format!("library_id = {lib}"),
    ];
    // Full-text conditions (the query, and candidates for the exact filters) in one MATCH.
    let mut matches = Vec::new();
    if let Some(text) = q.q.as_deref() {
        match fts_query(text) {
            Some(m) => matches.push(m),
            None => return Ok(Vec::new()),
        }
    }
    for (column, value) in [
        ("authors", &q.author),
        ("series", &q.series),
        ("tags", &q.tag),
    ] {
        if let Some(v) = value {
            match fts_phrase(column, v) {
                Some(m) => matches.push(m),
                None => return Ok(Vec::new()),
            }
        }
    }
    if !matches.is_empty() {
        let m = matches.join(" AND ");
        filters.push(format!(
            "rowid IN (SELECT rowid FROM books_fts WHERE books_fts MATCH {})",
            bind(Box::new(m))
        ));
    }
    if let Some(a) = &q.author {
        filters.push(format!(
            "EXISTS (SELECT 1 FROM json_each(books.authors) WHERE lower(value) = lower({}))",
            bind(Box::new(a.clone()))
        ));
    }
    if let Some(s) = &q.series {
        filters.push(format!(
            "lower(json_extract(meta, '$.series')) = lower({})",
            bind(Box::new(s.clone()))
        ));
    }
    if let Some(t) = &q.tag {
        filters.push(format!(
            "EXISTS (SELECT 1 FROM json_each(books.meta, '$.tags') WHERE lower(value) = lower({}))",
            bind(Box::new(t.clone()))
        ));
    }
    if let Some(l) = &q.language {
        filters.push(format!(
            "lower(language) = lower({})",
            bind(Box::new(l.clone()))
        ));
    }
    if q.with_files {
        filters.push("COALESCE(json_array_length(meta, '$.formats'), 0) > 0".into());
    }
    if let Some(f) = q.format {
        filters.push(format!(
            "EXISTS (SELECT 1 FROM json_each(books.meta, '$.formats') WHERE json_extract(value, '$.format') = {})",
            bind(Box::new(f.as_str().to_string()))
        ));
    }
    match mine_clause(q, |v| match v {
        Bound::Text(t) => bind(Box::new(t)),
        Bound::Int(i) => bind(Box::new(i)),
    }) {
        Ok(Some(c)) => filters.push(c),
        Ok(None) => {}
        Err(()) => return Ok(Vec::new()),
    }
    let (after, order) = page_clauses(q, |v| match v {
        Bound::Text(t) => bind(Box::new(t)),
        Bound::Int(i) => bind(Box::new(i)),
    })?;
    filters.extend(after);
    let limit = bind(Box::new(q.limit as i64));
    let sql = format!(
        "SELECT {BOOK_COLS} FROM books WHERE {} ORDER BY {order} LIMIT {limit}",
        filters.join(" AND ")
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(values.iter()), book_row)?;
    rows.map(|r| r?).collect()
}

/// Takes the next number of the change sequence for the row written next in this
/// transaction. One writer commits in order, so a reader that sees a number sees every
/// smaller one: a cursor on it never skips a change committed later with an earlier clock.
pub(super) fn bump_changes(c: &Connection) -> Result<u64, StoreError> {
    Ok(
        c.prepare_cached("UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq")?
            .query_row([], |r| r.get::<_, i64>(0))? as u64,
    )
}

/// Every value of `facet` among the live books of `libraries` that have a file, with how
/// many books have it:
/// values that differ only in case are one (the filters ignore case), ordered so.
pub(super) fn book_facets(
    c: &Connection,
    libraries: &[String],
    facet: BookFacet,
) -> Result<Vec<(String, u64)>, StoreError> {
    // The numbers migration 9's triggers keep (its `facet` codes).
    let code = match facet {
        BookFacet::Author => 0,
        BookFacet::Tag => 1,
        BookFacet::Series => 2,
        BookFacet::Language => 3,
    };
    let libs = serde_json::Value::from(libraries.to_vec()).to_string();
    let mut st = c.prepare_cached(
        "SELECT min(value), sum(n) FROM book_facet_counts
         WHERE library_id IN (SELECT value FROM json_each(?1)) AND facet = ?2 AND n > 0
         GROUP BY key ORDER BY key",
    )?;
    let rows = st.query_map(rusqlite::params![libs, code], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
