//! Schema versions, applied in order on start-up inside one transaction each. Append new
//! migrations at the end; never edit one that has shipped.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: accounts, devices, libraries, minimal books, progress log and state.
    r#"
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        email TEXT,
        password_hash TEXT NOT NULL,
        is_admin INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE libraries (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        owner_id TEXT NOT NULL REFERENCES users(id),
        created_at INTEGER NOT NULL
    );
    CREATE TABLE memberships (
        library_id TEXT NOT NULL REFERENCES libraries(id),
        user_id TEXT NOT NULL REFERENCES users(id),
        role TEXT NOT NULL,
        PRIMARY KEY (library_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX memberships_by_user ON memberships(user_id);
    CREATE TABLE refresh_tokens (
        hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id),
        family_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        revoked INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX refresh_tokens_by_family ON refresh_tokens(family_id);
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX devices_by_user ON devices(user_id);
    CREATE TABLE books (
        id TEXT PRIMARY KEY,
        library_id TEXT NOT NULL REFERENCES libraries(id),
        title TEXT NOT NULL,
        authors TEXT NOT NULL,
        language TEXT,
        identifiers TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        deleted_at INTEGER,
        version INTEGER NOT NULL
    );
    CREATE INDEX books_by_library ON books(library_id, id);
    CREATE TABLE progress_events (
        user_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        event_id TEXT NOT NULL,
        book_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        body TEXT NOT NULL,
        applied INTEGER NOT NULL,
        reason TEXT,
        state TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX progress_events_by_event_id ON progress_events(user_id, event_id);
    -- One row per user and book: the canonical state and every device's last position
    -- (a JSON object keyed by device id), so a progress write touches one row here.
    CREATE TABLE progress_books (
        user_id TEXT NOT NULL,
        book_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        positions TEXT NOT NULL,
        PRIMARY KEY (user_id, book_id)
    ) WITHOUT ROWID;
    "#,
    // 2: books from files: metadata, formats, sort keys, full-text search, content hashes,
    // the persistent import queue and what each watched folder or Calibre library held.
    r#"
    ALTER TABLE books ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE books ADD COLUMN title_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE books ADD COLUMN author_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE books ADD COLUMN series_key TEXT NOT NULL DEFAULT '';
    -- Sort keys of existing books are computed by `SqliteStore::open` (the same Rust code
    -- that computes them for new books), right after this migration.
    -- One ordered index per sort, inside each library: a page is an index range scan.
    CREATE INDEX books_by_title ON books(library_id, title_key, id) WHERE deleted_at IS NULL;
    CREATE INDEX books_by_author ON books(library_id, author_key, id) WHERE deleted_at IS NULL;
    CREATE INDEX books_by_series ON books(library_id, series_key, id) WHERE deleted_at IS NULL;
    CREATE INDEX books_by_added ON books(library_id, added_at, id) WHERE deleted_at IS NULL;
    CREATE VIRTUAL TABLE books_fts USING fts5(
        title, authors, series, tags, tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER books_fts_insert AFTER INSERT ON books WHEN new.deleted_at IS NULL BEGIN
        INSERT INTO books_fts (rowid, title, authors, series, tags) VALUES (
            new.rowid, new.title,
            (SELECT group_concat(value, ' ') FROM json_each(new.authors)),
            coalesce(json_extract(new.meta, '$.series'), ''),
            (SELECT group_concat(value, ' ') FROM json_each(new.meta, '$.tags')));
    END;
    CREATE TRIGGER books_fts_update AFTER UPDATE ON books BEGIN
        DELETE FROM books_fts WHERE rowid = old.rowid;
        INSERT INTO books_fts (rowid, title, authors, series, tags)
        SELECT new.rowid, new.title,
            (SELECT group_concat(value, ' ') FROM json_each(new.authors)),
            coalesce(json_extract(new.meta, '$.series'), ''),
            (SELECT group_concat(value, ' ') FROM json_each(new.meta, '$.tags'))
        WHERE new.deleted_at IS NULL;
    END;
    INSERT INTO books_fts (rowid, title, authors, series, tags)
        SELECT rowid, title, (SELECT group_concat(value, ' ') FROM json_each(books.authors)), '', ''
        FROM books WHERE deleted_at IS NULL;
    -- Content hashes of live books' files, for deduplication within a library.
    CREATE TABLE book_hashes (
        library_id TEXT NOT NULL,
        hash TEXT NOT NULL,
        book_id TEXT NOT NULL,
        PRIMARY KEY (library_id, hash)
    ) WITHOUT ROWID;
    CREATE INDEX book_hashes_by_book ON book_hashes(book_id);
    CREATE TABLE import_jobs (
        id TEXT PRIMARY KEY,
        library_id TEXT NOT NULL,
        user_id TEXT,
        source TEXT NOT NULL,
        source_key TEXT,
        path TEXT NOT NULL,
        filename TEXT NOT NULL,
        staged INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        run_at INTEGER NOT NULL,
        book_id TEXT,
        duplicate_of TEXT,
        error TEXT,
        warnings TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX import_jobs_ready ON import_jobs(state, run_at);
    CREATE INDEX import_jobs_by_library ON import_jobs(library_id, id);
    CREATE TABLE source_files (
        source TEXT NOT NULL,
        path TEXT NOT NULL,
        library_id TEXT NOT NULL,
        hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        book_id TEXT,
        PRIMARY KEY (source, path)
    ) WITHOUT ROWID;
    CREATE INDEX source_files_by_book ON source_files(book_id);
    "#,
    // 3: change sequence of books and shelves (what a device has not seen yet), shelves,
    // Kobo device tokens, sync state and the per-device ledger of delivered books.
    r#"
    CREATE TABLE change_counter (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
    ALTER TABLE books ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
    UPDATE books SET change_seq = rowid;
    INSERT INTO change_counter (id, seq) SELECT 1, coalesce(max(change_seq), 0) FROM books;
    CREATE INDEX books_changes ON books(library_id, change_seq);
    CREATE TABLE shelves (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id),
        name TEXT NOT NULL,
        books TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        deleted_at INTEGER,
        change_seq INTEGER NOT NULL
    );
    CREATE INDEX shelves_changes ON shelves(user_id, change_seq);
    CREATE TABLE kobo_tokens (
        device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX kobo_tokens_by_user ON kobo_tokens(user_id);
    CREATE TABLE kobo_sync (
        device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        state TEXT NOT NULL
    );
    CREATE TABLE kobo_ledger (
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        book_id TEXT NOT NULL,
        library_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        removed INTEGER NOT NULL,
        archived INTEGER NOT NULL,
        PRIMARY KEY (device_id, book_id)
    ) WITHOUT ROWID;
    CREATE TABLE kobo_tags (
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        shelf_id TEXT NOT NULL,
        PRIMARY KEY (device_id, shelf_id)
    ) WITHOUT ROWID;
    "#,
    // 4: search folds Unicode compatibility forms (full-width letters, ligatures) on the
    // indexed side too, through `dogear_fold` (NFKC), a function the store registers on its
    // writing connection: a tool that writes books without it gets "no such function".
    r#"
    DROP TRIGGER books_fts_insert;
    DROP TRIGGER books_fts_update;
    CREATE TRIGGER books_fts_insert AFTER INSERT ON books WHEN new.deleted_at IS NULL BEGIN
        INSERT INTO books_fts (rowid, title, authors, series, tags) VALUES (
            new.rowid, dogear_fold(new.title),
            dogear_fold((SELECT group_concat(value, ' ') FROM json_each(new.authors))),
            dogear_fold(coalesce(json_extract(new.meta, '$.series'), '')),
            dogear_fold((SELECT group_concat(value, ' ') FROM json_each(new.meta, '$.tags'))));
    END;
    CREATE TRIGGER books_fts_update AFTER UPDATE ON books BEGIN
        DELETE FROM books_fts WHERE rowid = old.rowid;
        INSERT INTO books_fts (rowid, title, authors, series, tags)
        SELECT new.rowid, dogear_fold(new.title),
            dogear_fold((SELECT group_concat(value, ' ') FROM json_each(new.authors))),
            dogear_fold(coalesce(json_extract(new.meta, '$.series'), '')),
            dogear_fold((SELECT group_concat(value, ' ') FROM json_each(new.meta, '$.tags')))
        WHERE new.deleted_at IS NULL;
    END;
    DELETE FROM books_fts;
    INSERT INTO books_fts (rowid, title, authors, series, tags)
        SELECT rowid, dogear_fold(title),
            dogear_fold((SELECT group_concat(value, ' ') FROM json_each(books.authors))),
            dogear_fold(coalesce(json_extract(meta, '$.series'), '')),
            dogear_fold((SELECT group_concat(value, ' ') FROM json_each(meta, '$.tags')))
        FROM books WHERE deleted_at IS NULL;
    "#,
    // 5: import jobs tied to a node (a staged upload is on that node's disk) and the node
    // running each job, so that nodes sharing a database run only what they can read.
    r#"
    ALTER TABLE import_jobs ADD COLUMN node TEXT;
    ALTER TABLE import_jobs ADD COLUMN claimed_by TEXT;
    "#,
    // 6: the last generation of the progress log applied to this file, so that records of
    // an applied generation left in a reused log file are never applied again.
    r#"
    CREATE TABLE progress_log (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        applied_gen INTEGER NOT NULL
    );
    INSERT INTO progress_log (id, applied_gen) VALUES (1, 0);
    "#,
    // 7: KOReader: logins (one per `koreader` device), the digests KOReader names books'
    // files by (many to one, never removed), and positions kept per (user, digest).
    r#"
    CREATE TABLE koreader_logins (
        username TEXT PRIMARY KEY,
        device_id TEXT NOT NULL UNIQUE REFERENCES devices(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX koreader_logins_by_user ON koreader_logins(user_id);
    CREATE TABLE koreader_digests (
        digest TEXT NOT NULL,
        book_id TEXT NOT NULL,
        PRIMARY KEY (digest, book_id)
    ) WITHOUT ROWID;
    CREATE TABLE koreader_positions (
        user_id TEXT NOT NULL,
        document TEXT NOT NULL,
        progress TEXT NOT NULL,
        percentage REAL NOT NULL,
        device TEXT NOT NULL,
        device_id TEXT,
        written_by TEXT NOT NULL,
        book_id TEXT,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, document)
    ) WITHOUT ROWID;
    CREATE INDEX koreader_positions_unattached ON koreader_positions(document)
        WHERE book_id IS NULL;
    "#,
    // 8: tokens in OPDS catalog URLs, one device each.
    r#"
    CREATE TABLE opds_tokens (
        device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX opds_tokens_by_user ON opds_tokens(user_id);
    "#,
    // 9: the numbers of books by author, tag, series and language (the catalog's browse
    // lists), kept by triggers in the book's own write: grouping every book's JSON on each
    // read cost 70-180 ms on 20,000 books. A book counts while it is live and has a file;
    // `facet` is 0 author, 1 tag, 2 series, 3 language; `key` groups spellings that differ
    // only in case.
    r#"
    CREATE TABLE book_facet_counts (
        library_id TEXT NOT NULL,
        facet INTEGER NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (library_id, facet, key, value)
    ) WITHOUT ROWID;
    CREATE TRIGGER book_facets_insert AFTER INSERT ON books
    WHEN new.deleted_at IS NULL AND coalesce(json_array_length(new.meta, '$.formats'), 0) > 0 BEGIN
        INSERT INTO book_facet_counts (library_id, facet, key, value, n)
        SELECT new.library_id, f, lower(v), v, 1 FROM (SELECT 0 AS f, value AS v FROM json_each(new.authors)
            UNION ALL SELECT 1, value FROM json_each(new.meta, '$.tags')
            UNION ALL SELECT 2, json_extract(new.meta, '$.series')
            UNION ALL SELECT 3, new.language)
        WHERE v IS NOT NULL AND v <> ''
        ON CONFLICT (library_id, facet, key, value) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER book_facets_update AFTER UPDATE ON books
    WHEN old.library_id IS NOT new.library_id OR old.authors IS NOT new.authors
        OR old.language IS NOT new.language OR old.deleted_at IS NOT new.deleted_at
        OR old.meta IS NOT new.meta BEGIN
        INSERT INTO book_facet_counts (library_id, facet, key, value, n)
        SELECT old.library_id, f, lower(v), v, -1 FROM (SELECT 0 AS f, value AS v FROM json_each(old.authors)
            UNION ALL SELECT 1, value FROM json_each(old.meta, '$.tags')
            UNION ALL SELECT 2, json_extract(old.meta, '$.series')
            UNION ALL SELECT 3, old.language)
        WHERE v IS NOT NULL AND v <> '' AND old.deleted_at IS NULL AND coalesce(json_array_length(old.meta, '$.formats'), 0) > 0
        ON CONFLICT (library_id, facet, key, value) DO UPDATE SET n = n - 1;
        INSERT INTO book_facet_counts (library_id, facet, key, value, n)
        SELECT new.library_id, f, lower(v), v, 1 FROM (SELECT 0 AS f, value AS v FROM json_each(new.authors)
            UNION ALL SELECT 1, value FROM json_each(new.meta, '$.tags')
            UNION ALL SELECT 2, json_extract(new.meta, '$.series')
            UNION ALL SELECT 3, new.language)
        WHERE v IS NOT NULL AND v <> '' AND new.deleted_at IS NULL AND coalesce(json_array_length(new.meta, '$.formats'), 0) > 0
        ON CONFLICT (library_id, facet, key, value) DO UPDATE SET n = n + 1;
        DELETE FROM book_facet_counts WHERE library_id = old.library_id AND n <= 0
            AND (facet, key, value) IN (SELECT f, lower(v), v FROM (SELECT 0 AS f, value AS v FROM json_each(old.authors)
            UNION ALL SELECT 1, value FROM json_each(old.meta, '$.tags')
            UNION ALL SELECT 2, json_extract(old.meta, '$.series')
            UNION ALL SELECT 3, old.language));
    END;
    CREATE TRIGGER book_facets_delete AFTER DELETE ON books
    WHEN old.deleted_at IS NULL AND coalesce(json_array_length(old.meta, '$.formats'), 0) > 0 BEGIN
        INSERT INTO book_facet_counts (library_id, facet, key, value, n)
        SELECT old.library_id, f, lower(v), v, -1 FROM (SELECT 0 AS f, value AS v FROM json_each(old.authors)
            UNION ALL SELECT 1, value FROM json_each(old.meta, '$.tags')
            UNION ALL SELECT 2, json_extract(old.meta, '$.series')
            UNION ALL SELECT 3, old.language)
        WHERE v IS NOT NULL AND v <> ''
        ON CONFLICT (library_id, facet, key, value) DO UPDATE SET n = n - 1;
        DELETE FROM book_facet_counts WHERE library_id = old.library_id AND n <= 0;
    END;
    INSERT INTO book_facet_counts (library_id, facet, key, value, n)
    SELECT library_id, f, lower(v), v, count(*) FROM (
        SELECT library_id, 0 AS f, value AS v FROM books, json_each(books.authors)
            WHERE books.deleted_at IS NULL AND coalesce(json_array_length(books.meta, '$.formats'), 0) > 0
        UNION ALL SELECT library_id, 1, value FROM books, json_each(books.meta, '$.tags')
            WHERE books.deleted_at IS NULL AND coalesce(json_array_length(books.meta, '$.formats'), 0) > 0
        UNION ALL SELECT library_id, 2, json_extract(meta, '$.series') FROM books
            WHERE books.deleted_at IS NULL AND coalesce(json_array_length(books.meta, '$.formats'), 0) > 0
        UNION ALL SELECT library_id, 3, language FROM books
            WHERE books.deleted_at IS NULL AND coalesce(json_array_length(books.meta, '$.formats'), 0) > 0)
    WHERE v IS NOT NULL AND v <> '' GROUP BY library_id, f, lower(v), v;
    "#,
    // 10: sharing: a library's pending owner and deletion, invitations (codes hashed) and the
    // audit log, a hash chain per library with no foreign keys (it outlives members and the
    // library) that refuses updates, and deletes except of a deleted library's whole log
    // (`audit.retention_days`).
    r#"
    ALTER TABLE libraries ADD COLUMN pending_owner TEXT;
    ALTER TABLE libraries ADD COLUMN deleted_at INTEGER;
    ALTER TABLE shelves ADD COLUMN library_id TEXT;
    CREATE INDEX shelves_of_libraries ON shelves(library_id, change_seq)
        WHERE library_id IS NOT NULL;
    CREATE TABLE invites (
        id TEXT PRIMARY KEY,
        library_id TEXT NOT NULL REFERENCES libraries(id),
        code_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        max_uses INTEGER,
        uses INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX invites_by_library ON invites(library_id, created_at);
    CREATE TABLE audit_log (
        library_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        device_id TEXT,
        addr TEXT,
        target_user TEXT,
        role TEXT,
        invite_id TEXT,
        book_id TEXT,
        name TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (library_id, seq)
    ) WITHOUT ROWID;
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN
        SELECT RAISE(ABORT, 'the audit log is append-only');
    END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    WHEN (SELECT deleted_at FROM libraries WHERE id = old.library_id) IS NULL BEGIN
        SELECT RAISE(ABORT, 'the audit log is append-only');
    END;
    "#,
    // 11: readers' own records of books (status, rating, review, favourite, loans), notes,
    // todos and annotations, follows and blocks, stored answers of idempotent requests, and account management: display names, the token
    // epoch and disabling (tokens issued before stop working), and the ids of deleted
    // accounts (whose tokens every node refuses).
    r#"
    ALTER TABLE users ADD COLUMN display_name TEXT;
    ALTER TABLE users ADD COLUMN token_epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN disabled_at INTEGER;
    ALTER TABLE users ADD COLUMN tokens_changed_at INTEGER;
    CREATE INDEX users_by_tokens_changed ON users(tokens_changed_at)
        WHERE tokens_changed_at IS NOT NULL;
    CREATE TABLE deleted_users (
        user_id TEXT PRIMARY KEY,
        deleted_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX deleted_users_by_time ON deleted_users(deleted_at);
    CREATE TABLE user_books (
        user_id TEXT NOT NULL,
        book_id TEXT NOT NULL,
        status TEXT,
        favourite INTEGER NOT NULL,
        rating INTEGER,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (user_id, book_id)
    ) WITHOUT ROWID;
    CREATE INDEX user_books_by_book ON user_books(book_id);
    CREATE TABLE idempotent_answers (
        user_id TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotent_answers_by_expiry ON idempotent_answers(expires_at);
    ALTER TABLE users ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private';
    ALTER TABLE shelves ADD COLUMN public INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE relations (
        from_id TEXT NOT NULL,
        to_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (from_id, to_id, kind)
    ) WITHOUT ROWID;
    CREATE INDEX relations_to ON relations(to_id, kind);
    CREATE TABLE user_docs (
        user_id TEXT NOT NULL,
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        book_id TEXT,
        version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        deleted_at INTEGER,
        change_seq INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (user_id, id)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX user_docs_by_change ON user_docs(user_id, change_seq);
    CREATE INDEX user_docs_by_kind ON user_docs(user_id, kind, change_seq);
    CREATE INDEX user_docs_by_book ON user_docs(user_id, book_id, change_seq)
        WHERE book_id IS NOT NULL;
    "#,
    // 12: progress events stored compactly, since every write adds one: ids as their 16
    // bytes, the body's fingerprint as its 32 bytes (any other body stays text), the state
    // as a binary record (`state_record`; events stored before keep their JSON text and are
    // read as such), without the constant `kind`. About 300 bytes a write instead of 700.
    r#"
    CREATE TABLE progress_events_compact (
        user_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        event_id BLOB NOT NULL,
        book_id BLOB NOT NULL,
        device_id BLOB NOT NULL,
        body BLOB NOT NULL,
        applied INTEGER NOT NULL,
        reason TEXT,
        state BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, seq)
    ) WITHOUT ROWID;
    INSERT INTO progress_events_compact
        SELECT unhex(replace(user_id, '-', '')), seq, unhex(replace(event_id, '-', '')),
               unhex(replace(book_id, '-', '')), unhex(replace(device_id, '-', '')),
               CASE WHEN length(body) = 64 AND lower(body) = body AND unhex(body) IS NOT NULL
                    THEN unhex(body) ELSE body END,
               applied, reason, state, received_at
        FROM progress_events;
    DROP TABLE progress_events;
    ALTER TABLE progress_events_compact RENAME TO progress_events;
    CREATE UNIQUE INDEX progress_events_by_event_id ON progress_events(user_id, event_id);
    "#,
];

/// Registers the SQL functions the schema's triggers call, on a connection that writes.
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "dogear_fold",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            use unicode_normalization::UnicodeNormalization;
            Ok(ctx
                .get::<Option<String>>(0)?
                .map(|s| s.nfkc().collect::<String>()))
        },
    )
}

/// The schema version this build writes.
pub const LATEST: usize = MIGRATIONS.len();

/// Brings the database up to [`LATEST`] and returns the version it had. Refuses a
/// database written by a newer Dogear.
pub fn migrate(conn: &mut Connection) -> Result<usize, String> {
    let before = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string())? as usize;
    migrate_to(conn, LATEST)?;
    Ok(before)
}

/// Brings the database up to `target` (for tests of upgrades from older schemas).
pub fn migrate_to(conn: &mut Connection, target: usize) -> Result<usize, String> {
    let current: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string())? as usize;
    if current > LATEST {
        return Err(format!(
            "the database has schema version {current}, newer than this build's {LATEST}; upgrade dogear"
        ));
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(current)
        .take(target.saturating_sub(current))
    {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {}: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(LATEST)
}
