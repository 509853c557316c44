//! Shared libraries against a real `dogear`: invitations and roles, a race for the last use
//! of a code, members' sockets and Kobos following the library, and the audit log's chain
//! checked by `dogear audit verify` after a row is changed in the database.

use dogear_e2e::kobo::Kobo;
use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Api, Reader, Server, Socket, fixtures, run_cli};
use std::time::Duration;

/// A shared library made by `owner`; its id.
async fn shared(owner: &Api, name: &str) -> String {
    let r = owner.post("/v1/libraries", json!({"name": name})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["kind"], "shared");
    assert_eq!(r.body["role"], "owner");
    assert_eq!(r.body["name"], name);
    r.body["id"].as_str().unwrap().to_string()
}

/// An invitation to `lib`; its answer (with `code`).
async fn invite(owner: &Api, lib: &str, body: Value) -> Value {
    let r = owner
        .post(&format!("/v1/libraries/{lib}/invites"), body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

async fn join(api: &Api, code: &str) -> dogear_e2e::Resp {
    api.post("/v1/libraries/join", json!({"code": code})).await
}

/// The next frame of `kind` on the socket, skipping others.
async fn frame_of(ws: &mut Socket, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let f = ws
            .next_json_within(left)
            .await
            .unwrap_or_else(|| panic!("no {kind} frame"));
        if f["type"] == kind {
            return f;
        }
    }
}

async fn upload_to(api: &Api, lib: &str, file: &str) -> String {
    let bytes = std::fs::read(fixtures().join("books/good").join(file)).unwrap();
    let r = api.upload(bytes, file, Some(lib)).await;
    assert_eq!(r.status, 202, "{file}: {}", r.body);
    let job = api.wait_job(r.body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{file}: {job}");
    job["book_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn invites_roles_and_leaving() {
    // Room for the wrong codes this test types from one reader (the budget is its own test).
    let server = Server::start_with(&[("DOGEAR_AUTH__LOGIN_MAX_FAILURES", "20")]);
    let owner = Reader::new(&server, "sh_owner").await;
    let friend = Reader::new(&server, "sh_friend").await;
    let third = Reader::new(&server, "sh_third").await;
    let lib = shared(&owner.api, "Family shelf").await;

    // The personal library cannot be shared; a bad role or a past expiry is refused.
    let mine = owner.api.get("/v1/libraries").await;
    assert_eq!(mine.body["items"][0]["kind"], "personal");
    assert_eq!(mine.body["items"][1]["id"], lib.as_str());
    let personal = mine.body["items"][0]["id"].as_str().unwrap().to_string();
    owner
        .api
        .post(
            &format!("/v1/libraries/{personal}/invites"),
            json!({"role": "reader"}),
        )
        .await
        .assert_error(409, "conflict");
    let bad = owner
        .api
        .post(
            &format!("/v1/libraries/{lib}/invites"),
            json!({"role": "owner"}),
        )
        .await;
    assert!(bad.assert_error(400, "bad_request").contains("role"));
    let past = owner
        .api
        .post(
            &format!("/v1/libraries/{lib}/invites"),
            json!({"role": "reader", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert!(past.assert_error(400, "bad_request").contains("expires_at"));

    let inv = invite(&owner.api, &lib, json!({"role": "reader", "max_uses": 1})).await;
    let code = inv["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 14, "XXXX-XXXX-XXXX: {code}");
    assert!(inv["link"].as_str().unwrap().contains("/join?code="));
    assert_eq!(inv["state"], "active");
    // Typed back in lower case and without dashes.
    let typed = code.to_lowercase().replace('-', "");
    let joined = join(&friend.api, &typed).await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    assert_eq!(joined.body["library"]["id"], lib.as_str());
    assert_eq!(joined.body["library"]["role"], "reader");
    let listed = owner.api.get(&format!("/v1/libraries/{lib}/invites")).await;
    assert_eq!(listed.body["items"][0]["uses"], 1);
    assert_eq!(listed.body["items"][0]["state"], "used_up");
    assert!(
        !listed.body.to_string().contains(&code),
        "codes are never listed"
    );
    // Used up, unknown and malformed codes get one answer.
    for c in [code.as_str(), "0000-0000-0000", "not a code"] {
        join(&third.api, c)
            .await
            .assert_error(404, "invalid_invite");
    }

    // A reader reads but does not write; an editor writes.
    let book = owner
        .api
        .post(
            "/v1/books",
            json!({"title": "Shared tale", "authors": ["Anon"], "library_id": lib}),
        )
        .await;
    assert_eq!(book.status, 201, "{}", book.body);
    let book_id = book.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        friend.api.get(&format!("/v1/books/{book_id}")).await.status,
        200
    );
    assert_eq!(
        third.api.get(&format!("/v1/books/{book_id}")).await.status,
        404,
        "an outsider sees nothing"
    );
    friend
        .api
        .patch(
            &format!("/v1/books/{book_id}"),
            json!({"title": "Mine now"}),
        )
        .await
        .assert_error(403, "forbidden");
    friend
        .api
        .post(
            "/v1/books",
            json!({"title": "Not allowed", "authors": ["x"], "library_id": lib}),
        )
        .await
        .assert_error(403, "forbidden");
    let promoted = owner
        .api
        .patch(
            &format!("/v1/libraries/{lib}/members/{}", friend.user_id),
            json!({"role": "editor"}),
        )
        .await;
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    let edited = friend
        .api
        .patch(&format!("/v1/books/{book_id}"), json!({"title": "Edited"}))
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    // Members see each other; only the owner manages.
    let members = friend
        .api
        .get(&format!("/v1/libraries/{lib}/members"))
        .await;
    assert_eq!(members.status, 200);
    assert_eq!(members.body["items"][0]["username"], "sh_owner");
    assert_eq!(members.body["items"][0]["role"], "owner");
    assert_eq!(members.body["items"][1]["role"], "editor");
    friend
        .api
        .post(
            &format!("/v1/libraries/{lib}/invites"),
            json!({"role": "reader"}),
        )
        .await
        .assert_error(403, "forbidden");
    friend
        .api
        .get(&format!("/v1/libraries/{lib}/audit"))
        .await
        .assert_error(403, "forbidden");
    third
        .api
        .get(&format!("/v1/libraries/{lib}/members"))
        .await
        .assert_error(404, "not_found");

    // Revoked and expired codes stop working.
    let open = invite(&owner.api, &lib, json!({"role": "reader"})).await;
    let revoked = owner
        .api
        .delete(&format!(
            "/v1/libraries/{lib}/invites/{}",
            open["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(revoked.status, 204);
    join(&third.api, open["code"].as_str().unwrap())
        .await
        .assert_error(404, "invalid_invite");
    let soon = invite(
        &owner.api,
        &lib,
        json!({"role": "reader", "expires_at": dogear_e2e::ts(now_ms() - 1_767_225_600_000 + 1_500)}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    join(&third.api, soon["code"].as_str().unwrap())
        .await
        .assert_error(404, "invalid_invite");

    // The owner cannot leave; a member can, and then sees nothing of the library.
    owner
        .api
        .delete(&format!("/v1/libraries/{lib}/members/{}", owner.user_id))
        .await
        .assert_error(409, "conflict");
    let left = friend
        .api
        .delete(&format!("/v1/libraries/{lib}/members/{}", friend.user_id))
        .await;
    assert_eq!(left.status, 204);
    assert_eq!(
        friend.api.get(&format!("/v1/books/{book_id}")).await.status,
        404
    );
    assert_eq!(
        friend.api.get(&format!("/v1/libraries/{lib}")).await.status,
        404
    );
    let libs = friend.api.get("/v1/libraries").await;
    assert_eq!(libs.body["items"].as_array().unwrap().len(), 1);

    // Rename, transfer (offered, accepted), delete.
    let renamed = owner
        .api
        .patch(
            &format!("/v1/libraries/{lib}"),
            json!({"name": "Our shelf"}),
        )
        .await;
    assert_eq!(renamed.body["name"], "Our shelf");
    let again = invite(&owner.api, &lib, json!({"role": "reader"})).await;
    assert_eq!(
        join(&third.api, again["code"].as_str().unwrap())
            .await
            .status,
        200
    );
    third
        .api
        .post(&format!("/v1/libraries/{lib}/transfer/accept"), json!({}))
        .await
        .assert_error(409, "conflict");
    let offered = owner
        .api
        .post(
            &format!("/v1/libraries/{lib}/transfer"),
            json!({"user_id": third.user_id}),
        )
        .await;
    assert_eq!(offered.status, 200, "{}", offered.body);
    assert_eq!(offered.body["pending_owner_id"], third.user_id.as_str());
    let accepted = third
        .api
        .post(&format!("/v1/libraries/{lib}/transfer/accept"), json!({}))
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.body["owner_id"], third.user_id.as_str());
    assert_eq!(accepted.body["role"], "owner");
    let before = owner.api.get(&format!("/v1/libraries/{lib}")).await;
    assert_eq!(before.body["role"], "editor", "the old owner edits");
    owner
        .api
        .delete(&format!("/v1/libraries/{lib}"))
        .await
        .assert_error(403, "forbidden");
    assert_eq!(
        third
            .api
            .delete(&format!("/v1/libraries/{lib}"))
            .await
            .status,
        204
    );
    assert_eq!(
        owner.api.get(&format!("/v1/books/{book_id}")).await.status,
        404,
        "a deleted library's books are gone"
    );
    assert_eq!(
        owner.api.get(&format!("/v1/libraries/{lib}")).await.status,
        404
    );
    owner
        .api
        .delete(&format!("/v1/libraries/{personal}"))
        .await
        .assert_error(409, "conflict");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Twenty people redeem the one use of a code at once: exactly one gets in.
#[tokio::test]
async fn the_last_use_of_a_code_goes_to_one() {
    let server = Server::start();
    let owner = Reader::new(&server, "race_owner").await;
    let lib = shared(&owner.api, "Race").await;
    let inv = invite(&owner.api, &lib, json!({"role": "reader", "max_uses": 1})).await;
    let code = inv["code"].as_str().unwrap().to_string();
    let mut people = Vec::new();
    for i in 0..20 {
        people.push(Reader::new(&server, &format!("racer{i}")).await);
    }
    let answers = futures_util::future::join_all(people.iter().map(|p| join(&p.api, &code))).await;
    let won: Vec<_> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in answers.iter().filter(|r| r.status != 200) {
        r.assert_error(404, "invalid_invite");
    }
    let members = owner.api.get(&format!("/v1/libraries/{lib}/members")).await;
    assert_eq!(members.body["items"].as_array().unwrap().len(), 2);
    let audit = owner.api.get(&format!("/v1/libraries/{lib}/audit")).await;
    let redeemed = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "invite_redeemed")
        .count();
    assert_eq!(redeemed, 1);
}

/// Wrong codes are rate limited per reader: past the budget, even a good code waits.
#[tokio::test]
async fn guessing_codes_is_rate_limited() {
    let server = Server::start_with(&[("DOGEAR_AUTH__LOGIN_MAX_FAILURES", "3")]);
    let owner = Reader::new(&server, "guess_owner").await;
    let guesser = Reader::new(&server, "guesser").await;
    let lib = shared(&owner.api, "Guarded").await;
    let inv = invite(&owner.api, &lib, json!({"role": "reader"})).await;
    for i in 0..3 {
        join(&guesser.api, &format!("AAAA-AAAA-AAA{i}"))
            .await
            .assert_error(404, "invalid_invite");
    }
    let limited = join(&guesser.api, inv["code"].as_str().unwrap()).await;
    limited.assert_error(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
}

/// A member's sockets follow the library: books added, roles changed, members joining and
/// being removed arrive live; a member's Kobo gets the library's books and loses them when
/// the member is removed.
#[tokio::test]
async fn members_follow_the_library_live_and_on_their_kobo() {
    let server = Server::start();
    let owner = Reader::new(&server, "live_owner").await;
    let friend = Reader::new(&server, "live_friend").await;
    let third = Reader::new(&server, "live_third").await;
    let lib = shared(&owner.api, "Live").await;
    let inv = invite(&owner.api, &lib, json!({"role": "reader"})).await;
    let code = inv["code"].as_str().unwrap().to_string();
    assert_eq!(join(&friend.api, &code).await.status, 200);

    let (mut ws, _) = Socket::connect(&server, friend.token(), &friend.device).await;
    let kobo_tok = friend
        .api
        .post("/v1/kobo/tokens", json!({"device_name": "Libra"}))
        .await;
    assert_eq!(kobo_tok.status, 201, "{}", kobo_tok.body);
    let mut kobo = Kobo::new(kobo_tok.body["api_endpoint"].as_str().unwrap());
    kobo.sync_all().await;

    let book = upload_to(&owner.api, &lib, "hamlet.epub").await;
    let added = frame_of(&mut ws, "book_added").await;
    assert_eq!(added["library_id"], lib.as_str());
    assert_eq!(added["book_id"], book.as_str());
    let got: Vec<Value> = kobo.sync_all().await.into_iter().flatten().collect();
    assert!(
        got.iter()
            .any(|i| i["NewEntitlement"]["BookEntitlement"]["Id"] == book.as_str()),
        "the shared book reaches the member's Kobo: {got:?}"
    );

    assert_eq!(join(&third.api, &code).await.status, 200);
    let joined = frame_of(&mut ws, "member_joined").await;
    assert_eq!(joined["user_id"], third.user_id.as_str());
    owner
        .api
        .patch(
            &format!("/v1/libraries/{lib}/members/{}", friend.user_id),
            json!({"role": "editor"}),
        )
        .await;
    let role = frame_of(&mut ws, "role_changed").await;
    assert_eq!(role["user_id"], friend.user_id.as_str());
    assert_eq!(role["role"], "editor");
    owner
        .api
        .patch(&format!("/v1/libraries/{lib}"), json!({"name": "Live 2"}))
        .await;
    assert_eq!(frame_of(&mut ws, "library_changed").await["name"], "Live 2");

    // A device that was away reads the same from the library's changes feed, then only
    // what is newer from its cursor.
    let feed = friend
        .api
        .get(&format!("/v1/libraries/{lib}/changes"))
        .await;
    assert_eq!(feed.status, 200, "{}", feed.body);
    let items = feed.body["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["type"] == "book" && i["book"]["id"] == book.as_str())
    );
    let kinds: Vec<&str> = items
        .iter()
        .filter(|i| i["type"] != "book")
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "library_created",
            "member_joined",
            "member_joined",
            "role_changed",
            "library_changed"
        ]
    );
    assert!(
        !feed.body.to_string().contains("127.0.0.1"),
        "no addresses for members"
    );
    let cursor = feed.body["next_cursor"].as_str().unwrap().to_string();
    let quiet = friend
        .api
        .get(&format!("/v1/libraries/{lib}/changes?cursor={cursor}"))
        .await;
    assert_eq!(quiet.body["items"], json!([]));
    assert_eq!(quiet.body["next_cursor"], cursor.as_str());
    let later = owner
        .api
        .post(
            "/v1/books",
            json!({"title": "Later", "authors": ["x"], "library_id": lib}),
        )
        .await;
    let newer = friend
        .api
        .get(&format!("/v1/libraries/{lib}/changes?cursor={cursor}"))
        .await;
    let newer = newer.body["items"].as_array().unwrap().clone();
    assert_eq!(newer.len(), 1, "{newer:?}");
    assert_eq!(newer[0]["book"]["id"], later.body["id"]);

    let removed = owner
        .api
        .delete(&format!("/v1/libraries/{lib}/members/{}", friend.user_id))
        .await;
    assert_eq!(removed.status, 204);
    let gone = frame_of(&mut ws, "member_removed").await;
    assert_eq!(gone["user_id"], friend.user_id.as_str());
    let after: Vec<Value> = kobo.sync_all().await.into_iter().flatten().collect();
    let removal = after
        .iter()
        .find(|i| i["ChangedEntitlement"]["BookEntitlement"]["Id"] == book.as_str())
        .unwrap_or_else(|| panic!("the removed member's Kobo is told: {after:?}"));
    assert_eq!(
        removal["ChangedEntitlement"]["BookEntitlement"]["IsRemoved"],
        true
    );
    assert_eq!(
        friend.api.get(&format!("/v1/books/{book}")).await.status,
        404
    );
}

/// Every sharing action leaves an entry; the owner pages through them; `dogear audit
/// verify` passes on the log as written and names the entry changed behind Dogear's back.
#[tokio::test]
async fn the_audit_log_is_a_chain_that_an_edit_breaks() {
    let mut server = Server::start();
    let owner = Reader::new(&server, "au_owner").await;
    let friend = Reader::new(&server, "au_friend").await;
    let lib = shared(&owner.api, "Audited").await;
    let device = owner.device.clone();
    let inv = owner
        .api
        .with_header("x-dogear-device", &device)
        .post(
            &format!("/v1/libraries/{lib}/invites"),
            json!({"role": "reader", "max_uses": 2}),
        )
        .await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    owner
        .api
        .with_header("x-dogear-device", &friend.device)
        .post(
            &format!("/v1/libraries/{lib}/invites"),
            json!({"role": "reader"}),
        )
        .await
        .assert_error(400, "bad_request");
    assert_eq!(
        join(&friend.api, inv.body["code"].as_str().unwrap())
            .await
            .status,
        200
    );
    owner
        .api
        .patch(
            &format!("/v1/libraries/{lib}/members/{}", friend.user_id),
            json!({"role": "editor"}),
        )
        .await;
    let book = friend
        .api
        .post(
            "/v1/books",
            json!({"title": "Doomed", "authors": ["x"], "library_id": lib}),
        )
        .await;
    let book_id = book.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        friend
            .api
            .delete(&format!("/v1/books/{book_id}"))
            .await
            .status,
        204
    );
    owner
        .api
        .patch(
            &format!("/v1/libraries/{lib}"),
            json!({"name": "Audited 2"}),
        )
        .await;
    owner
        .api
        .delete(&format!("/v1/libraries/{lib}/members/{}", friend.user_id))
        .await;

    let mut entries = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = owner
            .api
            .get(&format!(
                "/v1/libraries/{lib}/audit?limit=2&cursor={cursor}"
            ))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        entries.extend(page.body["items"].as_array().unwrap().clone());
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "library_created",
            "invite_created",
            "invite_redeemed",
            "role_changed",
            "book_deleted",
            "library_renamed",
            "member_removed"
        ]
    );
    assert_eq!(entries[1]["device_id"], device.as_str());
    assert_eq!(entries[1]["address"], "127.0.0.1");
    assert_eq!(entries[2]["actor_id"], friend.user_id.as_str());
    assert_eq!(entries[4]["book_id"], book_id.as_str());
    for w in entries.windows(2) {
        assert_eq!(
            w[1]["prev_hash"], w[0]["hash"],
            "each entry names the one before"
        );
    }

    assert_eq!(server.terminate(), Some(0));
    let data = server.data.to_str().unwrap().to_string();
    let (code, out, err) = run_cli(&["--data", &data, "audit", "verify"], &[], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("7 entries"), "{out}");
    let (code, out, _) = run_cli(
        &["--data", &data, "audit", "verify", "--library", &lib],
        &[],
        None,
    );
    assert_eq!(code, 0, "{out}");

    // Dogear refuses to change the log; someone with the file drops the guard and edits.
    let db = server.data.join("dogear.db");
    let refused = sqlite(
        &db,
        &format!("UPDATE audit_log SET name = 'x' WHERE library_id = '{lib}' AND seq = 6"),
    );
    assert!(refused.contains("append-only"), "{refused}");
    sqlite(
        &db,
        &format!(
            "DROP TRIGGER audit_log_no_update; \
         UPDATE audit_log SET role = 'owner' WHERE library_id = '{lib}' AND seq = 4"
        ),
    );
    let (code, out, err) = run_cli(&["--data", &data, "audit", "verify"], &[], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("library {lib} entry 4")), "{out}");
    assert!(err.contains("entry 4"), "{err}");
}

/// Runs SQL on a database file with Python's sqlite3 (no SQLite tool is assumed); what it
/// printed (an error's text when the statement failed).
fn sqlite(db: &std::path::Path, sql: &str) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys\n\
             c=sqlite3.connect(sys.argv[1])\n\
             try:\n  c.executescript(sys.argv[2]); c.commit(); print('ok')\n\
             except Exception as e:\n  print(e)",
        )
        .arg(db)
        .arg(sql)
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two members edit one book offline and sync later, the older edit arriving last: edits
/// to different fields are both kept; for the same field the later client time wins, ties
/// going to the greater device id; the answer is the merged record.
#[tokio::test]
async fn offline_edits_merge_field_by_field() {
    let server = Server::start();
    let owner = Reader::new(&server, "merge_owner").await;
    let friend = Reader::new(&server, "merge_friend").await;
    let lib = shared(&owner.api, "Edited together").await;
    let inv = invite(&owner.api, &lib, json!({"role": "editor"})).await;
    assert_eq!(
        join(&friend.api, inv["code"].as_str().unwrap())
            .await
            .status,
        200
    );
    let book = owner
        .api
        .post(
            "/v1/books",
            json!({"title": "Draft", "authors": ["Anon"], "library_id": lib}),
        )
        .await;
    let id = book.body["id"].as_str().unwrap().to_string();
    let at = |s: u32| format!("2026-06-01T10:00:{s:02}Z");
    let patch = |api: &Api, body: Value| {
        let api = api.clone();
        let path = format!("/v1/books/{id}");
        async move { api.patch(&path, body).await }
    };
    // The owner edited the title at :20; the friend, offline, the tags at :10 and the title
    // at :15. The friend's edits arrive after the owner's.
    let a = patch(
        &owner.api,
        json!({"title": "Owner's title", "client_ts": at(20), "device_id": owner.device}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let b = patch(
        &friend.api,
        json!({"title": "Friend's title", "tags": ["Poetry"], "client_ts": at(15),
               "device_id": friend.device}),
    )
    .await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.body["title"], "Owner's title", "the later title stays");
    assert_eq!(b.body["tags"], json!(["Poetry"]), "the other field is kept");
    // Same time, same field: the greater device id wins, whichever arrives first.
    let (lo, hi) = if owner.device < friend.device {
        ((&owner, "low"), (&friend, "high"))
    } else {
        ((&friend, "low"), (&owner, "high"))
    };
    let first = patch(
        &hi.0.api,
        json!({"series": hi.1, "client_ts": at(30), "device_id": hi.0.device}),
    )
    .await;
    assert_eq!(first.body["series"], "high");
    let second = patch(
        &lo.0.api,
        json!({"series": lo.1, "client_ts": at(30), "device_id": lo.0.device}),
    )
    .await;
    assert_eq!(second.status, 200);
    assert_eq!(
        second.body["series"], "high",
        "ties go to the greater device id"
    );
    let stored = owner.api.get(&format!("/v1/books/{id}")).await;
    assert_eq!(stored.body["title"], "Owner's title");
    assert_eq!(stored.body["tags"], json!(["Poetry"]));
    assert_eq!(stored.body["series"], "high");
    // A device that is not the caller's is refused, naming the field.
    let wrong = patch(
        &friend.api,
        json!({"title": "x", "client_ts": at(40), "device_id": owner.device}),
    )
    .await;
    assert!(wrong.assert_error(400, "bad_request").contains("device_id"));
    // A clock in year 9999 is taken as the server's time: later edits still win.
    patch(
        &friend.api,
        json!({"description": "from the future", "client_ts": "9999-12-31T23:59:59Z",
               "device_id": friend.device}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let now_edit = patch(&owner.api, json!({"description": "now"})).await;
    assert_eq!(now_edit.body["description"], "now");
}

/// Two nodes: an invite made through one node is redeemed through the other, the last use
/// of a code still goes to one person when the racers are spread over both nodes, and a
/// member's socket on one node hears of changes made through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_across_two_nodes() {
    let (c, _plan) = dogear_e2e::cluster::Nodes::start(2).await;
    let owner = Reader::new(&c.nodes[0], "cl_owner").await;
    let friend = Reader::new(&c.nodes[1], "cl_friend").await;
    let lib = shared(&owner.api, "Across").await;
    let inv = invite(&owner.api, &lib, json!({"role": "reader"})).await;
    let joined = join(&friend.api, inv["code"].as_str().unwrap()).await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    let (mut ws, _) = Socket::connect(&c.nodes[1], friend.token(), &friend.device).await;

    let one = invite(&owner.api, &lib, json!({"role": "reader", "max_uses": 1})).await;
    let code = one["code"].as_str().unwrap().to_string();
    let mut racers = Vec::new();
    for i in 0..8 {
        racers.push(Reader::new(&c.nodes[i % 2], &format!("cl_racer{i}")).await);
    }
    let answers = futures_util::future::join_all(racers.iter().map(|r| join(&r.api, &code))).await;
    assert_eq!(
        answers.iter().filter(|r| r.status == 200).count(),
        1,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let joined = frame_of(&mut ws, "member_joined").await;
    assert_eq!(joined["library_id"], lib.as_str());

    let book = owner
        .api
        .post(
            "/v1/books",
            json!({"title": "Far away", "authors": ["x"], "library_id": lib}),
        )
        .await;
    let book_id = book.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        frame_of(&mut ws, "book_added").await["book_id"],
        book_id.as_str()
    );
    let owner_on_1 = Api {
        base: c.nodes[1].base.clone(),
        ..owner.api.clone()
    };
    let promoted = owner_on_1
        .patch(
            &format!("/v1/libraries/{lib}/members/{}", friend.user_id),
            json!({"role": "editor"}),
        )
        .await;
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    assert_eq!(frame_of(&mut ws, "role_changed").await["role"], "editor");
    let edited = friend
        .api
        .patch(&format!("/v1/books/{book_id}"), json!({"title": "Closer"}))
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let audit = owner_on_1.get(&format!("/v1/libraries/{lib}/audit")).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "library_created",
            "invite_created",
            "invite_redeemed",
            "invite_created",
            "invite_redeemed",
            "role_changed"
        ]
    );
}

/// `audit.retention_days`: a deleted library's log goes after the retention, a live
/// library's stays; the chains left still verify.
#[tokio::test]
async fn deleted_libraries_logs_go_after_the_retention() {
    // 0.00003 days: 2.6 s.
    let mut server = Server::start_with(&[("DOGEAR_AUDIT__RETENTION_DAYS", "0.00003")]);
    let owner = Reader::new(&server, "ret_owner").await;
    let kept = shared(&owner.api, "Kept").await;
    let gone = shared(&owner.api, "Gone").await;
    assert_eq!(
        owner
            .api
            .delete(&format!("/v1/libraries/{gone}"))
            .await
            .status,
        204
    );
    dogear_e2e::eventually(
        30,
        "the retention to remove the deleted library's log",
        || async {
            server
                .log()
                .contains("audit logs of deleted libraries removed")
                .then_some(())
        },
    )
    .await;
    assert_eq!(server.terminate(), Some(0));
    let data = server.data.to_str().unwrap().to_string();
    let (code, out, err) = run_cli(&["--data", &data, "audit", "verify"], &[], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("ok library {kept}: 1 entries")),
        "{out}"
    );
    assert!(!out.contains(&gone), "{out}");
}

/// A library's shelves: its owner and editors make and change them, every member sees them
/// (a member's Kobo as a collection, from the library's books), nobody else does; a member
/// who leaves loses them, on the Kobo too.
#[tokio::test]
async fn library_shelves_follow_roles_and_membership() {
    let server = Server::start();
    let owner = Reader::new(&server, "ls_owner").await;
    let editor = Reader::new(&server, "ls_editor").await;
    let reader = Reader::new(&server, "ls_reader").await;
    let outsider = Reader::new(&server, "ls_outsider").await;
    let lib = shared(&owner.api, "Shelved").await;
    for (p, role) in [(&editor, "editor"), (&reader, "reader")] {
        let inv = invite(&owner.api, &lib, json!({"role": role})).await;
        assert_eq!(
            join(&p.api, inv["code"].as_str().unwrap()).await.status,
            200
        );
    }
    let hamlet = upload_to(&owner.api, &lib, "hamlet.epub").await;
    let macbeth = upload_to(&owner.api, &lib, "macbeth.epub").await;
    let made = owner
        .api
        .post(
            "/v1/shelves",
            json!({"name": "Tragedies", "book_ids": [hamlet], "library_id": lib}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["library_id"], lib.as_str());
    let shelf = made.body["id"].as_str().unwrap().to_string();
    // A book from outside the library is refused, naming the field.
    let personal = owner
        .api
        .post(
            "/v1/shelves",
            json!({"name": "Mixed", "book_ids": [owner.book], "library_id": lib}),
        )
        .await;
    assert!(
        personal
            .assert_error(400, "bad_request")
            .contains("book_ids")
    );
    reader
        .api
        .post("/v1/shelves", json!({"name": "No", "library_id": lib}))
        .await
        .assert_error(403, "forbidden");
    outsider
        .api
        .post("/v1/shelves", json!({"name": "No", "library_id": lib}))
        .await
        .assert_error(404, "not_found");
    // The editor adds a book; the reader sees the shelf but cannot change it.
    let added = editor
        .api
        .send("PUT", &format!("/v1/shelves/{shelf}/books/{macbeth}"), None)
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.body["book_ids"], json!([hamlet, macbeth]));
    let listed = reader.api.get("/v1/shelves").await;
    assert!(
        listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == shelf.as_str())
    );
    reader
        .api
        .patch(&format!("/v1/shelves/{shelf}"), json!({"name": "Mine"}))
        .await
        .assert_error(403, "forbidden");
    assert_eq!(
        outsider
            .api
            .get(&format!("/v1/shelves/{shelf}"))
            .await
            .status,
        404
    );

    // A Kobo of the reader gets it as a collection; after leaving, it is taken back.
    let tok = reader
        .api
        .post("/v1/kobo/tokens", json!({"device_name": "Sage"}))
        .await;
    let mut kobo = Kobo::new(tok.body["api_endpoint"].as_str().unwrap());
    let got: Vec<Value> = kobo.sync_all().await.into_iter().flatten().collect();
    let tag = got
        .iter()
        .find(|i| i["NewTag"]["Tag"]["Id"] == shelf.as_str())
        .unwrap_or_else(|| panic!("the library's shelf as a collection: {got:?}"));
    assert_eq!(tag["NewTag"]["Tag"]["Name"], "Tragedies");
    assert_eq!(
        tag["NewTag"]["Tag"]["Items"].as_array().unwrap().len(),
        2,
        "{tag}"
    );
    let left = reader
        .api
        .delete(&format!("/v1/libraries/{lib}/members/{}", reader.user_id))
        .await;
    assert_eq!(left.status, 204);
    let after: Vec<Value> = kobo.sync_all().await.into_iter().flatten().collect();
    assert!(
        after
            .iter()
            .any(|i| i["DeletedTag"]["Tag"]["Id"] == shelf.as_str()),
        "the collection is taken back: {after:?}"
    );
    assert_eq!(
        reader.api.get(&format!("/v1/shelves/{shelf}")).await.status,
        404
    );
}

/// Deleting a library with more books than a page of its actor's deletion: every one is
/// gone for every member, and a member's open socket hears of it.
#[tokio::test]
async fn deleting_a_library_tombstones_every_book() {
    let server = Server::start();
    let owner = Reader::new(&server, "del_owner").await;
    let friend = Reader::new(&server, "del_friend").await;
    let lib = shared(&owner.api, "Big").await;
    let inv = invite(&owner.api, &lib, json!({"role": "reader"})).await;
    assert_eq!(
        join(&friend.api, inv["code"].as_str().unwrap())
            .await
            .status,
        200
    );
    let mut ids = Vec::new();
    for chunk in 0..22 {
        let made = futures_util::future::join_all((0..50).map(|i| {
            owner.api.post(
                "/v1/books",
                json!({"title": format!("Book {chunk}-{i}"), "authors": ["x"], "library_id": lib}),
            )
        }))
        .await;
        for r in made {
            assert_eq!(r.status, 201, "{}", r.body);
            ids.push(r.body["id"].as_str().unwrap().to_string());
        }
    }
    let (mut ws, _) = Socket::connect(&server, friend.token(), &friend.device).await;
    let deleted = owner.api.delete(&format!("/v1/libraries/{lib}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(
        frame_of(&mut ws, "library_deleted").await["library_id"],
        lib.as_str()
    );
    for who in [&owner, &friend] {
        let left = who.api.all_books("").await;
        assert!(
            !left
                .iter()
                .any(|b| ids.contains(&b["id"].as_str().unwrap().to_string())),
            "no book of the deleted library is listed"
        );
    }
    for id in [&ids[0], &ids[600], &ids[1099]] {
        assert_eq!(owner.api.get(&format!("/v1/books/{id}")).await.status, 404);
    }
}
