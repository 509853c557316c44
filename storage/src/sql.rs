//! What the SQL backends share: the column lists records are read by (so both read a record
//! the same way) and the paging of the book list.

use crate::error::StoreError;
use crate::records::{Book, BookQuery, BookSort};

pub(crate) const USER_COLS: &str = "id, username, email, password_hash, is_admin, created_at, display_name, token_epoch, disabled_at, visibility";
pub(crate) const LIBRARY_COLS: &str = "id, name, kind, owner_id, created_at, pending_owner";
pub(crate) const LIBRARY_COLS_L: &str =
    "l.id, l.name, l.kind, l.owner_id, l.created_at, l.pending_owner";
pub(crate) const BOOK_COLS: &str = "id, library_id, title, authors, language, identifiers, added_at, updated_at, deleted_at, version, meta";
pub(crate) const JOB_COLS: &str = "id, library_id, user_id, source, source_key, path, filename, staged, state, attempts, run_at, book_id, duplicate_of, error, warnings, created_at, updated_at, node";
pub(crate) const SOURCE_COLS: &str = "source, path, library_id, hash, size, mtime, book_id";
pub(crate) const EVENT_COLS: &str =
    "seq, event_id, book_id, device_id, body, applied, reason, state, received_at";
pub(crate) const SHELF_COLS: &str =
    "id, user_id, name, books, created_at, updated_at, deleted_at, change_seq, library_id, public";

/// A value for a placeholder, which each backend binds its own way.
pub(crate) enum Bound {
    Text(String),
    Int(i64),
}

/// The column a sort reads inside one library, after which `id` breaks ties; `None`: by id.
fn sort_column(sort: BookSort) -> Option<&'static str> {
    match sort {
        BookSort::Id => None,
        BookSort::Title => Some("title_key"),
        BookSort::Author => Some("author_key"),
        BookSort::Series => Some("series_key"),
        BookSort::Added => Some("added_at"),
    }
}

/// The condition for "after the cursor" (if the query has one) and the `ORDER BY` list. Each
/// library's page is one range scan of the index `(library_id, column, id)`.
pub(crate) fn page_clauses(
    q: &BookQuery,
    mut bind: impl FnMut(Bound) -> String,
) -> Result<(Option<String>, String), StoreError> {
    let key = sort_column(q.sort);
    let (cmp, dir) = if q.descending {
        ("<", " DESC")
    } else {
        (">", "")
    };
    let filter = match &q.after {
        None => None,
        Some(after) => {
            let id = bind(Bound::Text(after.id.to_string()));
            Some(match key {
                None => format!("id {cmp} {id}"),
                Some("added_at") => {
                    let k: i64 = after
                        .key
                        .parse()
                        .map_err(|_| StoreError::Corrupt("cursor".into()))?;
                    format!("(added_at, id) {cmp} ({}, {id})", bind(Bound::Int(k)))
                }
                Some(col) => format!(
                    "({col}, id) {cmp} ({}, {id})",
                    bind(Bound::Text(after.key.clone()))
                ),
            })
        }
    };
    let order = match key {
        None => format!("id{dir}"),
        Some(col) => format!("{col}{dir}, id{dir}"),
    };
    Ok((filter, order))
}

/// Pages of several libraries merged in the query's order, cut to its limit.
pub(crate) fn merge_pages(q: &BookQuery, mut all: Vec<Book>) -> Vec<Book> {
    if q.libraries.len() > 1 {
        match q.sort {
            BookSort::Added => all.sort_by_key(|b| (b.added_at.millis(), b.id)),
            sort => all.sort_by_cached_key(|b| (b.sort_key(sort), b.id)),
        }
        if q.descending {
            all.reverse();
        }
        all.truncate(q.limit);
    }
    all
}

/// Refuses a progress batch whose writes are not one user's consecutive log entries: each
/// write's seq is its `expected_seq + 1` and the next write expects the seq before it.
/// `false` for an empty batch (nothing to store).
pub(crate) fn check_chain(
    user: crate::UserId,
    writes: &[crate::ProgressWrite],
) -> Result<bool, StoreError> {
    let mut expected = writes.first().map(|w| w.expected_seq);
    for w in writes {
        if w.user_id != user {
            return Err(StoreError::Corrupt("a progress batch mixes users".into()));
        }
        let want = expected.unwrap_or(w.expected_seq);
        if w.expected_seq != want || w.event.seq != want + 1 {
            return Err(StoreError::VersionConflict {
                expected: want,
                found: w.event.seq,
            });
        }
        expected = Some(w.event.seq);
    }
    Ok(!writes.is_empty())
}

/// The condition on the caller's records of a book list (`BookQuery::mine`), if it has one:
/// `Err(())` when nothing can match (a filter without its user).
pub(crate) fn mine_clause(
    q: &BookQuery,
    mut bind: impl FnMut(Bound) -> String,
) -> Result<Option<String>, ()> {
    let Some(m) = q.mine.as_ref().filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    let user = m.user.ok_or(())?;
    let mut conds = vec![
        "ub.book_id = books.id".to_string(),
        format!("ub.user_id = {}", bind(Bound::Text(user.to_string()))),
    ];
    if let Some(s) = m.status {
        conds.push(format!(
            "ub.status = {}",
            bind(Bound::Text(s.as_str().to_string()))
        ));
    }
    // Literal: SQLite stores it as 0/1, PostgreSQL as a boolean; both read `ub.favourite`.
    match m.favourite {
        Some(true) => conds.push("ub.favourite".into()),
        Some(false) => conds.push("NOT ub.favourite".into()),
        None => {}
    }
    match m.rated {
        Some(true) => conds.push("ub.rating IS NOT NULL".into()),
        Some(false) => conds.push("ub.rating IS NULL".into()),
        None => {}
    }
    let exists = format!(
        "EXISTS (SELECT 1 FROM user_books ub WHERE {})",
        conds.join(" AND ")
    );
    // A book without a record is unrated and not a favourite.
    let absent_matches = m.status.is_none() && m.favourite != Some(true) && m.rated != Some(true);
    Ok(Some(if absent_matches {
        format!(
            "({exists} OR NOT EXISTS (SELECT 1 FROM user_books ub WHERE ub.book_id = books.id AND ub.user_id = {}))",
            bind(Bound::Text(user.to_string()))
        )
    } else {
        exists
    }))
}
