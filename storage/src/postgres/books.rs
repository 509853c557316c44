//! Books, import jobs and source files as PostgreSQL rows, and the book list query.

use super::rows::*;
use super::{exec, json, query, query_opt, unique};
use crate::error::StoreError;
use crate::records::*;
use crate::sql::{Bound, merge_pages, mine_clause, page_clauses};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

/// Lower-cases, applies Unicode compatibility folding (NFKC: full-width letters, ligatures)
/// and drops diacritics, so that "emile" finds "Émile" as SQLite's FTS5 index
/// (`remove_diacritics 2` over `dogear_fold`) does.
pub(super) fn fold(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;
    let compat: String = s.nfkc().collect();
    compat
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The words of `s` as the search sees them: folded, split at anything not a letter or digit.
pub(super) fn words(s: &str) -> Vec<String> {
    fold(s)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// A book made ready for SQL: JSON encoded, sort keys and search columns computed.
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
    /// Every word of title, authors, series and tags, each preceded by a space, so that a
    /// prefix of a word is `LIKE '% prefix%'`.
    search: String,
    authors_lc: Vec<String>,
    series_lc: Option<String>,
    tags_lc: Vec<String>,
    pub(super) hashes: Vec<String>,
    koreader: Vec<String>,
}

impl BookRow {
    pub(super) fn new(b: &Book) -> Result<BookRow, StoreError> {
        let mut text: Vec<&str> = vec![&b.title];
        text.extend(b.authors.iter().map(String::as_str));
        text.extend(b.meta.series.as_deref());
        text.extend(b.meta.tags.iter().map(String::as_str));
        let mut search = String::new();
        for w in text.iter().flat_map(|t| words(t)) {
            search.push(' ');
            search.push_str(&w);
        }
        search.push(' ');
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
            search,
            authors_lc: b.authors.iter().map(|a| a.to_lowercase()).collect(),
            series_lc: b.meta.series.as_deref().map(str::to_lowercase),
            tags_lc: b.meta.tags.iter().map(|t| t.to_lowercase()).collect(),
            hashes: b.content_hashes().into_iter().map(str::to_string).collect(),
            koreader: b.koreader_digests(),
        })
    }

    pub(super) async fn insert(&self, c: &impl GenericClient) -> Result<(), StoreError> {
        let seq = bump_changes(c).await?;
        exec(
            c,
            "INSERT INTO books (id, library_id, title, authors, language, identifiers, added_at,
                 updated_at, deleted_at, version, meta, title_key, author_key, series_key,
                 change_seq, search, authors_lc, series_lc, tags_lc)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, $19)",
            &[
                &self.id,
                &self.library_id,
                &self.title,
                &self.authors,
                &self.language,
                &self.identifiers,
                &self.added_at,
                &self.updated_at,
                &self.deleted_at,
                &self.version,
                &self.meta,
                &self.title_key,
                &self.author_key,
                &self.series_key,
                &seq,
                &self.search,
                &self.authors_lc,
                &self.series_lc,
                &self.tags_lc,
            ],
        )
        .await
        .map_err(|e| unique(e, "book"))?;
        self.sync_hashes(c).await
    }

    /// Replaces the stored book if its version is one less than this one.
    pub(super) async fn update(&self, c: &impl GenericClient) -> Result<(), StoreError> {
        let expected = self.version - 1;
        let seq = bump_changes(c).await?;
        let n = exec(
            c,
            "UPDATE books SET title = $2, authors = $3, language = $4, identifiers = $5,
                 updated_at = $6, deleted_at = $7, version = $8, meta = $9, title_key = $10,
                 author_key = $11, series_key = $12, change_seq = $13, search = $14,
                 authors_lc = $15, series_lc = $16, tags_lc = $17
             WHERE id = $1 AND version = $18",
            &[
                &self.id,
                &self.title,
                &self.authors,
                &self.language,
                &self.identifiers,
                &self.updated_at,
                &self.deleted_at,
                &self.version,
                &self.meta,
                &self.title_key,
                &self.author_key,
                &self.series_key,
                &seq,
                &self.search,
                &self.authors_lc,
                &self.series_lc,
                &self.tags_lc,
                &expected,
            ],
        )
        .await?;
        if n == 1 {
            return self.sync_hashes(c).await;
        }
        let found = query_opt(c, "SELECT version FROM books WHERE id = $1", &[&self.id]).await?;
        match found {
            None => Err(StoreError::NotFound),
            Some(r) => Err(StoreError::VersionConflict {
                expected: expected as u64,
                found: col::<i64>(&r, 0)? as u64,
            }),
        }
    }

    /// A live book owns its content hashes in its library; a tombstone owns none, so the
    /// same file may be imported again after a delete.
    async fn sync_hashes(&self, c: &impl GenericClient) -> Result<(), StoreError> {
        super::koreader::index_digests(c, &self.id, &self.koreader).await?;
        exec(c, "DELETE FROM book_hashes WHERE book_id = $1", &[&self.id]).await?;
        if self.deleted_at.is_none() {
            for h in &self.hashes {
                exec(
                    c,
                    "INSERT INTO book_hashes (library_id, hash, book_id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&self.library_id, h, &self.id],
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Takes the next number of the change sequence and holds the counter's row lock until the
/// transaction ends: see the schema for why numbers then follow commit order.
pub(super) async fn bump_changes(c: &impl GenericClient) -> Result<i64, StoreError> {
    let r = query(
        c,
        "UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq",
        &[],
    )
    .await?;
    let r = r
        .first()
        .ok_or_else(|| StoreError::Corrupt("change_counter has no row".into()))?;
    col(r, 0)
}

pub(super) async fn upsert_job(c: &impl GenericClient, j: &ImportJob) -> Result<(), StoreError> {
    let error = j.error.as_ref().map(json).transpose()?;
    let warnings = json(&j.warnings)?;
    exec(
        c,
        "INSERT INTO import_jobs (id, library_id, user_id, source, source_key, path, filename,
             staged, state, attempts, run_at, book_id, duplicate_of, error, warnings,
             created_at, updated_at, node)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
             run_at = excluded.run_at, book_id = excluded.book_id,
             duplicate_of = excluded.duplicate_of, error = excluded.error,
             warnings = excluded.warnings, updated_at = excluded.updated_at",
        &[
            &j.id.to_string(),
            &j.library_id.to_string(),
            &j.user_id.map(|u| u.to_string()),
            &j.source.as_str(),
            &j.source_key,
            &j.path,
            &j.filename,
            &j.staged,
            &j.state.as_str(),
            &(j.attempts as i64),
            &j.run_at.millis(),
            &j.book_id.map(|b| b.to_string()),
            &j.duplicate_of.map(|b| b.to_string()),
            &error,
            &warnings,
            &j.created_at.millis(),
            &j.updated_at.millis(),
            &j.node,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn upsert_source(
    c: &impl GenericClient,
    s: &SourceFile,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO source_files (source, path, library_id, hash, size, mtime, book_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (source, path) DO UPDATE SET library_id = excluded.library_id,
             hash = excluded.hash, size = excluded.size, mtime = excluded.mtime,
             book_id = excluded.book_id",
        &[
            &s.source,
            &s.path,
            &s.library_id.to_string(),
            &s.hash,
            &(s.size as i64),
            &s.mtime,
            &s.book_id.map(|b| b.to_string()),
        ],
    )
    .await?;
    Ok(())
}

type Param = Box<dyn ToSql + Sync + Send>;

/// A page of books. Each library is one range scan of the index for the order asked
/// (`library_id, key, id`); with several libraries the per-library pages are merged.
pub(super) async fn list_books(
    c: &impl GenericClient,
    q: &BookQuery,
) -> Result<Vec<Book>, StoreError> {
    let mut all = Vec::new();
    for lib in &q.libraries {
        all.extend(list_one(c, q, lib.to_string()).await?);
    }
    Ok(merge_pages(q, all))
}

async fn list_one(
    c: &impl GenericClient,
    q: &BookQuery,
    library: String,
) -> Result<Vec<Book>, StoreError> {
    let mut values: Vec<Param> = Vec::new();
    let mut bind = |v: Param| {
        values.push(v);
        format!("${}", values.len())
    };
    let lib = bind(Box::new(library));
    let mut filters = vec![
        "deleted_at IS NULL".to_string(),
        format!("library_id = {lib}"),
    ];
    if let Some(text) = q.q.as_deref() {
        let ws = words(text);
        if ws.is_empty() {
            return Ok(Vec::new());
        }
        // Words hold only letters and digits: nothing in them is LIKE syntax.
        for w in ws {
            filters.push(format!("search LIKE {}", bind(Box::new(format!("% {w}%")))));
        }
    }
    if let Some(a) = &q.author {
        filters.push(format!(
            "{} = ANY(authors_lc)",
            bind(Box::new(a.to_lowercase()))
        ));
    }
    if let Some(s) = &q.series {
        filters.push(format!("series_lc = {}", bind(Box::new(s.to_lowercase()))));
    }
    if let Some(t) = &q.tag {
        filters.push(format!(
            "{} = ANY(tags_lc)",
            bind(Box::new(t.to_lowercase()))
        ));
    }
    if let Some(l) = &q.language {
        filters.push(format!(
            "lower(language) = {}",
            bind(Box::new(l.to_lowercase()))
        ));
    }
    if q.with_files {
        filters
            .push("jsonb_array_length(COALESCE(meta::jsonb -> 'formats', '[]'::jsonb)) > 0".into());
    }
    if let Some(f) = q.format {
        filters.push(format!(
            "(meta::jsonb -> 'formats') @> ({}::text)::jsonb",
            bind(Box::new(format!("[{{\"format\":\"{}\"}}]", f.as_str())))
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
    let params: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect();
    query(c, &sql, &params)
        .await?
        .iter()
        .map(book_row)
        .collect()
}

/// Every value of `facet` among the live books of `libraries` that have a file, with how
/// many books have it:
/// values that differ only in case are one (the filters ignore case), ordered so.
pub(super) async fn book_facets(
    c: &impl GenericClient,
    libraries: &[String],
    facet: BookFacet,
) -> Result<Vec<(String, u64)>, StoreError> {
    let values = match facet {
        BookFacet::Author => {
            "SELECT jsonb_array_elements_text(authors::jsonb) AS v FROM books WHERE"
        }
        BookFacet::Tag => {
            "SELECT jsonb_array_elements_text(COALESCE(meta::jsonb -> 'tags', '[]'::jsonb)) AS v FROM books WHERE"
        }
        BookFacet::Series => "SELECT meta::jsonb ->> 'series' AS v FROM books WHERE",
        BookFacet::Language => "SELECT language AS v FROM books WHERE",
    };
    let sql = format!(
        "SELECT min(v COLLATE \"C\"), count(*)
         FROM ({values} deleted_at IS NULL AND library_id = ANY($1::text[])
               AND jsonb_array_length(COALESCE(meta::jsonb -> 'formats', '[]'::jsonb)) > 0) f
         WHERE v IS NOT NULL AND v <> '' GROUP BY lower(v) ORDER BY lower(v) COLLATE \"C\""
    );
    query(c, &sql, &[&libraries])
        .await?
        .iter()
        .map(|r| Ok((col::<String>(r, 0)?, col::<i64>(r, 1)? as u64)))
        .collect()
}
