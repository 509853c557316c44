//! Accounts people manage against a real `dogear`: profile changes, a password change that
//! ends every other session, deletion (its data gone from the database file, its tokens
//! refused at once), the export zip, and administrators' routes and commands.

use dogear_e2e::kobo::Kobo;
use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Api, Reader, Server, fixtures, progress, run_cli};
use std::io::Read;

const PW: &str = "correct horse battery";

async fn login(server: &Server, name: &str, password: &str) -> dogear_e2e::Resp {
    server
        .client()
        .post(
            "/v1/auth/login",
            json!({"username": name, "password": password}),
        )
        .await
}

async fn session(server: &Server, name: &str, password: &str) -> (Api, String) {
    let r = login(server, name, password).await;
    assert_eq!(r.status, 200, "{}", r.body);
    (
        server
            .client()
            .with_token(r.body["access_token"].as_str().unwrap()),
        r.body["refresh_token"].as_str().unwrap().to_string(),
    )
}

async fn refresh(server: &Server, token: &str) -> dogear_e2e::Resp {
    server
        .client()
        .post("/v1/auth/refresh", json!({"refresh_token": token}))
        .await
}

#[tokio::test]
async fn profile_and_password_changes() {
    let server = Server::start();
    let me = Reader::new(&server, "acct_pw").await;
    let _taken = Reader::new(&server, "acct_taken").await;

    // Profile: display name, email, user name (a taken one refused).
    let r = me
        .api
        .patch(
            "/v1/users/me",
            json!({"display_name": "Ada L.", "email": "ada@example.org"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["display_name"], "Ada L.");
    me.api
        .patch("/v1/users/me", json!({"username": "acct_taken"}))
        .await
        .assert_error(409, "username_taken");
    me.api
        .patch("/v1/users/me", json!({"username": "No Spaces"}))
        .await
        .assert_error(400, "bad_request");
    me.api
        .patch("/v1/users/me", json!({"email": "not-an-email"}))
        .await
        .assert_error(400, "bad_request");
    let r = me
        .api
        .patch(
            "/v1/users/me",
            json!({"username": "acct_pw2", "email": null}),
        )
        .await;
    assert_eq!(r.body["username"], "acct_pw2");
    assert_eq!(r.body["email"], Value::Null);
    assert_eq!(
        me.api.get("/v1/users/me").await.body["display_name"],
        "Ada L."
    );

    // Two more sessions (a phone, a laptop); the laptop changes the password.
    let (phone, phone_refresh) = session(&server, "acct_pw2", PW).await;
    let (laptop, _) = session(&server, "acct_pw2", PW).await;
    laptop
        .post(
            "/v1/users/me/password",
            json!({"current_password": "wrong password", "new_password": "a brand new password"}),
        )
        .await
        .assert_error(403, "forbidden");
    laptop
        .post(
            "/v1/users/me/password",
            json!({"current_password": PW, "new_password": "short"}),
        )
        .await
        .assert_error(400, "bad_request");
    let r = laptop
        .post(
            "/v1/users/me/password",
            json!({"current_password": PW, "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = server
        .client()
        .with_token(r.body["access_token"].as_str().unwrap());
    // Every earlier session ends at once: access tokens and refresh tokens alike.
    for api in [&phone, &laptop, &me.api] {
        api.get("/v1/users/me")
            .await
            .assert_error(401, "unauthorized");
    }
    refresh(&server, &phone_refresh)
        .await
        .assert_error(401, "unauthorized");
    refresh(&server, &me.refresh)
        .await
        .assert_error(401, "unauthorized");
    // The new one works, and so does its refresh; the old password does not.
    assert_eq!(fresh.get("/v1/users/me").await.status, 200);
    let r = refresh(&server, r.body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    login(&server, "acct_pw2", PW)
        .await
        .assert_error(401, "invalid_credentials");
    assert_eq!(
        login(&server, "acct_pw2", "a brand new password")
            .await
            .status,
        200
    );
}

/// Counts rows of `table` whose `column` is `value`, reading the database file itself.
fn rows(db: &std::path::Path, table: &str, column: &str, value: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database file");
    // Ids are text in most tables and their 16 bytes in `progress_events`: both are counted.
    c.query_row(
        &format!(
            "SELECT count(*) FROM {table}
             WHERE {column} = ?1 OR {column} = unhex(replace(?1, '-', ''))"
        ),
        [value],
        |r| r.get(0),
    )
    .expect("count")
}

#[tokio::test]
async fn a_deleted_account_is_gone_from_the_database_and_its_tokens_refused() {
    let mut server = Server::start();
    let me = Reader::new(&server, "acct_gone").await;
    let owner = Reader::new(&server, "acct_owner").await;

    // What the reader has: an uploaded book (a file), progress, records, a shelf, a Kobo,
    // a shared library they own and one they are a member of.
    let bytes = std::fs::read(fixtures().join("books/good/devils-dictionary.epub")).unwrap();
    let r = me.api.upload(bytes, "mine.epub", None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let job = me.api.wait_job(r.body["job_id"].as_str().unwrap()).await;
    let uploaded = job["book_id"].as_str().unwrap().to_string();
    let hash = me.api.get(&format!("/v1/books/{uploaded}")).await.body["formats"][0]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    me.write(&me.book, progress(&me.device, 40.0, 1)).await;
    me.api
        .patch(&format!("/v1/books/{}/mine", me.book), json!({"rating": 4}))
        .await;
    me.api
        .post(
            "/v1/shelves",
            json!({"name": "Keep", "book_ids": [me.book]}),
        )
        .await;
    let k = me
        .api
        .post("/v1/kobo/tokens", json!({"device_name": "Libra"}))
        .await;
    assert_eq!(k.status, 201, "{}", k.body);
    let kobo = Kobo::new(k.body["api_endpoint"].as_str().unwrap());
    assert_eq!(kobo.get("/v1/library/sync").await.status, 200);
    let mine_lib = me
        .api
        .post("/v1/libraries", json!({"name": "My club"}))
        .await;
    let mine_lib = mine_lib.body["id"].as_str().unwrap().to_string();
    let club = owner
        .api
        .post("/v1/libraries", json!({"name": "Their club"}))
        .await;
    let club = club.body["id"].as_str().unwrap().to_string();
    let inv = owner
        .api
        .post(
            &format!("/v1/libraries/{club}/invites"),
            json!({"role": "reader"}),
        )
        .await;
    let joined = me
        .api
        .post("/v1/libraries/join", json!({"code": inv.body["code"]}))
        .await;
    assert_eq!(joined.status, 200, "{}", joined.body);

    // Refused while they own a shared library; a wrong password is refused too.
    let msg = me
        .api
        .send(
            "DELETE",
            "/v1/users/me",
            Some(&json!({"password": PW}).to_string()),
        )
        .await
        .assert_error(409, "conflict")
        .to_string();
    assert!(msg.contains("My club"), "{msg}");
    me.api
        .send(
            "DELETE",
            "/v1/users/me",
            Some(&json!({"password": "not it at all"}).to_string()),
        )
        .await
        .assert_error(403, "forbidden");
    me.api
        .send("DELETE", "/v1/users/me", Some("{}"))
        .await
        .assert_error(400, "bad_request");
    let r = me.api.delete(&format!("/v1/libraries/{mine_lib}")).await;
    assert_eq!(r.status, 204, "{}", r.body);

    let r = me
        .api
        .send(
            "DELETE",
            "/v1/users/me",
            Some(&json!({"password": PW}).to_string()),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);

    // Every way in is closed at once.
    me.api
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthorized");
    me.api
        .get("/v1/books")
        .await
        .assert_error(401, "unauthorized");
    refresh(&server, &me.refresh)
        .await
        .assert_error(401, "unauthorized");
    login(&server, "acct_gone", PW)
        .await
        .assert_error(401, "invalid_credentials");
    assert_eq!(kobo.get("/v1/library/sync").await.status, 401);

    // The library they were in records that they left; its owner still has it.
    let audit = owner.api.get(&format!("/v1/libraries/{club}/audit")).await;
    let last = audit.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "member_left", "{last}");
    let members = owner
        .api
        .get(&format!("/v1/libraries/{club}/members"))
        .await;
    assert_eq!(members.body["items"].as_array().unwrap().len(), 1);

    // In the database file: nothing of theirs but the bare id.
    server.terminate();
    let db = server.data.join("dogear.db");
    let id = me.user_id.as_str();
    for (table, column) in [
        ("devices", "user_id"),
        ("refresh_tokens", "user_id"),
        ("memberships", "user_id"),
        ("progress_events", "user_id"),
        ("progress_books", "user_id"),
        ("user_books", "user_id"),
        ("shelves", "user_id"),
        ("kobo_tokens", "user_id"),
        ("libraries", "owner_id"),
    ] {
        // A deleted shared library they owned stays (its audit log outlives it), as a
        // tombstone without members.
        let n = rows(&db, table, column, id);
        let expected = i64::from(table == "libraries");
        assert_eq!(n, expected, "{table}.{column} still has {n} row(s)");
    }
    assert_eq!(rows(&db, "books", "id", &uploaded), 0);
    assert_eq!(rows(&db, "books", "id", &me.book), 0);
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let (name, email, pw): (String, Option<String>, String) = c
        .query_row(
            "SELECT username, email, password_hash FROM users WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(!name.contains("acct_gone"), "{name}");
    assert_eq!((email, pw.as_str()), (None, ""));
    // The uploaded file is gone from the object store.
    let left: Vec<String> = walk(&server.data.join("objects"))
        .into_iter()
        .filter(|p| p.contains(&hash))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // The name is free again.
    server.restart();
    let again = Reader::new(&server, "acct_gone").await;
    assert_ne!(again.user_id, me.user_id);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn the_export_holds_everything_about_the_reader() {
    let server = Server::start();
    let me = Reader::new(&server, "acct_export").await;
    me.write(&me.book, progress(&me.device, 25.0, 1)).await;
    me.write(&me.book, progress(&me.device, 50.0, 2)).await;
    me.api
        .patch(
            &format!("/v1/books/{}/mine", me.book),
            json!({"review": "Words, words, words."}),
        )
        .await;
    me.api
        .post(
            "/v1/shelves",
            json!({"name": "Tragedies", "book_ids": [me.book]}),
        )
        .await;
    me.api
        .post("/v1/notes", json!({"title": "Exported note", "body": "x"}))
        .await;
    let r = me.http_get_bytes("/v1/users/me/export").await;
    assert_eq!(r.0, 200);
    assert_eq!(r.1, "application/zip");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(r.2)).expect("a zip");
    let mut files = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        files.insert(f.name().unwrap().to_string(), s);
    }
    for name in [
        "README.txt",
        "account.json",
        "devices.json",
        "libraries.json",
        "books.json",
        "progress.json",
        "progress_history.json",
        "shelves.json",
        "my_books.json",
        "kobo_devices.json",
        "koreader_logins.json",
        "opds_tokens.json",
        "notes.json",
        "todos.json",
        "annotations.json",
        "following.json",
        "followers.json",
        "blocks.json",
    ] {
        assert!(
            files.contains_key(name),
            "{name} missing: {:?}",
            files.keys()
        );
    }
    let json = |n: &str| -> Value { dogear_e2e::serde_json::from_str(&files[n]).unwrap() };
    assert_eq!(json("account.json")["username"], "acct_export");
    assert!(
        !files["account.json"].contains("argon2"),
        "no password hash"
    );
    assert_eq!(json("books.json")[0]["title"], "Hamlet");
    assert_eq!(json("progress.json")[0]["percent"], 50.0);
    assert_eq!(json("progress_history.json").as_array().unwrap().len(), 2);
    assert_eq!(json("my_books.json")[0]["review"], "Words, words, words.");
    assert_eq!(json("shelves.json")[0]["name"], "Tragedies");
    assert_eq!(json("devices.json")[0]["id"], me.device.as_str());
    assert_eq!(json("notes.json")[0]["title"], "Exported note");
}

trait BytesGet {
    async fn http_get_bytes(&self, path: &str) -> (u16, String, Vec<u8>);
}

impl BytesGet for Reader {
    async fn http_get_bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        let r = self
            .api
            .http
            .get(format!("{}{path}", self.api.base))
            .bearer_auth(self.token())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, ct, r.bytes().await.unwrap().to_vec())
    }
}

#[tokio::test]
async fn administrators_manage_accounts_over_http_and_the_command_line() {
    let server = Server::start();
    let data = server.data.to_str().unwrap().to_string();
    let (code, out, err) = run_cli(
        &[
            "--data",
            &data,
            "user",
            "add",
            "boss",
            "--admin",
            "--password-stdin",
        ],
        &[],
        Some("correct horse battery\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (admin, _) = session(&server, "boss", PW).await;
    let me = Reader::new(&server, "acct_managed").await;

    // Only administrators.
    me.api
        .get("/v1/admin/users")
        .await
        .assert_error(403, "forbidden");
    me.api
        .post(
            &format!("/v1/admin/users/{}/disable", me.user_id),
            json!({}),
        )
        .await
        .assert_error(403, "forbidden");
    let list = admin.get("/v1/admin/users").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acct_managed", "boss"]);

    // Disabled: every token refused at once, the right password answers 403.
    let r = admin
        .post(
            &format!("/v1/admin/users/{}/disable", me.user_id),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["disabled"], true);
    me.api
        .get("/v1/books")
        .await
        .assert_error(401, "unauthorized");
    login(&server, "acct_managed", PW)
        .await
        .assert_error(403, "forbidden");
    refresh(&server, &me.refresh)
        .await
        .assert_error(401, "unauthorized");
    let boss_id = list.body["items"][1]["id"].as_str().unwrap().to_string();
    admin
        .post(&format!("/v1/admin/users/{boss_id}/disable"), json!({}))
        .await
        .assert_error(409, "conflict");
    // Enabled: signs in anew; tokens from before stay refused.
    let r = admin
        .post(&format!("/v1/admin/users/{}/enable", me.user_id), json!({}))
        .await;
    assert_eq!(r.body["disabled"], false);
    me.api
        .get("/v1/books")
        .await
        .assert_error(401, "unauthorized");
    let (back, _) = session(&server, "acct_managed", PW).await;
    assert_eq!(back.get("/v1/books").await.status, 200);

    // A reset password ends the sessions.
    let r = admin
        .post(
            &format!("/v1/admin/users/{}/password", me.user_id),
            json!({"new_password": "set by the admin"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    back.get("/v1/books")
        .await
        .assert_error(401, "unauthorized");
    let (back, _) = session(&server, "acct_managed", "set by the admin").await;

    // The command line, beside the running node: the node refuses the tokens within 2 s.
    let (code, out, err) = run_cli(&["--data", &data, "user", "list"], &[], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("acct_managed") && out.contains("boss"),
        "{out}"
    );
    let (code, out, err) = run_cli(
        &["--data", &data, "user", "disable", "acct_managed"],
        &[],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    dogear_e2e::eventually(10, "the node refuses a disabled account's token", || {
        let back = back.clone();
        async move { (back.get("/v1/books").await.status == 401).then_some(()) }
    })
    .await;
    let (code, out, err) = run_cli(
        &["--data", &data, "user", "enable", "acct_managed"],
        &[],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_cli(
        &[
            "--data",
            &data,
            "user",
            "reset-password",
            "acct_managed",
            "--password-stdin",
        ],
        &[],
        Some("from the command line\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (after_cli, _) = session(&server, "acct_managed", "from the command line").await;
    // Deleting from the command line needs the data directory to itself.
    let (code, out, err) = run_cli(
        &["--data", &data, "user", "delete", "acct_managed", "--yes"],
        &[],
        None,
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("DELETE /v1/admin/users"), "{err}");
    let (code, _, _) = run_cli(
        &["--data", &data, "user", "disable", "nobody_here"],
        &[],
        None,
    );
    assert_ne!(code, 0);

    // Deleted by the administrator.
    let r = admin
        .delete(&format!("/v1/admin/users/{}", me.user_id))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    after_cli
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthorized");
    admin
        .delete(&format!("/v1/admin/users/{}", me.user_id))
        .await
        .assert_error(404, "not_found");
    let list = admin.get("/v1/admin/users").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}
