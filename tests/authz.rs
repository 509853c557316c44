//! The authorization matrix of shared libraries, generated: every route that touches a
//! library or its books, called by every kind of caller (owner, editor, reader, a former
//! member, an outsider, nobody, and an outsider's Kobo token used as a bearer token), against
//! a real `dogear`. The table of statuses is printed and written to
//! `target/authz-matrix.md`; the test fails on any cell that differs from what is expected,
//! listing them.

use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Api, Reader, Resp, Server, fixtures, progress};
use std::collections::HashMap;
use std::fmt::Write as _;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Who {
    Anonymous,
    OutsiderKobo,
    Outsider,
    Former,
    Reader,
    Editor,
    Owner,
}

/// Callers in the order of the table's columns; the owner last, so that its destructive calls
/// come after everyone else's.
const WHO: [Who; 7] = [
    Who::Anonymous,
    Who::OutsiderKobo,
    Who::Outsider,
    Who::Former,
    Who::Reader,
    Who::Editor,
    Who::Owner,
];

fn column(w: Who) -> &'static str {
    match w {
        Who::Anonymous => "anonymous",
        Who::OutsiderKobo => "outsider's Kobo token",
        Who::Outsider => "outsider",
        Who::Former => "former member",
        Who::Reader => "reader",
        Who::Editor => "editor",
        Who::Owner => "owner",
    }
}

struct World {
    server: Server,
    people: HashMap<Who, Reader>,
    kobo_token: String,
    lib: String,
    book: String,
    invite: String,
    /// A book of the library for each caller to delete.
    doomed: HashMap<Who, String>,
    /// Each person's own shelf.
    shelves: HashMap<Who, String>,
    /// A shelf of the library.
    lib_shelf: String,
    /// The import job of the owner's upload into the library.
    job: String,
    epub: Vec<u8>,
}

impl World {
    fn api(&self, w: Who) -> Api {
        match w {
            Who::Anonymous => self.server.client(),
            Who::OutsiderKobo => self.server.client().with_token(&self.kobo_token),
            w => self.people[&w].api.clone(),
        }
    }
    /// The person behind a caller (the outsider for the two without an account of their own).
    fn person(&self, w: Who) -> &Reader {
        match w {
            Who::Anonymous | Who::OutsiderKobo => &self.people[&Who::Outsider],
            w => &self.people[&w],
        }
    }
}

