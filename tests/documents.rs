//! Notes, todos and annotations against a real `dogear`: REST, the local-first sync protocol
//! (pull by checkpoint with deletions, push on a base version, a conflicting push answered
//! with the server's document), live frames on the WebSocket (also through another node),
//! a Kobo's highlights reaching the web and a web highlight reaching the Kobo, and exports.

use dogear_e2e::cluster::Nodes;
use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Api, Reader, Server, Socket, fixtures};
use std::time::Duration;

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

async fn pull(api: &Api, path: &str, since: &str) -> Value {
    let r = api.get(&format!("{path}?since={since}&limit=2")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Every document written after `since`, page by page; the last checkpoint.
async fn pull_all(api: &Api, path: &str, since: &str) -> (Vec<Value>, String) {
    let mut out = Vec::new();
    let mut at = since.to_string();
    loop {
        let page = pull(api, path, &at).await;
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        at = page["checkpoint"].as_str().unwrap().to_string();
        if page["has_more"] == false {
            return (out, at);
        }
    }
}

#[tokio::test]
async fn notes_and_todos_sync_like_a_local_first_app() {
    let server = Server::start();
    let me = Reader::new(&server, "docs_notes").await;
    let other = Reader::new(&server, "docs_other").await;
    let (mut ws, _) = Socket::connect(&server, me.token(), &me.device).await;

    // REST: create, read, edit on the version read, delete.
    let r = me
        .api
        .post(
            "/v1/notes",
            json!({"title": "Ideas", "body": "Read *Hamlet* again", "book_id": me.book}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let note = r.body.clone();
    let id = note["id"].as_str().unwrap().to_string();
    assert_eq!(note["version"], 1);
    assert_eq!(note["book_id"], me.book.as_str());
    let live = frame_of(&mut ws, "note_changed").await;
    assert_eq!(live["document"], note, "pushed live as stored");
    assert_eq!(me.api.get(&format!("/v1/notes/{id}")).await.body, note);
    let r = me
        .api
        .patch(
            &format!("/v1/notes/{id}"),
            json!({"base_version": 1, "body": "Read *Hamlet* twice"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["title"], "Ideas", "untouched");
    // An edit made on version 1 (another device, offline) is refused with the current one.
    let r = me
        .api
        .patch(
            &format!("/v1/notes/{id}"),
            json!({"base_version": 1, "title": "Stale"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "conflict");
    assert_eq!(r.body["current"]["version"], 2);
    assert_eq!(r.body["current"]["body"], "Read *Hamlet* twice");
    // Another reader sees nothing of it.
    other
        .api
        .get(&format!("/v1/notes/{id}"))
        .await
        .assert_error(404, "not_found");
    other
        .api
        .patch(&format!("/v1/notes/{id}"), json!({"title": "x"}))
        .await
        .assert_error(404, "not_found");
    assert!(
        other.api.get("/v1/notes").await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Bad fields are named.
    for (body, field) in [
        (json!({"title": 5}), "title"),
        (json!({"colour": "red"}), "colour"),
        (json!({"body": "x".repeat(300 * 1024)}), "body"),
        (json!({"id": "not-a-uuid"}), "id"),
        (json!({"book_id": other.book}), "book"),
    ] {
        let r = me.api.post("/v1/notes", body.clone()).await;
        assert!(r.status == 400 || r.status == 404, "{body}: {}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{body}: {msg}");
    }

    // The app's first pull: everything, paged, with a checkpoint.
    let (first, checkpoint) = pull_all(&me.api, "/v1/notes", "0").await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["version"], 2);

    // Offline, the app made two notes (its own ids) and edited the server's on version 2;
    // meanwhile another device edited that one. The push: two applied, one conflict.
    let (a, b) = (uuid(), uuid());
    me.api
        .patch(
            &format!("/v1/notes/{id}"),
            json!({"base_version": 2, "title": "Edited on the phone"}),
        )
        .await;
    let push = json!({"changes": [
        {"id": a, "base_version": 0, "title": "Offline one", "body": ""},
        {"id": b, "title": "Offline two", "body": "no base: new"},
        {"id": id, "base_version": 2, "title": "Edited on the laptop", "body": "laptop"},
    ]});
    let r = me.api.post("/v1/notes/push", push.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "applied", "{}", r.body);
    assert_eq!(results[0]["document"]["id"], a.as_str());
    assert_eq!(results[1]["status"], "applied");
    assert_eq!(results[2]["status"], "conflict");
    assert_eq!(results[2]["current"]["title"], "Edited on the phone");
    assert_eq!(results[2]["current"]["version"], 3);
    // Pushed again as is (a retry): the two creates are now conflicts with themselves,
    // nothing is written twice.
    let r = me.api.post("/v1/notes/push", push).await;
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "conflict");
    assert_eq!(results[0]["current"]["version"], 1);
    // The app merges and pushes on version 3: applied.
    let r = me
        .api
        .post(
            "/v1/notes/push",
            json!({"changes": [{"id": id, "base_version": 3, "title": "Merged", "body": "both"}]}),
        )
        .await;
    assert_eq!(r.body["results"][0]["status"], "applied", "{}", r.body);
    // A deletion pushed, and one by REST on a stale version refused.
    let r = me
        .api
        .post(
            "/v1/notes/push",
            json!({"changes": [{"id": b, "base_version": 1, "deleted": true}]}),
        )
        .await;
    assert_eq!(r.body["results"][0]["document"]["deleted"], true);
    let r = me
        .api
        .delete(&format!("/v1/notes/{a}?base_version=7"))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    // The next pull from the old checkpoint: every change since, the deletion included,
    // each document once, at its latest.
    let (since, next) = pull_all(&me.api, "/v1/notes", &checkpoint).await;
    let ids: Vec<&str> = since.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{since:?}");
    for want in [a.as_str(), b.as_str(), id.as_str()] {
        assert!(ids.contains(&want), "{want} in {ids:?}");
    }
    let gone = since.iter().find(|d| d["id"] == b.as_str()).unwrap();
    assert_eq!(gone["deleted"], true);
    // The list has no deletions; a pull from the newest checkpoint has nothing.
    let list = me.api.get("/v1/notes").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    let (none, same) = pull_all(&me.api, "/v1/notes", &next).await;
    assert!(none.is_empty());
    assert_eq!(same, next);
    me.api
        .get(&format!("/v1/notes/{b}"))
        .await
        .assert_error(404, "not_found");
    me.api
        .get("/v1/notes?since=abc")
        .await
        .assert_error(400, "bad_request");

    // Todos: the same protocol; a title is required; done and due dates.
    let r = me
        .api
        .post(
            "/v1/todos",
            json!({"title": "Finish act 3", "due_at": "2026-12-24T18:00:00Z", "book_id": me.book}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let todo = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["done"], false);
    let r = me
        .api
        .patch(&format!("/v1/todos/{todo}"), json!({"done": true}))
        .await;
    assert_eq!(r.body["done"], true);
    // Live: the creation, then the change.
    assert_eq!(
        frame_of(&mut ws, "todo_changed").await["document"]["done"],
        false
    );
    assert_eq!(
        frame_of(&mut ws, "todo_changed").await["document"]["done"],
        true
    );
    me.api
        .post("/v1/todos", json!({"title": " "}))
        .await
        .assert_error(400, "bad_request");
    // A note's id is not a todo's.
    me.api
        .get(&format!("/v1/todos/{id}"))
        .await
        .assert_error(404, "not_found");
    let r = me
        .api
        .post(
            "/v1/todos/push",
            json!({"changes": [{"id": id, "title": "clash"}]}),
        )
        .await;
    assert_eq!(
        r.body["results"][0]["error"]["code"], "conflict",
        "{}",
        r.body
    );
}

fn uuid() -> String {
    dogear_e2e::event_id()
}

async fn upload(api: &Api, file: &str) -> String {
    let bytes = std::fs::read(fixtures().join("books/good").join(file)).unwrap();
    let r = api.upload(bytes, file, None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let job = api.wait_job(r.body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    job["book_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn annotations_from_the_kobo_and_the_web_meet() {
    let server = Server::start();
    let me = Reader::new(&server, "docs_kobo").await;
    let book = upload(&me.api, "devils-dictionary.epub").await;
    let (mut ws, _) = Socket::connect(&server, me.token(), &me.device).await;

    // A Kobo connected: Dogear's auth hands it its token as the access token, which it
    // then sends to the reading services at the root.
    let k = me
        .api
        .post("/v1/kobo/tokens", json!({"device_name": "Libra"}))
        .await;
    let endpoint = k.body["api_endpoint"].as_str().unwrap().to_string();
    let token = k.body["token"].as_str().unwrap().to_string();
    let kobo = dogear_e2e::kobo::Kobo::new(&endpoint);
    let auth = kobo
        .call(
            "POST",
            &format!("{endpoint}/v1/auth/device"),
            Some(json!({"UserKey": "k"})),
        )
        .await;
    assert_eq!(auth.body["AccessToken"], token.as_str());
    let services = server.client().with_token(&token);
    let path = format!("/api/v3/content/{book}/annotations");

    // The Kobo's highlight with a note arrives: on the socket and in the REST list.
    let kobo_id = "0e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a7b";
    let span = json!({
        "chapterFilename": "OEBPS/chapter1.xhtml", "chapterProgress": 0.5,
        "chapterTitle": "A", "startPath": "span#kobo\\.4\\.1", "startChar": 0,
        "endPath": "span#kobo\\.4\\.3", "endChar": 12
    });
    let r = services
        .send(
            "PATCH",
            &path,
            Some(
                &json!({"updatedAnnotations": [{
                    "id": kobo_id, "type": "note", "highlightColor": "yellow",
                    "highlightedText": "ABSENT, adj. Peculiarly exposed",
                    "noteText": "So true",
                    "clientLastModifiedUtc": "2026-12-03T07:00:00Z",
                    "location": {"span": span}
                }], "deletedAnnotationIds": []})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let live = frame_of(&mut ws, "annotation_changed").await;
    assert_eq!(live["document"]["id"], kobo_id);
    assert_eq!(live["document"]["text"], "ABSENT, adj. Peculiarly exposed");
    let list = me.api.get(&format!("/v1/books/{book}/annotations")).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["kind"], "note");
    assert_eq!(items[0]["note"], "So true");
    assert_eq!(items[0]["colour"], "yellow");
    assert_eq!(
        items[0]["locator"]["kobo"]["start_path"],
        "span#kobo\\.4\\.1"
    );

    // A highlight made on the web (a CFI and its percentage) reaches the Kobo on a span of
    // the KEPUB it holds; the Kobo's own comes back exactly as it sent it.
    let r = me
        .api
        .post(
            &format!("/v1/books/{book}/annotations"),
            json!({"kind": "highlight", "colour": "blue", "text": "BORE, n. A person who talks",
                   "locator": {"cfi": "epubcfi(/6/14!/4/2/1:0)", "percent": 40}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let web = r.body["id"].as_str().unwrap().to_string();
    let back = services.get(&path).await;
    assert_eq!(back.status, 200, "{}", back.body);
    let list = back.body["annotations"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", back.body);
    let own = list.iter().find(|a| a["id"] == kobo_id).unwrap();
    assert_eq!(own["location"]["span"], span);
    assert_eq!(own["noteText"], "So true");
    let theirs = list.iter().find(|a| a["id"] == web.as_str()).unwrap();
    assert_eq!(theirs["type"], "highlight");
    assert_eq!(theirs["highlightedText"], "BORE, n. A person who talks");
    let start = theirs["location"]["span"]["startPath"].as_str().unwrap();
    assert!(start.starts_with("span#kobo\\."), "{theirs}");
    assert!(
        theirs["location"]["span"]["chapterFilename"]
            .as_str()
            .unwrap()
            .ends_with("html"),
        "{theirs}"
    );

    // Deleted on the Kobo: gone from the list, a tombstone in the pull.
    let r = services
        .send(
            "PATCH",
            &path,
            Some(&json!({"updatedAnnotations": [], "deletedAnnotationIds": [kobo_id]}).to_string()),
        )
        .await;
    assert_eq!(r.status, 204);
    let list = me.api.get(&format!("/v1/books/{book}/annotations")).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let pulled = me.api.get("/v1/annotations?since=0").await;
    let tomb = pulled.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == kobo_id)
        .cloned()
        .unwrap();
    assert_eq!(tomb["deleted"], true);
    // A device still on Kobo's own access token is nobody: nothing stored, nothing read.
    let stranger = server.client().with_token("a-token-from-kobo-itself");
    assert_eq!(
        stranger.get(&path).await.body["annotations"],
        json!([]),
        "nobody's annotations"
    );

    // Edit and delete on the web; export as Markdown and JSON.
    let r = me
        .api
        .patch(
            &format!("/v1/annotations/{web}"),
            json!({"note": "Ha", "base_version": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    me.api
        .post(
            &format!("/v1/books/{book}/annotations"),
            json!({"kind": "bookmark", "locator": {"percent": 80}, "chapter": "C"}),
        )
        .await;
    me.api
        .post(
            &format!("/v1/books/{book}/annotations"),
            json!({"kind": "highlight", "locator": {}}),
        )
        .await
        .assert_error(400, "bad_request");
    let md = me
        .api
        .get(&format!("/v1/books/{book}/annotations/export?format=md"))
        .await;
    assert_eq!(md.status, 200);
    let text = md.body.as_str().unwrap();
    assert!(text.starts_with("# "), "{text}");
    assert!(text.contains("> BORE, n. A person who talks"), "{text}");
    assert!(text.contains("\nHa\n"), "{text}");
    assert!(text.contains("## C"), "{text}");
    assert!(
        text.find("BORE").unwrap() < text.find("## C").unwrap(),
        "in reading order"
    );
    let js = me
        .api
        .get(&format!("/v1/books/{book}/annotations/export?format=json"))
        .await;
    assert_eq!(js.body["annotations"].as_array().unwrap().len(), 2);
    me.api
        .get(&format!("/v1/books/{book}/annotations/export?format=pdf"))
        .await
        .assert_error(400, "bad_request");
    let r = me.api.delete(&format!("/v1/annotations/{web}")).await;
    assert_eq!(r.status, 204);
    // Another reader cannot list or export a book they cannot read.
    let other = Reader::new(&server, "docs_kobo_other").await;
    other
        .api
        .get(&format!("/v1/books/{book}/annotations"))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_written_on_one_node_reaches_a_socket_on_another() {
    let (c, _plan) = Nodes::start(2).await;
    let me = Reader::new(&c.nodes[0], "docs_cluster").await;
    let (mut ws, _) = Socket::connect(&c.nodes[1], me.token(), &me.device).await;
    for i in 0..2 {
        let api = Api {
            base: c.nodes[i].base.clone(),
            ..me.api.clone()
        };
        let r = api
            .post("/v1/notes", json!({"title": format!("from node {i}")}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let f = frame_of(&mut ws, "note_changed").await;
        assert_eq!(f["document"]["title"], format!("from node {i}"));
    }
    let (all, _) = pull_all(
        &Api {
            base: c.nodes[1].base.clone(),
            ..me.api.clone()
        },
        "/v1/notes",
        "0",
    )
    .await;
    assert_eq!(all.len(), 2);
}
