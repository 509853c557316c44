//! The PostgreSQL schema, applied in versions like SQLite's. Several nodes may start at once:
//! each takes a transaction-scoped advisory lock before reading the version, so exactly one
//! applies a migration and the others find it done. Append new migrations; never edit one
//! that has shipped.
//!
//! Ids, sort keys and paths are `COLLATE "C"`: ordering is by bytes, as in SQLite and as the
//! Rust code that merges pages across libraries sorts, whatever the database's locale.

use super::{exec, pg, unique};
use crate::error::StoreError;
use deadpool_postgres::Client;

/// Any number, constant for Dogear: the key of the advisory lock migrations hold.
const MIGRATION_LOCK: i64 = 0x646f_6765_6172_0001;

const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's migrations 1-4 built, in PostgreSQL's terms. Search uses a
    // folded token text computed by Dogear (`search`) instead of FTS5, and lower-cased copies
    // of authors, series and tags for the exact filters.
    r#"
    CREATE TABLE users (
        id TEXT COLLATE "C" PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        email TEXT,
        password_hash TEXT NOT NULL,
        is_admin BOOLEAN NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE libraries (
        id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        owner_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
        created_at BIGINT NOT NULL
    );
    CREATE TABLE memberships (
        library_id TEXT COLLATE "C" NOT NULL REFERENCES libraries(id),
        user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
        role TEXT NOT NULL,
        PRIMARY KEY (library_id, user_id)
    );
    CREATE INDEX memberships_by_user ON memberships(user_id);
    CREATE TABLE refresh_tokens (
        hash TEXT COLLATE "C" PRIMARY KEY,
        user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
        family_id TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT,
        revoked BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX refresh_tokens_by_family ON refresh_tokens(family_id);
    CREATE TABLE devices (
        id TEXT COLLATE "C" PRIMARY KEY,
        user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX devices_by_user ON devices(user_id);
    -- The change sequence of books and shelves. A writer takes the next number by updating
    -- this one row, which it then holds locked until it commits: numbers are handed out in
    -- commit order, so a reader that sees a number sees every smaller one, and a Kobo sync
    -- cursor never skips a transaction that commits late (a plain sequence would allow it).
    CREATE TABLE change_counter (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL);
    INSERT INTO change_counter (id, seq) VALUES (1, 0);
    CREATE TABLE books (
        id TEXT COLLATE "C" PRIMARY KEY,
        library_id TEXT COLLATE "C" NOT NULL REFERENCES libraries(id),
        title TEXT NOT NULL,
        authors TEXT NOT NULL,
        language TEXT,
        identifiers TEXT NOT NULL,
        added_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        deleted_at BIGINT,
        version BIGINT NOT NULL,
        meta TEXT NOT NULL,
        title_key TEXT COLLATE "C" NOT NULL,
        author_key TEXT COLLATE "C" NOT NULL,
        series_key TEXT COLLATE "C" NOT NULL,
        change_seq BIGINT NOT NULL,
        search TEXT NOT NULL,
        authors_lc TEXT[] NOT NULL,
        series_lc TEXT,
        tags_lc TEXT[] NOT NULL
    );
    CREATE INDEX books_by_library ON books(library_id, id);
    CREATE INDEX books_by_title ON books(library_id, title_key, id) WHERE deleted_at IS NULL;
    CREATE INDEX books_by_author ON books(library_id, author_key, id) WHERE deleted_at IS NULL;
    CREATE INDEX books_by_series ON books(library_id, series_key, id) WHERE deleted_at IS NULL;
    CREATE INDEX books_by_added ON books(library_id, added_at, id) WHERE deleted_at IS NULL;
    CREATE INDEX books_changes ON books(library_id, change_seq);
    CREATE TABLE book_hashes (
        library_id TEXT COLLATE "C" NOT NULL,
        hash TEXT COLLATE "C" NOT NULL,
        book_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (library_id, hash)
    );
    CREATE INDEX book_hashes_by_book ON book_hashes(book_id);
    CREATE TABLE import_jobs (
        id TEXT COLLATE "C" PRIMARY KEY,
        library_id TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C",
        source TEXT NOT NULL,
        source_key TEXT,
        path TEXT NOT NULL,
        filename TEXT NOT NULL,
        staged BOOLEAN NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        run_at BIGINT NOT NULL,
        book_id TEXT COLLATE "C",
        duplicate_of TEXT COLLATE "C",
        error TEXT,
        warnings TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX import_jobs_ready ON import_jobs(state, run_at);
    CREATE INDEX import_jobs_by_library ON import_jobs(library_id, id);
    CREATE TABLE source_files (
        source TEXT COLLATE "C" NOT NULL,
        path TEXT COLLATE "C" NOT NULL,
        library_id TEXT COLLATE "C" NOT NULL,
        hash TEXT NOT NULL,
        size BIGINT NOT NULL,
        mtime BIGINT NOT NULL,
        book_id TEXT COLLATE "C",
        PRIMARY KEY (source, path)
    );
    CREATE INDEX source_files_by_book ON source_files(book_id);
    CREATE TABLE progress_events (
        user_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        event_id TEXT COLLATE "C" NOT NULL,
        book_id TEXT COLLATE "C" NOT NULL,
        device_id TEXT COLLATE "C" NOT NULL,
        body TEXT NOT NULL,
        applied BOOLEAN NOT NULL,
        reason TEXT,
        state TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, seq)
    );
    CREATE UNIQUE INDEX progress_events_by_event_id ON progress_events(user_id, event_id);
    CREATE TABLE progress_books (
        user_id TEXT COLLATE "C" NOT NULL,
        book_id TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        state TEXT NOT NULL,
        positions JSONB NOT NULL,
        PRIMARY KEY (user_id, book_id)
    );
    CREATE TABLE shelves (
        id TEXT COLLATE "C" PRIMARY KEY,
        user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
        name TEXT NOT NULL,
        books TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        deleted_at BIGINT,
        change_seq BIGINT NOT NULL
    );
    CREATE INDEX shelves_changes ON shelves(user_id, change_seq);
    CREATE TABLE kobo_tokens (
        device_id TEXT COLLATE "C" PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        user_id TEXT COLLATE "C" NOT NULL,
        token_hash TEXT COLLATE "C" NOT NULL UNIQUE,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX kobo_tokens_by_user ON kobo_tokens(user_id);
    CREATE TABLE kobo_sync (
        device_id TEXT COLLATE "C" PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        state TEXT NOT NULL
    );
    CREATE TABLE kobo_ledger (
        device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        book_id TEXT COLLATE "C" NOT NULL,
        library_id TEXT COLLATE "C" NOT NULL,
        fingerprint TEXT NOT NULL,
        removed BOOLEAN NOT NULL,
        archived BOOLEAN NOT NULL,
        PRIMARY KEY (device_id, book_id)
    );
    CREATE TABLE kobo_tags (
        device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        shelf_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (device_id, shelf_id)
    );
    "#,
    // 2: import jobs tied to a node (a staged upload is on that node's disk) and the node
    // running each job.
    r#"
    ALTER TABLE import_jobs ADD COLUMN node TEXT;
    ALTER TABLE import_jobs ADD COLUMN claimed_by TEXT;
    CREATE INDEX import_jobs_claimed ON import_jobs(claimed_by) WHERE state = 'running';
    "#,
    // 3: a batch of one user's progress writes in one call, so a batch costs one round trip
    // whatever its size. It returns the events already logged under the batch's ids (then
    // it wrote nothing), and raises DG001 when another owner moved the log or a book's state
    // first, which rolls the whole call back.
    r#"
    CREATE FUNCTION dogear_record_progress(
        p_user TEXT, p_seq BIGINT[], p_event TEXT[], p_book TEXT[], p_device TEXT[],
        p_body TEXT[], p_applied BOOLEAN[], p_reason TEXT[], p_state TEXT[],
        p_version BIGINT[], p_received BIGINT[], p_position TEXT[]
    ) RETURNS SETOF progress_events LANGUAGE plpgsql AS $fn$
    DECLARE
        n BIGINT;
    BEGIN
        RETURN QUERY SELECT * FROM progress_events
            WHERE user_id = p_user AND event_id = ANY(p_event);
        IF FOUND THEN
            RETURN;
        END IF;
        FOR i IN 1 .. coalesce(array_length(p_seq, 1), 0) LOOP
            INSERT INTO progress_events (user_id, seq, kind, event_id, book_id, device_id, body,
                                         applied, reason, state, received_at)
            VALUES (p_user, p_seq[i], 'progress_updated', p_event[i], p_book[i], p_device[i],
                    p_body[i], p_applied[i], p_reason[i], p_state[i], p_received[i])
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n = 0 THEN
                RAISE EXCEPTION 'progress log of % moved', p_user USING ERRCODE = 'DG001';
            END IF;
            IF p_applied[i] THEN
                INSERT INTO progress_books (user_id, book_id, version, state, positions)
                VALUES (p_user, p_book[i], p_version[i], p_state[i],
                        jsonb_build_object(p_device[i], p_position[i]::jsonb))
                ON CONFLICT (user_id, book_id) DO UPDATE SET
                    version = excluded.version,
                    state = excluded.state,
                    positions = progress_books.positions || excluded.positions
                WHERE progress_books.version = excluded.version - 1;
                GET DIAGNOSTICS n = ROW_COUNT;
                IF n <> 1 THEN
                    RAISE EXCEPTION 'book state of % moved', p_user USING ERRCODE = 'DG001';
                END IF;
            ELSE
                UPDATE progress_books
                SET positions = positions || jsonb_build_object(p_device[i], p_position[i]::jsonb)
                WHERE user_id = p_user AND book_id = p_book[i];
            END IF;
        END LOOP;
    END
    $fn$;
    "#,
    // 4: KOReader: logins (one per `koreader` device), the digests KOReader names books'
    // files by (many to one, never removed), and positions kept per (user, digest).
    r#"
    CREATE TABLE koreader_logins (
        username TEXT COLLATE "C" PRIMARY KEY,
        device_id TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES devices(id) ON DELETE CASCADE,
        user_id TEXT COLLATE "C" NOT NULL,
        key_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX koreader_logins_by_user ON koreader_logins(user_id);
    CREATE TABLE koreader_digests (
        digest TEXT COLLATE "C" NOT NULL,
        book_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (digest, book_id)
    );
    CREATE TABLE koreader_positions (
        user_id TEXT COLLATE "C" NOT NULL,
        document TEXT COLLATE "C" NOT NULL,
        progress TEXT NOT NULL,
        percentage DOUBLE PRECISION NOT NULL,
        device TEXT NOT NULL,
        device_id TEXT,
        written_by TEXT COLLATE "C" NOT NULL,
        book_id TEXT COLLATE "C",
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, document)
    );
    CREATE INDEX koreader_positions_unattached ON koreader_positions(document)
        WHERE book_id IS NULL;
    "#,
    // 5: tokens in OPDS catalog URLs, one device each.
    r#"
    CREATE TABLE opds_tokens (
        device_id TEXT COLLATE "C" PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        user_id TEXT COLLATE "C" NOT NULL,
        token_hash TEXT COLLATE "C" NOT NULL UNIQUE,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX opds_tokens_by_user ON opds_tokens(user_id);
    "#,
    // 6: sharing: a library's pending owner and deletion, invitations (codes hashed) and the
    // audit log, a hash chain per library with no foreign keys (it outlives members and the
    // library) that refuses updates, and deletes except of a deleted library's whole log
    // (`audit.retention_days`).
    r#"
    ALTER TABLE libraries ADD COLUMN pending_owner TEXT COLLATE "C";
    ALTER TABLE libraries ADD COLUMN deleted_at BIGINT;
    ALTER TABLE shelves ADD COLUMN library_id TEXT COLLATE "C";
    CREATE INDEX shelves_of_libraries ON shelves(library_id, change_seq)
        WHERE library_id IS NOT NULL;
    CREATE TABLE invites (
        id TEXT COLLATE "C" PRIMARY KEY,
        library_id TEXT COLLATE "C" NOT NULL REFERENCES libraries(id),
        code_hash TEXT COLLATE "C" NOT NULL UNIQUE,
        role TEXT NOT NULL,
        created_by TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        max_uses BIGINT,
        uses BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE INDEX invites_by_library ON invites(library_id, created_at);
    CREATE TABLE audit_log (
        library_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        at BIGINT NOT NULL,
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
    );
    CREATE FUNCTION dogear_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND (SELECT deleted_at FROM libraries WHERE id = OLD.library_id)
            IS NOT NULL THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'the audit log is append-only';
    END $$;
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION dogear_audit_append_only();
    "#,
    // 7: readers' own records of books, notes, todos and annotations, follows and blocks,
    // stored answers of
    // idempotent requests, and account
    // management (display names, token epochs, disabling, deleted accounts' ids), as
    // SQLite's migration 11.
    r#"
    ALTER TABLE users ADD COLUMN display_name TEXT;
    ALTER TABLE users ADD COLUMN token_epoch BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN disabled_at BIGINT;
    ALTER TABLE users ADD COLUMN tokens_changed_at BIGINT;
    CREATE INDEX users_by_tokens_changed ON users(tokens_changed_at)
        WHERE tokens_changed_at IS NOT NULL;
    CREATE TABLE deleted_users (
        user_id TEXT COLLATE "C" PRIMARY KEY,
        deleted_at BIGINT NOT NULL
    );
    CREATE INDEX deleted_users_by_time ON deleted_users(deleted_at);
    CREATE TABLE user_books (
        user_id TEXT COLLATE "C" NOT NULL,
        book_id TEXT COLLATE "C" NOT NULL,
        status TEXT,
        favourite BOOLEAN NOT NULL,
        rating INTEGER,
        version BIGINT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (user_id, book_id)
    );
    CREATE INDEX user_books_by_book ON user_books(book_id);
    CREATE TABLE idempotent_answers (
        user_id TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, key)
    );
    CREATE INDEX idempotent_answers_by_expiry ON idempotent_answers(expires_at);
    ALTER TABLE users ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private';
    ALTER TABLE shelves ADD COLUMN public BOOLEAN NOT NULL DEFAULT false;
    CREATE TABLE relations (
        from_id TEXT COLLATE "C" NOT NULL,
        to_id TEXT COLLATE "C" NOT NULL,
        kind TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (from_id, to_id, kind)
    );
    CREATE INDEX relations_to ON relations(to_id, kind);
    CREATE TABLE user_docs (
        user_id TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        kind TEXT NOT NULL,
        book_id TEXT COLLATE "C",
        version BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        deleted_at BIGINT,
        change_seq BIGINT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (user_id, id)
    );
    CREATE UNIQUE INDEX user_docs_by_change ON user_docs(user_id, change_seq);
    CREATE INDEX user_docs_by_kind ON user_docs(user_id, kind, change_seq);
    CREATE INDEX user_docs_by_book ON user_docs(user_id, book_id, change_seq)
        WHERE book_id IS NOT NULL;
    "#,
];

/// The schema version this build writes.
pub const LATEST: usize = MIGRATIONS.len();

/// Brings the database up to [`LATEST`]; returns the version it had. Refuses a database
/// written by a newer Dogear.
pub(super) async fn migrate(client: &mut Client) -> Result<usize, StoreError> {
    exec(
        &*client,
        "CREATE TABLE IF NOT EXISTS dogear_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL)",
        &[],
    )
    .await
    .or_else(|e| match unique(e, "dogear_schema") {
        // Two nodes creating the table at the same moment: one wins, the other sees it.
        StoreError::Conflict(_) => Ok(0),
        e => Err(e),
    })?;
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    let before = tx
        .query_opt("SELECT version FROM dogear_schema WHERE id = 1", &[])
        .await
        .map_err(pg)?
        .map(|r| r.get::<_, i64>(0) as usize)
        .unwrap_or(0);
    if before > LATEST {
        return Err(StoreError::Unavailable(format!(
            "the database has schema version {before}, newer than this build's {LATEST}; upgrade dogear"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(before) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration {}: {e}", i + 1)))?;
        tracing::info!(version = i + 1, "applied PostgreSQL schema migration");
    }
    tx.execute(
        "INSERT INTO dogear_schema (id, version) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        &[&(LATEST as i64)],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(before)
}
