//! KOReader's progress sync played over real HTTP against a real `dogear`, by a client
//! written to `docs/protocols/kosync.md`: the stock plugin's headers, the MD5 key, its
//! bodies and the statuses it accepts. Logins made in Dogear, the one progress shared with
//! REST, WebSocket and Kobo, digests of every stored file, unknown digests between two
//! KOReaders, positions attached to a book imported later, and the reference's errors.

use dogear_e2e::kobo::Kobo;
use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Api, Reader, Resp, Server, Socket, eventually, fixtures, zip_entries};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::time::Duration;

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// KOReader's "Progress sync": the custom server URL as typed, and the login.
#[derive(Clone)]
struct Koreader {
    http: reqwest::Client,
    base: String,
    user: String,
    key: String,
}

impl Koreader {
    fn new(base: &str, user: &str, password: &str) -> Koreader {
        Koreader {
            http: dogear_e2e::http_client(),
            base: base.to_string(),
            user: user.to_string(),
            key: md5_hex(password),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&str>, auth: bool) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/vnd.koreader.v1+json");
        if auth {
            rb = rb
                .header("x-auth-user", &self.user)
                .header("x-auth-key", &self.key);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = Resp::of(rb.send().await.expect("kosync request")).await;
        // The client decodes a body only under exactly this media type, and every answer
        // is a JSON object.
        assert_eq!(
            r.headers["content-type"],
            "application/json",
            "{method_path}",
            method_path = path
        );
        assert!(r.body.is_object(), "{path}: {}", r.body);
        r
    }

    async fn auth(&self) -> Resp {
        self.call("GET", "/users/auth", None, true).await
    }

    async fn push(&self, document: &str, progress: &str, percentage: f64) -> Resp {
        let body = json!({
            "document": document,
            "progress": progress,
            "percentage": percentage,
            "device": "PocketBook Era",
            "device_id": "3F8A0C21D9E44B7A8C55E1F0A2B3C4D5",
        });
        self.call("PUT", "/syncs/progress", Some(&body.to_string()), true)
            .await
    }

    async fn pull(&self, document: &str) -> Resp {
        let r = self
            .call("GET", &format!("/syncs/progress/{document}"), None, true)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r
    }
}

/// A KOReader login made in Dogear, signed in as KOReader would.
async fn new_login(api: &Api, name: &str) -> (Koreader, String) {
    let r = api
        .post("/v1/koreader/credentials", json!({"device_name": name}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let url = r.body["sync_url"].as_str().unwrap();
    assert!(url.ends_with("/koreader"), "{url}");
    let k = Koreader::new(
        url,
        r.body["username"].as_str().unwrap(),
        r.body["password"].as_str().unwrap(),
    );
    (k, r.body["device_id"].as_str().unwrap().to_string())
}

fn good(file: &str) -> Value {
    dogear_e2e::expected()["good"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["file"].as_str().unwrap().ends_with(file))
        .unwrap_or_else(|| panic!("{file} in expected.json"))
        .clone()
}

async fn upload(me: &Reader, file: &str) -> String {
    let bytes = std::fs::read(fixtures().join("books/good").join(file)).unwrap();
    let r = me.api.upload(bytes, file, None).await;
    assert_eq!(r.status, 202, "{file}: {}", r.body);
    let job = me.api.wait_job(r.body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{file}: {job}");
    job["book_id"].as_str().unwrap().to_string()
}

async fn percent(me: &Reader, book: &str) -> Option<f64> {
    me.api.get(&format!("/v1/books/{book}/progress")).await.body["state"]["percent"].as_f64()
}

/// The spine of an EPUB (zip entries by name): its documents' paths in reading order.
fn spine_of(zip: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let container = String::from_utf8_lossy(&zip["META-INF/container.xml"]).to_string();
    let opf_path = container
        .split("full-path=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let dir = opf_path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
    let opf = String::from_utf8_lossy(&zip[&opf_path]).to_string();
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!(" {name}=\"");
        tag.split(&key)
            .nth(1)?
            .split('"')
            .next()
            .map(str::to_string)
    };
    let mut hrefs = BTreeMap::new();
    for tag in opf.split("<item ").skip(1) {
        let tag = tag.split('>').next().unwrap();
        if let (Some(id), Some(href)) = (
            attr(&format!(" {tag}"), "id"),
            attr(&format!(" {tag}"), "href"),
        ) {
            let path = if dir.is_empty() {
                href
            } else {
                format!("{dir}/{href}")
            };
            hrefs.insert(id, path);
        }
    }
    opf.split("<itemref ")
        .skip(1)
        .filter_map(|tag| attr(&format!(" {}", tag.split('>').next().unwrap()), "idref"))
        .filter_map(|id| hrefs.get(&id).cloned())
        .collect()
}

/// A login is made in Dogear, shown once, listed, checked like the reference server does
/// (any prefix form, no `Accept` needed, the same 401 for every failure), and revoked.
#[tokio::test]
async fn a_login_is_made_listed_checked_and_revoked() {
    let server = Server::start();
    let me = Reader::new(&server, "kosyncer").await;
    let (k, device) = new_login(&me.api, "PocketBook Era").await;
    assert!(k.user.starts_with("kosyncer-"), "{}", k.user);
    let ok = k.auth().await;
    assert_eq!((ok.status, &ok.body), (200, &json!({"authorized": "OK"})));
    let list = me.api.get("/v1/koreader/credentials").await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["username"], k.user.as_str());
    assert_eq!(items[0]["device_id"], device.as_str());
    assert!(items[0].get("password").is_none());
    let devices = me.api.get("/v1/devices").await;
    assert!(
        devices.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == device.as_str() && d["kind"] == "koreader"),
        "{}",
        devices.body
    );
    // The URL as people type it: a trailing slash, a doubled slash, no Accept header.
    for base in [
        format!("{}/", k.base),
        k.base.replace("/koreader", "//koreader/"),
    ] {
        let typed = Koreader { base, ..k.clone() };
        assert_eq!(typed.auth().await.status, 200);
    }
    let bare = k
        .http
        .get(format!("{}/users/auth", k.base))
        .header("x-auth-user", &k.user)
        .header("x-auth-key", &k.key)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 200);
    // The upper-case hex of the same key is the same key.
    let upper = Koreader {
        key: k.key.to_ascii_uppercase(),
        ..k.clone()
    };
    assert_eq!(upper.auth().await.status, 200);
    // A wrong key, an unknown user and a missing header: the same 401.
    let unauthorized = json!({"code": 2001, "message": "Unauthorized"});
    let wrong = Koreader {
        key: md5_hex("not it"),
        ..k.clone()
    };
    let nobody = Koreader {
        user: "nobody-at-all".into(),
        ..k.clone()
    };
    for r in [
        wrong.auth().await,
        nobody.auth().await,
        k.call("GET", "/users/auth", None, false).await,
    ] {
        assert_eq!((r.status, &r.body), (401, &unauthorized));
    }
    assert_eq!(
        k.call("GET", "/healthcheck", None, false).await.body,
        json!({"state": "OK"})
    );
    let lost = k.call("GET", "/no/such/call", None, true).await;
    assert_eq!(lost.status, 404);
    // Revoked: refused at once, though the node had the sign-in cached.
    let gone = me
        .api
        .delete(&format!("/v1/koreader/credentials/{device}"))
        .await;
    assert_eq!(gone.status, 204);
    assert_eq!(k.auth().await.status, 401);
    let again = me
        .api
        .delete(&format!("/v1/koreader/credentials/{device}"))
        .await;
    again.assert_error(404, "not_found");
    let bad = me
        .api
        .post("/v1/koreader/credentials", json!({"device_name": ""}))
        .await;
    assert!(bad.assert_error(400, "bad_request").contains("device_name"));
}

/// Failed sign-ins count like password logins: after the budget, even the right key waits,
/// and sign-in says how long.
#[tokio::test]
async fn wrong_keys_are_rate_limited_like_logins() {
    let server = Server::start();
    let me = Reader::new(&server, "guessed").await;
    let (k, _) = new_login(&me.api, "Kindle").await;
    let wrong = Koreader {
        key: md5_hex("guess"),
        ..k.clone()
    };
    let mut limited = None;
    for _ in 0..30 {
        let r = wrong.auth().await;
        assert_eq!(r.status, 401, "{}", r.body);
        if r.body["message"].as_str().unwrap().starts_with("Too many") {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("sign-in limited after repeated failures");
    assert!(limited.headers.contains_key("retry-after"));
    let right = k.auth().await;
    assert_eq!(right.status, 401, "the budget holds for the right key too");
    let push = k.push("0123456789abcdef0123456789abcdef", "5", 0.1).await;
    assert_eq!(push.status, 429, "{}", push.body);
}

/// Registration answers as the reference server's does when it is off, and, when the
/// operator turns it on, makes an account KOReader signs in to at once.
#[tokio::test]
async fn register_answers_like_the_reference_server() {
    let server = Server::start();
    let anon = Koreader::new(&format!("{}/koreader", server.base), "newbie", "pw");
    let create = |u: &str| json!({"username": u, "password": md5_hex("secret")}).to_string();
    let r = anon
        .call("POST", "/users/create", Some(&create("newbie")), false)
        .await;
    assert_eq!(r.status, 402, "{}", r.body);
    assert_eq!(r.body["code"], 2005);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("KOReader login")
    );
    let r = anon
        .call("POST", "/users/create", Some(&create("")), false)
        .await;
    assert_eq!((r.status, &r.body["code"]), (403, &json!(2003)));
    let r = anon
        .call("POST", "/users/create", Some("{oops"), false)
        .await;
    assert_eq!((r.status, &r.body["code"]), (400, &json!(103)));
    let r = anon.call("POST", "/users/create", Some("[1]"), false).await;
    assert_eq!((r.status, &r.body["code"]), (400, &json!(104)));

    let open = Server::start_with(&[("DOGEAR_KOREADER__REGISTRATION", "true")]);
    let k = Koreader::new(&format!("{}/koreader", open.base), "newbie", "secret");
    let r = k
        .call("POST", "/users/create", Some(&create("newbie")), false)
        .await;
    assert_eq!((r.status, &r.body), (201, &json!({"username": "newbie"})));
    assert_eq!(k.auth().await.status, 200);
    let r = k
        .call("POST", "/users/create", Some(&create("newbie")), false)
        .await;
    assert_eq!((r.status, &r.body["code"]), (402, &json!(2002)));
}

/// The partial MD5 of every fixture, as KOReader computes it, names its book: a position
/// pushed under it is the book's progress.
#[tokio::test]
async fn every_fixture_is_known_by_its_koreader_digest() {
    let server = Server::start();
    let me = Reader::new(&server, "digests").await;
    let (k, _) = new_login(&me.api, "Kobo with KOReader").await;
    let exp = dogear_e2e::expected();
    let mut seen = 0;
    for g in exp["good"].as_array().unwrap() {
        let file = g["file"].as_str().unwrap();
        let digest = g["koreader_partial_md5"].as_str().unwrap();
        let name = file.rsplit('/').next().unwrap();
        let book = upload(&me, name).await;
        let r = k.push(digest, "/body/DocFragment[2].0", 0.3).await;
        assert_eq!(r.status, 200, "{file}: {}", r.body);
        assert_eq!(percent(&me, &book).await, Some(30.0), "{file}");
        seen += 1;
    }
    assert!(seen >= 3);
}

/// A KOReader push is the one progress: live on a WebSocket, in the REST API, at a Kobo's
/// next sync; it comes back to KOReader exactly; replays and backward pushes answer 200
/// and change nothing.
#[tokio::test]
async fn a_koreader_position_is_the_books_progress_everywhere() {
    let server = Server::start();
    let me = Reader::new(&server, "everywhere").await;
    let hamlet = upload(&me, "hamlet.epub").await;
    let digest = good("hamlet.epub")["koreader_partial_md5"]
        .as_str()
        .unwrap()
        .to_string();
    let (k, kdevice) = new_login(&me.api, "PocketBook Era").await;
    let t = me
        .api
        .post("/v1/kobo/tokens", json!({"device_name": "Libra"}))
        .await;
    let mut kobo = Kobo::new(t.body["api_endpoint"].as_str().unwrap());
    kobo.sync_all().await;
    let web = me.add_device("web").await;
    let (mut ws, _) = Socket::connect(&server, me.token(), &web).await;

    let xp = "/body/DocFragment[4]/body/div/p[7]/text().12";
    let r = k.push(&digest, xp, 0.4213).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["document"], digest.as_str());
    let ts = r.body["timestamp"].as_i64().expect("timestamp in seconds");
    assert!((ts - now_secs()).abs() < 60, "{ts}");
    let pushed = ws
        .next_json_within(Duration::from_secs(10))
        .await
        .expect("a push on the web socket");
    assert_eq!(pushed["state"]["book_id"], hamlet.as_str());
    assert_eq!(pushed["state"]["percent"], 42.13);
    assert_eq!(pushed["state"]["device_id"], kdevice.as_str());
    assert_eq!(percent(&me, &hamlet).await, Some(42.13));
    let (items, _) = kobo.sync_page().await;
    let rs = items
        .iter()
        .find_map(|i| i.get("ChangedReadingState"))
        .expect("the Kobo gets the KOReader position");
    assert_eq!(rs["ReadingState"]["EntitlementId"], hamlet.as_str());
    assert_eq!(
        rs["ReadingState"]["CurrentBookmark"]["ProgressPercent"].as_f64(),
        Some(42.13)
    );
    // Back to KOReader as it wrote it.
    let got = k.pull(&digest).await;
    assert_eq!(got.body["percentage"], 0.4213);
    assert_eq!(got.body["progress"], xp);
    assert_eq!(got.body["device"], "PocketBook Era");
    assert_eq!(got.body["device_id"], "3F8A0C21D9E44B7A8C55E1F0A2B3C4D5");
    assert_eq!(got.body["timestamp"], ts);
    // KOReader's offline queue replays the same body later, and an older one: 200, and
    // nothing moves.
    let before = me.api.get(&format!("/v1/books/{hamlet}/progress")).await;
    assert_eq!(k.push(&digest, xp, 0.4213).await.status, 200);
    assert_eq!(
        k.push(&digest, "/body/DocFragment[2].0", 0.1).await.status,
        200
    );
    let after = me.api.get(&format!("/v1/books/{hamlet}/progress")).await;
    assert_eq!(before.body["state"], after.body["state"]);
    assert!(
        ws.next_json_within(Duration::from_millis(500))
            .await
            .is_none(),
        "no push for writes that change nothing"
    );
    // The reader's record of the book followed: reading, then finished at KOReader's end.
    let mine = |me: &Reader| {
        let (api, path) = (me.api.clone(), format!("/v1/books/{hamlet}/mine"));
        async move { api.get(&path).await.body }
    };
    assert_eq!(mine(&me).await["status"], "reading");
    assert_eq!(k.push(&digest, xp, 1.0).await.status, 200);
    let m = mine(&me).await;
    assert_eq!(m["status"], "finished", "{m}");
    assert_eq!(m["status_source"], "progress");
    // Another reader's KOReader sees nothing of it.
    let other = Reader::new(&server, "stranger").await;
    let (ko, _) = new_login(&other.api, "Stranger's Kindle").await;
    assert_eq!(ko.pull(&digest).await.body, json!({}));
}

/// Positions from the web and from a Kobo reach KOReader as XPointers inside the right
/// spine document, with the writer's device named.
#[tokio::test]
async fn web_and_kobo_positions_come_back_as_xpointers() {
    let server = Server::start();
    let me = Reader::new(&server, "xpointers").await;
    let hamlet = upload(&me, "hamlet.epub").await;
    let digest = good("hamlet.epub")["koreader_partial_md5"]
        .as_str()
        .unwrap()
        .to_string();
    let spine_len = good("hamlet.epub")["spine_items"].as_u64().unwrap() as usize;
    let (k, _) = new_login(&me.api, "PocketBook").await;
    let web = me.add_device("web").await;
    let fragment = |v: &Value| -> usize {
        let p = v["progress"].as_str().unwrap();
        let n = p
            .strip_prefix("/body/DocFragment[")
            .and_then(|r| r.strip_suffix("].0"))
            .unwrap_or_else(|| panic!("not a spine start: {p}"));
        n.parse().unwrap()
    };
    let now_ms = (now_secs() * 1000) - 1_767_225_600_000;
    let mut last = 0;
    let mut firsts = Vec::new();
    for (i, pct) in [2.0, 50.0, 99.0].into_iter().enumerate() {
        let w = me
            .write(&hamlet, dogear_e2e::progress(&web, pct, now_ms + i as i64))
            .await;
        assert_eq!(w.status, 200, "{}", w.body);
        let got = k.pull(&digest).await;
        assert_eq!(got.body["percentage"].as_f64(), Some(pct / 100.0));
        assert_eq!(got.body["device"], "web");
        let n = fragment(&got.body);
        assert!((1..=spine_len).contains(&n), "{n} of {spine_len}");
        assert!(n >= last, "{pct}%: DocFragment[{n}] before [{last}]");
        last = n;
        firsts.push(n);
    }
    assert!(firsts[0] < firsts[2], "{firsts:?}");

    // A Kobo's position names its document: KOReader gets that very spine item.
    let t = me
        .api
        .post("/v1/kobo/tokens", json!({"device_name": "Libra"}))
        .await;
    let endpoint = t.body["api_endpoint"].as_str().unwrap().to_string();
    let mut kobo = Kobo::new(&endpoint);
    kobo.sync_all().await;
    let meta = kobo.get(&format!("/v1/library/{hamlet}/metadata")).await;
    let url = meta.body[0]["DownloadUrls"][0]["Url"].as_str().unwrap();
    let zip = zip_entries(
        &kobo
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    );
    let spine = spine_of(&zip);
    assert_eq!(spine.len(), spine_len);
    let target = spine.len() - 1; // the last spine document, 1-based index = len
    let source = &spine[target];
    let doc = String::from_utf8_lossy(&zip[source]).to_string();
    let span = doc
        .split("id=\"kobo.")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(|s| format!("kobo.{s}"))
        .expect("a span in the last document");
    let raw = std::fs::read_to_string(fixtures().join(
        "captures/calibre-web-0.6.27/small.kobo.v1.library.UUID.state.PUT.request-body.json",
    ))
    .unwrap();
    let mut put: Value = serde_json::from_str(&raw).unwrap();
    let stamp = "2099-01-01T00:00:00Z";
    let rs = &mut put["ReadingStates"][0];
    rs["EntitlementId"] = json!(hamlet);
    rs["LastModified"] = json!(stamp);
    rs["PriorityTimestamp"] = json!(stamp);
    rs["CurrentBookmark"]["ProgressPercent"] = json!(99.5);
    rs["CurrentBookmark"]["LastModified"] = json!(stamp);
    rs["CurrentBookmark"]["Location"] =
        json!({"Value": span, "Type": "KoboSpan", "Source": source});
    let r = kobo
        .call(
            "PUT",
            &format!("{endpoint}/v1/library/{hamlet}/state"),
            Some(put),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = k.pull(&digest).await;
    assert_eq!(got.body["device"], "Libra");
    assert_eq!(fragment(&got.body), target + 1, "{}", got.body);
    assert_eq!(
        got.body["device_id"].as_str().unwrap().len(),
        32,
        "{}",
        got.body
    );
}

/// Positions of PDFs and comics from the web reach KOReader as page numbers.
#[tokio::test]
async fn pdf_and_comic_positions_come_back_as_pages() {
    let server = Server::start();
    let me = Reader::new(&server, "pdfreader").await;
    let (k, _) = new_login(&me.api, "Kindle").await;
    let web = me.add_device("web").await;
    for format in ["pdf", "cbz"] {
        let g = dogear_e2e::expected()["good"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["format"] == format)
            .expect("a fixture of the format")
            .clone();
        let file = g["file"].as_str().unwrap().rsplit('/').next().unwrap();
        let pages = g["pages"].as_u64().unwrap();
        let book = upload(&me, file).await;
        let digest = g["koreader_partial_md5"].as_str().unwrap();
        let w = me
            .write(
                &book,
                dogear_e2e::progress(&web, 50.0, now_secs() * 1000 - 1_767_225_600_000),
            )
            .await;
        assert_eq!(w.status, 200, "{}", w.body);
        let got = k.pull(digest).await;
        assert_eq!(
            got.body["progress"],
            pages.div_ceil(2).to_string(),
            "{file} of {pages} pages at 50 %: {}",
            got.body
        );
        // KOReader's own page comes back as it wrote it, as a string (it sent a number,
        // as KOReaders before 2022 did).
        let body =
            json!({"document": digest, "progress": 2, "percentage": 0.9, "device": "Kindle"});
        let r = k
            .call("PUT", "/syncs/progress", Some(&body.to_string()), true)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(k.pull(digest).await.body["progress"], "2");
    }
}

/// A book Dogear does not hold still syncs between two KOReaders of a reader; when a file
/// with that digest is imported later, the position becomes the book's.
#[tokio::test]
async fn unknown_digests_sync_between_koreaders_and_attach_later() {
    let server = Server::start();
    let me = Reader::new(&server, "sideloader").await;
    let (a, _) = new_login(&me.api, "KOReader phone").await;
    let (b, _) = new_login(&me.api, "KOReader e-reader").await;
    let unknown = "0123456789abcdef0123456789abcdef";
    let none = b.pull(unknown).await;
    assert_eq!(none.body, json!({}), "no percentage without a position");
    let r = a.push(unknown, "/body/DocFragment[3].0", 0.25).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = b.pull(unknown).await;
    assert_eq!(got.body["percentage"], 0.25);
    assert_eq!(got.body["progress"], "/body/DocFragment[3].0");
    assert_eq!(got.body["device"], "PocketBook Era");
    // Forward only, and 200 for the ignored write.
    assert_eq!(
        a.push(unknown, "/body/DocFragment[1].0", 0.1).await.status,
        200
    );
    assert_eq!(b.pull(unknown).await.body["percentage"], 0.25);
    // Macbeth read before it was in the library: imported, the position is its progress.
    let digest = good("macbeth.epub")["koreader_partial_md5"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        a.push(&digest, "/body/DocFragment[2].0", 0.4).await.status,
        200
    );
    let book = upload(&me, "macbeth.epub").await;
    eventually(
        10,
        "the earlier KOReader position on the imported book",
        || {
            let (me, book) = (&me, &book);
            async move { (percent(me, book).await == Some(40.0)).then_some(()) }
        },
    )
    .await;
}

/// Bodies KOReader's server refuses get the reference's codes, as JSON, and store nothing.
#[tokio::test]
async fn bad_bodies_get_the_reference_errors() {
    let server = Server::start();
    let me = Reader::new(&server, "careless").await;
    let (k, _) = new_login(&me.api, "Kindle").await;
    let doc = "0123456789abcdef0123456789abcdef";
    let put = |v: Value| {
        let k = k.clone();
        async move {
            k.call("PUT", "/syncs/progress", Some(&v.to_string()), true)
                .await
        }
    };
    let cases = [
        (
            json!({"progress": "1", "percentage": 0.1, "device": "d"}),
            403,
            2004,
        ),
        (
            json!({"document": "", "progress": "1", "percentage": 0.1, "device": "d"}),
            403,
            2004,
        ),
        (
            json!({"document": "a:b", "progress": "1", "percentage": 0.1, "device": "d"}),
            403,
            2004,
        ),
        (
            json!({"document": doc, "progress": "1", "device": "d"}),
            403,
            2003,
        ),
        (
            json!({"document": doc, "progress": "1", "percentage": "lots", "device": "d"}),
            403,
            2003,
        ),
        (
            json!({"document": doc, "percentage": 0.1, "device": "d"}),
            403,
            2003,
        ),
        (
            json!({"document": doc, "progress": "1", "percentage": 0.1}),
            403,
            2003,
        ),
    ];
    for (body, status, code) in cases {
        let r = put(body.clone()).await;
        assert_eq!(
            (r.status, &r.body["code"]),
            (status, &json!(code)),
            "{body}"
        );
    }
    let r = k
        .call("PUT", "/syncs/progress", Some("not json"), true)
        .await;
    assert_eq!((r.status, &r.body["code"]), (400, &json!(103)));
    let r = k.call("PUT", "/syncs/progress", Some("[]"), true).await;
    assert_eq!((r.status, &r.body["code"]), (400, &json!(104)));
    let r = k.call("GET", "/syncs/progress/a%3Ab", None, true).await;
    assert_eq!((r.status, &r.body["code"]), (403, &json!(2004)));
    assert_eq!(k.pull(doc).await.body, json!({}), "nothing was stored");
    // A percentage given as a numeric string converts, as on the reference server.
    let r =
        put(json!({"document": doc, "progress": "7", "percentage": "0.5", "device": "d"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(k.pull(doc).await.body["percentage"], 0.5);
}

/// Through two nodes of a cluster (PostgreSQL, S3, Redis): a KOReader push on one node is
/// live on a socket of the other and read back there; a web position written on the other
/// reaches KOReader inside the right document (the file is read from S3); a login revoked
/// on one node is refused on the other at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koreader_through_two_nodes() {
    let (c, _plan) = dogear_e2e::cluster::Nodes::start(2).await;
    let me = Reader::new(&c.nodes[0], "clusterko").await;
    let hamlet = upload(&me, "hamlet.epub").await;
    let digest = good("hamlet.epub")["koreader_partial_md5"]
        .as_str()
        .unwrap()
        .to_string();
    let (k0, device) = new_login(&me.api, "PocketBook").await;
    let k1 = Koreader {
        base: format!("{}/koreader", c.nodes[1].base),
        ..k0.clone()
    };
    let web = me.add_device("web").await;
    let (mut ws, _) = Socket::connect(&c.nodes[1], me.token(), &web).await;
    let xp = "/body/DocFragment[3]/body/p[4]/text().9";
    assert_eq!(k0.push(&digest, xp, 0.33).await.status, 200);
    let pushed = ws
        .next_json_within(Duration::from_secs(10))
        .await
        .expect("a push on the other node's socket");
    assert_eq!(pushed["state"]["book_id"], hamlet.as_str());
    assert_eq!(pushed["state"]["percent"], 33.0);
    assert_eq!(k1.pull(&digest).await.body["progress"], xp);

    let api1 = Api {
        base: c.nodes[1].base.clone(),
        ..me.api.clone()
    };
    let w = api1
        .post(
            &format!("/v1/books/{hamlet}/progress"),
            dogear_e2e::progress(&web, 99.0, now_secs() * 1000 - 1_767_225_600_000),
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    let got = k0.pull(&digest).await;
    assert_eq!(got.body["percentage"], 0.99);
    let spine_len = good("hamlet.epub")["spine_items"].as_u64().unwrap();
    let n: u64 = got.body["progress"]
        .as_str()
        .and_then(|p| p.strip_prefix("/body/DocFragment["))
        .and_then(|p| p.strip_suffix("].0"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a spine start: {}", got.body));
    assert!(n > 1 && n <= spine_len, "{n} of {spine_len}");

    assert_eq!(k1.auth().await.status, 200);
    let gone = api1
        .delete(&format!("/v1/koreader/credentials/{device}"))
        .await;
    assert_eq!(gone.status, 204);
    for k in [&k0, &k1] {
        eventually(
            1,
            "the revoked login refused on every node",
            || async move { (k.auth().await.status == 401).then_some(()) },
        )
        .await;
    }
}

/// A book stored by a Dogear that computed no KOReader digests gets them at the next start:
/// KOReader then finds it by its file.
#[tokio::test]
async fn books_stored_before_digests_get_them_at_start() {
    let mut server = Server::start();
    let me = Reader::new(&server, "upgrader").await;
    let hamlet = upload(&me, "hamlet.epub").await;
    assert_eq!(server.terminate(), Some(0));
    // What an older build stored: no digest on any file, none indexed.
    let db = server.data.join("dogear.db");
    let strip = r#"
import sqlite3, sys, json, unicodedata
db = sqlite3.connect(sys.argv[1])
# The search index's triggers call Dogear's folding function.
db.create_function("dogear_fold", 1, lambda s: None if s is None else unicodedata.normalize("NFKC", s), deterministic=True)
for (id, meta) in db.execute("SELECT id, meta FROM books").fetchall():
    m = json.loads(meta)
    for f in m.get("formats", []):
        f.pop("koreader", None)
    db.execute("UPDATE books SET meta = ? WHERE id = ?", (json.dumps(m, separators=(",", ":")), id))
db.execute("DELETE FROM koreader_digests")
db.commit()
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", strip])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.restart();
    let api = Api {
        base: server.base.clone(),
        ..me.api.clone()
    };
    let (k, _) = new_login(&api, "PocketBook").await;
    let digest = good("hamlet.epub")["koreader_partial_md5"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(
        20,
        "the old book known by its digest after the restart",
        || {
            let (k, api, digest, hamlet) = (&k, &api, &digest, &hamlet);
            async move {
                assert_eq!(
                    k.push(digest, "/body/DocFragment[2].0", 0.2).await.status,
                    200
                );
                let p = api.get(&format!("/v1/books/{hamlet}/progress")).await;
                (p.body["state"]["percent"].as_f64() == Some(20.0)).then_some(())
            }
        },
    )
    .await;
    assert!(
        server
            .log()
            .contains("KOReader digests computed for older books")
    );
}