async fn join(api: &Api, code: &str) {
    let r = api.post("/v1/libraries/join", json!({"code": code})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn setup() -> World {
    let server = Server::start();
    let mut people = HashMap::new();
    for (w, name) in [
        (Who::Owner, "mx_owner"),
        (Who::Editor, "mx_editor"),
        (Who::Reader, "mx_reader"),
        (Who::Former, "mx_former"),
        (Who::Outsider, "mx_outsider"),
    ] {
        people.insert(w, Reader::new(&server, name).await);
    }
    let owner = &people[&Who::Owner].api;
    let lib = owner
        .post("/v1/libraries", json!({"name": "Matrix"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = |role: &'static str| {
        let owner = owner.clone();
        let lib = lib.clone();
        async move {
            owner
                .post(
                    &format!("/v1/libraries/{lib}/invites"),
                    json!({"role": role}),
                )
                .await
                .body
        }
    };
    let editors = code("editor").await;
    let readers = code("reader").await;
    join(&people[&Who::Editor].api, editors["code"].as_str().unwrap()).await;
    join(&people[&Who::Reader].api, readers["code"].as_str().unwrap()).await;
    join(&people[&Who::Former].api, readers["code"].as_str().unwrap()).await;
    let former = &people[&Who::Former];
    let left = former
        .api
        .delete(&format!("/v1/libraries/{lib}/members/{}", former.user_id))
        .await;
    assert_eq!(left.status, 204);
    let epub = std::fs::read(fixtures().join("books/good/hamlet.epub")).unwrap();
    let up = owner.upload(epub.clone(), "hamlet.epub", Some(&lib)).await;
    assert_eq!(up.status, 202, "{}", up.body);
    let job_id = up.body["job_id"].as_str().unwrap().to_string();
    let job = owner.wait_job(&job_id).await;
    let book = job["book_id"].as_str().unwrap().to_string();
    let mut doomed = HashMap::new();
    let mut shelves = HashMap::new();
    for w in WHO {
        let b = owner
            .post(
                "/v1/books",
                json!({"title": format!("Doomed {w:?}"), "authors": ["x"], "library_id": lib}),
            )
            .await;
        doomed.insert(w, b.body["id"].as_str().unwrap().to_string());
    }
    for (w, p) in &people {
        let s = p.api.post("/v1/shelves", json!({"name": "Mine"})).await;
        assert_eq!(s.status, 201, "{}", s.body);
        shelves.insert(*w, s.body["id"].as_str().unwrap().to_string());
    }
    let outsider = &people[&Who::Outsider];
    let kobo = outsider
        .api
        .post("/v1/kobo/tokens", json!({"device_name": "Clara"}))
        .await;
    let kobo_token = kobo.body["token"].as_str().unwrap().to_string();
    let invite = readers["id"].as_str().unwrap().to_string();
    let lib_shelf = owner
        .post(
            "/v1/shelves",
            json!({"name": "Library picks", "book_ids": [book], "library_id": lib}),
        )
        .await;
    assert_eq!(lib_shelf.status, 201, "{}", lib_shelf.body);
    let lib_shelf = lib_shelf.body["id"].as_str().unwrap().to_string();
    World {
        job: job_id,
        lib_shelf,
        server,
        people,
        kobo_token,
        lib,
        book,
        invite,
        doomed,
        shelves,
        epub,
    }
}

/// One row of the matrix: its label, the statuses expected in [`WHO`]'s order, and the call.
struct Case {
    label: &'static str,
    expect: [u16; 7],
    call: fn(&World, Who) -> Call,
}

enum Call {
    Json(&'static str, String, Option<Value>),
    Upload(String),
    Bytes(String),
    /// A list: `200` when it lists the library's book, `404` when it does not.
    Lists(String),
    /// An OPDS GET with the person's name and password as HTTP Basic (nothing for
    /// anonymous; the Kobo token as a bearer token for the Kobo).
    Basic(String),
    /// A profile: `200` when its data is shown, `404` when only the name is.
    Profile(String),
}

const NO: [u16; 4] = [401, 401, 404, 404];

const fn row(members: [u16; 3]) -> [u16; 7] {
    [
        NO[0], NO[1], NO[2], NO[3], members[0], members[1], members[2],
    ]
}

fn cases() -> Vec<Case> {
    use Call::*;
    vec![
        Case {
            label: "GET /v1/libraries/{id}",
            expect: row([200, 200, 200]),
            call: |w, _| Json("GET", format!("/v1/libraries/{}", w.lib), None),
        },
        Case {
            label: "PATCH /v1/libraries/{id}",
            expect: row([403, 403, 200]),
            call: |w, _| {
                Json(
                    "PATCH",
                    format!("/v1/libraries/{}", w.lib),
                    Some(json!({"name": "Matrix"})),
                )
            },
        },
        Case {
            label: "GET /v1/libraries/{id}/members",
            expect: row([200, 200, 200]),
            call: |w, _| Json("GET", format!("/v1/libraries/{}/members", w.lib), None),
        },
        Case {
            label: "PATCH /v1/libraries/{id}/members/{reader}",
            expect: row([403, 403, 200]),
            call: |w, _| {
                Json(
                    "PATCH",
                    format!(
                        "/v1/libraries/{}/members/{}",
                        w.lib,
                        w.people[&Who::Reader].user_id
                    ),
                    Some(json!({"role": "reader"})),
                )
            },
        },
        Case {
            label: "DELETE /v1/libraries/{id}/members/{outsider} (not a member)",
            expect: row([403, 403, 404]),
            call: |w, _| {
                Json(
                    "DELETE",
                    format!(
                        "/v1/libraries/{}/members/{}",
                        w.lib,
                        w.people[&Who::Outsider].user_id
                    ),
                    None,
                )
            },
        },
        Case {
            label: "POST /v1/libraries/{id}/invites",
            expect: row([403, 403, 201]),
            call: |w, _| {
                Json(
                    "POST",
                    format!("/v1/libraries/{}/invites", w.lib),
                    Some(json!({"role": "reader"})),
                )
            },
        },
        Case {
            label: "GET /v1/libraries/{id}/invites",
            expect: row([403, 403, 200]),
            call: |w, _| Json("GET", format!("/v1/libraries/{}/invites", w.lib), None),
        },
        Case {
            label: "DELETE /v1/libraries/{id}/invites/{invite_id}",
            expect: row([403, 403, 204]),
            call: |w, _| {
                Json(
                    "DELETE",
                    format!("/v1/libraries/{}/invites/{}", w.lib, w.invite),
                    None,
                )
            },
        },
        Case {
            label: "POST /v1/libraries/{id}/transfer (withdraw)",
            expect: row([403, 403, 200]),
            call: |w, _| {
                Json(
                    "POST",
                    format!("/v1/libraries/{}/transfer", w.lib),
                    Some(json!({"user_id": null})),
                )
            },
        },
        Case {
            label: "POST /v1/libraries/{id}/transfer/accept (nothing offered)",
            expect: row([409, 409, 409]),
            call: |w, _| {
                Json(
                    "POST",
                    format!("/v1/libraries/{}/transfer/accept", w.lib),
                    Some(json!({})),
                )
            },
        },
        Case {
            label: "GET /v1/libraries/{id}/changes",
            expect: row([200, 200, 200]),
            call: |w, _| Json("GET", format!("/v1/libraries/{}/changes", w.lib), None),
        },
        Case {
            label: "GET /v1/libraries/{id}/audit",
            expect: row([403, 403, 200]),
            call: |w, _| Json("GET", format!("/v1/libraries/{}/audit", w.lib), None),
        },
        Case {
            label: "GET /v1/books?library_id={id}",
            expect: row([200, 200, 200]),
            call: |w, _| Json("GET", format!("/v1/books?library_id={}", w.lib), None),
        },
        Case {
            label: "POST /v1/books (library_id)",
            expect: row([403, 201, 201]),
            call: |w, _| {
                Json(
                    "POST",
                    "/v1/books".into(),
                    Some(json!({"title": "New", "authors": ["x"], "library_id": w.lib})),
                )
            },
        },
        Case {
            label: "POST /v1/books/upload?library_id={id}",
            expect: row([403, 202, 202]),
            call: |w, _| Upload(format!("/v1/books/upload?library_id={}", w.lib)),
        },
        Case {
            label: "GET /v1/imports?library_id={id}",
            expect: row([200, 200, 200]),
            call: |w, _| Json("GET", format!("/v1/imports?library_id={}", w.lib), None),
        },
        Case {
            label: "GET /v1/imports/{the owner's upload}",
            expect: row([200, 200, 200]),
            call: |w, _| Json("GET", format!("/v1/imports/{}", w.job), None),
        },
        Case {
            label: "GET /v1/books/{id}",
            expect: row([200, 200, 200]),
            call: |w, _| Json("GET", format!("/v1/books/{}", w.book), None),
        },
        Case {
            label: "PATCH /v1/books/{id}",
            expect: row([403, 200, 200]),
            call: |w, _| {
                Json(
                    "PATCH",
                    format!("/v1/books/{}", w.book),
                    Some(json!({"series": "Folio"})),
                )
            },
        },
        Case {
            label: "DELETE /v1/books/{id}",
            expect: row([403, 204, 204]),
            call: |w, who| Json("DELETE", format!("/v1/books/{}", w.doomed[&who]), None),
        },
        Case {
            label: "GET /v1/books/{id}/file",
            expect: row([200, 200, 200]),
            call: |w, _| Bytes(format!("/v1/books/{}/file", w.book)),
        },
        Case {
            label: "GET /v1/books/{id}/cover",
            expect: row([200, 200, 200]),
            call: |w, _| Bytes(format!("/v1/books/{}/cover", w.book)),
        },
        Case {
            label: "GET /v1/books/{id}/progress",
            expect: row([200, 200, 200]),
            call: |w, _| Json("GET", format!("/v1/books/{}/progress", w.book), None),
        },
        Case {
            label: "POST /v1/books/{id}/progress",
            expect: row([200, 200, 200]),
            call: |w, who| {
                Json(
                    "POST",
                    format!("/v1/books/{}/progress", w.book),
                    Some(progress(&w.person(who).device, 10.0, 1_000)),
                )
            },
        },
        Case {
            label: "GET /v1/books/{id}/mine",
            expect: row([200, 200, 200]),
            call: |w, _| Json("GET", format!("/v1/books/{}/mine", w.book), None),
        },
        Case {
            label: "PATCH /v1/books/{id}/mine",
            expect: row([200, 200, 200]),
            call: |w, _| {
                Json(
                    "PATCH",
                    format!("/v1/books/{}/mine", w.book),
                    Some(json!({"status": "reading", "rating": 4})),
                )
            },
        },
        Case {
            label: "GET /v1/books?status=reading (200: the book is listed, 404: it is not)",
            expect: [401, 401, 404, 404, 200, 200, 200],
            call: |_, _| Lists("/v1/books?status=reading".into()),
        },
        Case {
            label: "PUT /v1/books/{id}/mine",
            expect: row([200, 200, 200]),
            call: |w, _| {
                Json(
                    "PUT",
                    format!("/v1/books/{}/mine", w.book),
                    Some(json!({"favourite": true})),
                )
            },
        },
        Case {
            label: "GET /v1/users/{owner} (private profile: 200 data shown, 404 name only)",
            expect: [401, 401, 404, 404, 404, 404, 200],
            call: |w, _| Profile(format!("/v1/users/{}", w.people[&Who::Owner].username)),
        },
        Case {
            label: "GET /v1/admin/users (readers are not administrators)",
            expect: [401, 401, 403, 403, 403, 403, 403],
            call: |_, _| Json("GET", "/v1/admin/users".into(), None),
        },
        Case {
            label: "PUT /v1/shelves/{own}/books/{id}",
            expect: row([200, 200, 200]),
            call: |w, who| {
                let shelf = &w.shelves[&match who {
                    Who::Anonymous | Who::OutsiderKobo => Who::Outsider,
                    w => w,
                }];
                Json("PUT", format!("/v1/shelves/{shelf}/books/{}", w.book), None)
            },
        },
        Case {
            label: "GET /v1/books?q=hamlet (200: the book is listed, 404: it is not)",
            expect: [401, 401, 404, 404, 200, 200, 200],
            call: |_, _| Lists("/v1/books?q=hamlet".into()),
        },
        Case {
            label: "GET /opds/v1.2/books/{id} (Basic)",
            expect: row([200, 200, 200]),
            call: |w, _| Basic(format!("/opds/v1.2/books/{}", w.book)),
        },
        Case {
            label: "GET /opds/v2/books/{id}/file/epub/hamlet.epub (Basic)",
            expect: row([200, 200, 200]),
            call: |w, _| Basic(format!("/opds/v2/books/{}/file/epub/hamlet.epub", w.book)),
        },
        Case {
            label: "GET /opds/v1.2/all (200: the book is listed, 404: it is not)",
            expect: [401, 401, 404, 404, 200, 200, 200],
            call: |_, _| Basic("/opds/v1.2/all?limit=200".into()),
        },
        Case {
            label: "GET /v1/shelves/{library's shelf}",
            expect: row([200, 200, 200]),
            call: |w, _| Json("GET", format!("/v1/shelves/{}", w.lib_shelf), None),
        },
        Case {
            label: "PATCH /v1/shelves/{library's shelf}",
            expect: row([403, 200, 200]),
            call: |w, _| {
                Json(
                    "PATCH",
                    format!("/v1/shelves/{}", w.lib_shelf),
                    Some(json!({"name": "Library picks"})),
                )
            },
        },
        Case {
            label: "POST /v1/shelves (library_id)",
            expect: row([403, 201, 201]),
            call: |w, _| {
                Json(
                    "POST",
                    "/v1/shelves".into(),
                    Some(json!({"name": "More", "library_id": w.lib})),
                )
            },
        },
        Case {
            label: "DELETE /v1/libraries/{id}",
            expect: row([403, 403, 204]),
            call: |w, _| Json("DELETE", format!("/v1/libraries/{}", w.lib), None),
        },
    ]
}

async fn run(w: &World, who: Who, call: Call) -> u16 {
    let api = w.api(who);
    match call {
        Call::Json(m, path, body) => {
            let body = body.map(|b| b.to_string());
            api.send(m, &path, body.as_deref()).await.status
        }
        Call::Upload(path) => {
            let mut rb = api
                .http
                .post(format!("{}{path}", api.base))
                .body(w.epub.clone());
            rb = rb.header("content-disposition", "attachment; filename=hamlet.epub");
            if let Some(t) = &api.token {
                rb = rb.bearer_auth(t);
            }
            Resp::of(rb.send().await.expect("upload")).await.status
        }
        Call::Bytes(path) => api.get_bytes(&path, &[]).await.0,
        Call::Lists(path) => {
            let r = api.get(&path).await;
            if r.status != 200 {
                return r.status;
            }
            if r.body.to_string().contains(&w.book) {
                200
            } else {
                404
            }
        }
        Call::Profile(path) => {
            let r = api.get(&path).await;
            match (r.status, r.body["visible"].as_bool()) {
                (200, Some(true)) if r.body.get("finished").is_some() => 200,
                (200, Some(false)) if r.body.get("finished").is_none() => 404,
                (200, _) => 500,
                (s, _) => s,
            }
        }
        Call::Basic(path) => {
            let mut rb = api.http.get(format!("{}{path}", api.base));
            match who {
                Who::Anonymous => {}
                Who::OutsiderKobo => rb = rb.bearer_auth(&w.kobo_token),
                _ => rb = rb.basic_auth(&w.person(who).username, Some("correct horse battery")),
            }
            let r = rb.send().await.expect("opds");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            if status == 200 && path.contains("/all") && !text.contains(&w.book) {
                return 404;
            }
            status
        }
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_by_their_role() {
    let w = setup().await;
    let cases = cases();
    let mut table = String::from("| route |");
    for who in WHO {
        let _ = write!(table, " {} |", column(who));
    }
    table.push_str("\n|---|");
    table.push_str(&"---|".repeat(WHO.len()));
    table.push('\n');
    let mut wrong = Vec::new();
    let mut cells = 0;
    for case in &cases {
        let _ = write!(table, "| `{}` |", case.label);
        for (i, who) in WHO.iter().enumerate() {
            let got = run(&w, *who, (case.call)(&w, *who)).await;
            cells += 1;
            let want = case.expect[i];
            if got == want {
                let _ = write!(table, " {got} |");
            } else {
                let _ = write!(table, " **{got}** (want {want}) |");
                wrong.push(format!(
                    "{} as {}: {got}, want {want}",
                    case.label,
                    column(*who)
                ));
            }
        }
        table.push('\n');
    }
    let _ = writeln!(table, "\n{cells} cells, {} wrong", wrong.len());
    println!("{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/authz-matrix.md");
    let _ = std::fs::write(&out, &table);
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}\n\n{table}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(cells, cases.len() * WHO.len());
}
