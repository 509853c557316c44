//! The web app, end to end: its pages and the reader's parts over plain HTTP (headers,
//! sanitised documents, tokens that open one book for one reader), and in a real browser
//! (Playwright driving Debian's headless Chromium through `tests/browser/web.py`): signing
//! in, uploading, searching, reading with positions going out live, another device's
//! position offered, a reload keeping session and place, themes, a hostile book, PDF and
//! comic pages.

use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Reader, Server, fixtures};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const PASSWORD: &str = "correct horse battery";

/// Runs one browser scenario and returns what it printed last (a JSON object).
fn browser(scenario: &str, base: &str, args: Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/web.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(scenario)
        .arg("--base")
        .arg(base)
        .arg("--args")
        .arg(args.to_string())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser scenario {scenario} failed (Playwright and Chromium come with scripts/test.sh):\n{stdout}\n{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    dogear_e2e::serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn upload(r: &Reader, path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let up = r.api.upload(bytes, &name, None).await;
    assert_eq!(up.status, 202, "{}", up.body);
    let job = r.api.wait_job(up.body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    job["book_id"].as_str().unwrap().to_string()
}

fn good(name: &str) -> std::path::PathBuf {
    fixtures().join("books/good").join(name)
}

/// A loopback port that records every connection made to it: the "remote" server a
/// hostile book points at.
struct Spy {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Spy {
    fn start() -> Spy {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok(_) => {
                        h.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Spy { port, hits, stop }
    }
}

impl Drop for Spy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// An EPUB whose every page tries to run script and to reach `spy`.
fn hostile_epub(spy: u16) -> Vec<u8> {
    let remote = format!("http://127.0.0.1:{spy}");
    let chapter = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Hostile</title>
<link rel="stylesheet" href="{remote}/sheet.css"/>
<link rel="stylesheet" href="style.css"/>
<script>window.pwned = 1; document.title = 'pwned';</script>
<script src="{remote}/x.js"></script></head>
<body onload="window.pwned = 2">
<p>An ordinary paragraph, as books have.</p>
<p><img src="{remote}/spy.png" alt="spy"/><img src="//127.0.0.1:{spy}/spy2.png" alt="spy2"/>
<img src="missing.png" onerror="window.pwned = 3" alt="x"/></p>
<iframe src="{remote}/frame"></iframe><object data="{remote}/o"></object>
<form action="{remote}/post"><input name="q"/></form>
<p style="background: url({remote}/inline.png)">Styled.</p>
<a href="javascript:window.pwned = 4">a link</a>
{}
</body></html>"#,
        "<p>Filler text so the chapter spans more than one page of the reader.</p>\n".repeat(120)
    );
    let css =
        format!("body {{ background: url({remote}/css.png); }} @import url({remote}/more.css);");
    let opf = r#"<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">urn:uuid:hostile-1</dc:identifier>
<dc:title>A Hostile Book</dc:title><dc:language>en</dc:language><dc:creator>Mallory</dc:creator></metadata>
<manifest><item id="c1" href="c1.xhtml" media-type="application/xhtml+xml"/>
<item id="css" href="style.css" media-type="text/css"/>
<item id="js" href="evil.js" media-type="application/javascript"/></manifest>
<spine><itemref idref="c1"/></spine></package>"#;
    let container = r#"<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>"#;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("mimetype", stored).unwrap();
        z.write_all(b"application/epub+zip").unwrap();
        for (name, body) in [
            ("META-INF/container.xml", container.to_string()),
            ("OEBPS/content.opf", opf.to_string()),
            ("OEBPS/c1.xhtml", chapter),
            ("OEBPS/style.css", css),
            ("OEBPS/evil.js", "window.pwned = 5;".to_string()),
        ] {
            z.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

#[tokio::test]
async fn pages_and_assets_carry_strict_headers() {
    let server = Server::start();
    let anon = server.client();
    for path in [
        "/",
        "/library",
        "/books/x",
        "/reader/x",
        "/devices",
        "/login",
    ] {
        let (status, h, body) = anon.get_bytes(path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(String::from_utf8_lossy(&body).contains("/assets/app.js"));
        let csp = h["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-frame-options"], "DENY");
    }
    let (status, h, body) = anon.get_bytes("/assets/app.js", &[]).await;
    assert_eq!(status, 200);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(String::from_utf8_lossy(&body).contains("import"));
    let etag = h["etag"].to_str().unwrap().to_string();
    let (status, _, body) = anon
        .get_bytes("/assets/app.js", &[("if-none-match", &etag)])
        .await;
    assert_eq!((status, body.len()), (304, 0));
    let (status, _, _) = anon.get_bytes("/assets/nope.js", &[]).await;
    assert_eq!(status, 404);
    let (status, _, _) = anon.get_bytes("/assets/index.html", &[]).await;
    assert_eq!(status, 404, "the page is served at its routes only");
    let r = anon.send("POST", "/library", Some("{}")).await;
    r.assert_error(405, "method_not_allowed");
    // The API is untouched by the app's routes.
    anon.get("/v1/books")
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn the_reader_serves_a_book_made_safe_behind_its_own_token() {
    let server = Server::start();
    let ann = Reader::new(&server, "ann").await;
    let bob = Reader::new(&server, "bob").await;
    let spy = Spy::start();
    let up = ann
        .api
        .upload(hostile_epub(spy.port), "hostile.epub", None)
        .await;
    assert_eq!(up.status, 202, "{}", up.body);
    let job = ann.api.wait_job(up.body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    let book = job["book_id"].as_str().unwrap();

    let opened = ann.api.get(&format!("/v1/books/{book}/reader")).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(opened.body["format"], "epub");
    assert_eq!(opened.body["spine"][0]["href"], "OEBPS/c1.xhtml");
    assert!(opened.body["spine"][0]["size"].as_u64().unwrap() > 1000);
    let base = opened.body["base"].as_str().unwrap().to_string();
    let token = opened.body["token"].as_str().unwrap().to_string();
    assert_eq!(base, format!("/read/{token}/"));

    let anon = server.client();
    let (status, h, body) = anon
        .get_bytes(&format!("{base}epub/OEBPS/c1.xhtml"), &[])
        .await;
    assert_eq!(status, 200);
    let html = String::from_utf8_lossy(&body);
    assert!(html.contains("An ordinary paragraph"));
    for gone in [
        "<script",
        "pwned",
        "onload",
        "onerror",
        "javascript:",
        "<iframe",
        "<object",
        "<form",
        "<input",
        &format!("127.0.0.1:{}", spy.port),
    ] {
        assert!(!html.contains(gone), "{gone} left in: {html}");
    }
    assert!(html.contains(r#"<link rel="stylesheet" href="style.css">"#));
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );
    assert!(
        !csp.contains("script-src"),
        "no script source at all: {csp}"
    );
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");

    let (status, h, css) = anon
        .get_bytes(&format!("{base}epub/OEBPS/style.css"), &[])
        .await;
    assert_eq!(status, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/css"));
    assert!(
        !String::from_utf8_lossy(&css).contains("127.0.0.1"),
        "{}",
        String::from_utf8_lossy(&css)
    );
    // Scripts and the package's own files are not parts of a page.
    for part in [
        "OEBPS/evil.js",
        "META-INF/container.xml",
        "OEBPS/nope.xhtml",
    ] {
        let (status, _, _) = anon.get_bytes(&format!("{base}epub/{part}"), &[]).await;
        assert_eq!(status, 404, "{part}");
    }
    // The token opens this book only, for this reader only, and is no access token.
    let (status, _, _) = anon
        .get_bytes(&format!("/read/{token}x/epub/OEBPS/c1.xhtml"), &[])
        .await;
    assert_eq!(status, 404);
    ann.api
        .with_token(&token)
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthorized");
    bob.api
        .get(&format!("/v1/books/{book}/reader"))
        .await
        .assert_error(404, "not_found");
    // A book without a file has nothing to read.
    ann.api
        .get(&format!("/v1/books/{}/reader", ann.book))
        .await
        .assert_error(404, "not_found");
    // Deleting the book closes its parts at once.
    let del = ann.api.delete(&format!("/v1/books/{book}")).await;
    assert_eq!(del.status, 204, "{}", del.body);
    let (status, _, _) = anon
        .get_bytes(&format!("{base}epub/OEBPS/c1.xhtml"), &[])
        .await;
    assert_eq!(status, 404);
    assert_eq!(spy.hits.load(Ordering::SeqCst), 0);
    // The token never reaches the log.
    assert!(!server.log().contains(&token), "reader token in the log");
}

#[tokio::test]
async fn pdf_and_comic_pages_are_images() {
    let server = Server::start();
    let ann = Reader::new(&server, "ann").await;
    for (name, pages, kind) in [
        ("a-lovers-complaint.pdf", None, "image/jpeg"),
        (
            "William Shakespeare - All the World's a Stage.cbz",
            Some(()),
            "",
        ),
    ] {
        let book = upload(&ann, &good(name)).await;
        let opened = ann.api.get(&format!("/v1/books/{book}/reader")).await;
        assert_eq!(opened.status, 200, "{}", opened.body);
        let n = opened.body["pages"].as_u64().unwrap();
        if pages.is_some() {
            // A comic's pages are its images.
            let images = dogear_e2e::zip_entries(&std::fs::read(good(name)).unwrap())
                .keys()
                .filter(|k| {
                    let k = k.to_ascii_lowercase();
                    k.ends_with(".jpg") || k.ends_with(".jpeg") || k.ends_with(".png")
                })
                .count() as u64;
            assert_eq!(n, images, "{name}");
        }
        let base = opened.body["base"].as_str().unwrap();
        let anon = server.client();
        let (status, h, body) = anon
            .get_bytes(&format!("{base}page/2?width=600"), &[])
            .await;
        assert_eq!(status, 200, "{name}");
        assert!(body.len() > 1000, "{name}");
        let ct = h["content-type"].to_str().unwrap();
        assert!(ct.starts_with("image/"), "{ct}");
        if !kind.is_empty() {
            assert_eq!(ct, kind);
            let img = image_size(&body);
            assert_eq!(img.0.max(img.1), 600, "{name}: scaled to the width asked");
        }
        for bad in [format!("{}", n + 1), "0".into(), "x".into()] {
            let (status, _, _) = anon.get_bytes(&format!("{base}page/{bad}"), &[]).await;
            assert_eq!(status, 404, "{name} page {bad}");
        }
        let r = anon.get(&format!("{base}page/1?width=5")).await;
        r.assert_error(400, "bad_request");
    }
}

/// Width and height of a JPEG, from its first SOF marker.
fn image_size(jpeg: &[u8]) -> (u32, u32) {
    let mut i = 2;
    while i + 9 < jpeg.len() {
        let marker = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if (0xC0..=0xC2).contains(&marker) {
            let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]) as u32;
            let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]) as u32;
            return (w, h);
        }
        i += 2 + len;
    }
    (0, 0)
}

#[tokio::test]
async fn reading_in_the_browser_is_live_with_other_devices() {
    let server = Server::start();
    let ann = Reader::new(&server, "ann").await;
    let kobo = ann
        .api
        .post("/v1/devices", json!({"name": "Kobo Libra", "kind": "kobo"}))
        .await;
    assert_eq!(kobo.status, 201);
    let kobo = kobo.body["id"].as_str().unwrap().to_string();
    let shots = std::env::var("DOGEAR_SCREENSHOTS").unwrap_or_default();
    let out = browser(
        "reading",
        &server.base,
        json!({
            "username": "ann",
            "password": PASSWORD,
            "epub": good("macbeth.epub"),
            "title": "Macbeth",
            "dropped": good("sonnets.epub"),
            "dropped_title": "Shakespeare's Sonnets",
            "other_title": "Hamlet",
            "search": "macb",
            "token": ann.token(),
            "other_device": kobo,
            "other_device_name": "Kobo Libra",
            "event_id": dogear_e2e::event_id(),
            "shots": shots,
        }),
    );
    let book = out["book_id"].as_str().unwrap();
    // The download from the book page is the file, byte for byte in size, named for people.
    assert_eq!(
        out["downloaded_bytes"].as_u64().unwrap(),
        std::fs::metadata(good("macbeth.epub")).unwrap().len(),
        "{out}"
    );
    assert!(
        out["downloaded_name"].as_str().unwrap().ends_with(".epub"),
        "{out}"
    );
    // The shelf made and filled in the page is real.
    let shelves = ann.api.get("/v1/shelves").await;
    let shelf = shelves.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Tragedies")
        .unwrap_or_else(|| panic!("{}", shelves.body));
    assert_eq!(shelf["book_ids"], json!([book]));
    let progress = ann.api.get(&format!("/v1/books/{book}/progress")).await;
    assert_eq!(progress.status, 200);
    let state = &progress.body["state"];
    // The offered 63 % was taken, and the browser's write at that place is the newest.
    assert_eq!(state["percent"], 63.0, "{}", progress.body);
    let web = state["device_id"].as_str().unwrap();
    let devices = ann.api.get("/v1/devices").await;
    let device = devices.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == web)
        .unwrap_or_else(|| panic!("{}", devices.body));
    assert_eq!(device["kind"], "web", "{device}");
    let locator: Value =
        dogear_e2e::serde_json::from_str(state["locator"].as_str().unwrap()).unwrap();
    assert!(
        locator["web"]["href"].as_str().unwrap().ends_with(".xhtml")
            || locator["web"]["href"].as_str().unwrap().ends_with(".html"),
        "{locator}"
    );
    assert!(
        locator["web"]["path"].is_string(),
        "the place is kept to the element: {locator}"
    );
    // Five pages in, the browser had written where it was, and the server had it.
    let five = out["after_five"].as_f64().unwrap();
    assert!(five > 0.0 && five < 63.0, "{out}");
    let at_five = &out["progress_after_five"];
    assert_eq!(at_five["state"]["device_id"], web, "{out}");
    let p = at_five["state"]["percent"].as_f64().unwrap();
    assert!((p - five).abs() < 1.0, "{p} against the page's {five}");
    assert!(out["after_offer"].as_f64().unwrap() >= 60.0, "{out}");

    // The browser's place reaches the Kobo on a span of the same spine document, and
    // KOReader as the start of that document.
    let href = locator["web"]["href"].as_str().unwrap();
    let spine = locator["web"]["spine"].as_u64().unwrap();
    // (The Kobo is set up with the very line the devices page showed.)
    let line = out["kobo_line"].as_str().unwrap();
    let endpoint = line.strip_prefix("api_endpoint=").unwrap();
    let kobo = dogear_e2e::kobo::Kobo::new(endpoint);
    let st = kobo.get(&format!("/v1/library/{book}/state")).await;
    assert_eq!(st.status, 200, "{}", st.body);
    let loc = &st.body[0]["CurrentBookmark"]["Location"];
    assert_eq!(loc["Type"], "KoboSpan", "{}", st.body);
    assert_eq!(loc["Source"], href, "{}", st.body);
    assert!(loc["Value"].as_str().unwrap().starts_with("kobo."), "{loc}");
    let login = ann
        .api
        .post(
            "/v1/koreader/credentials",
            json!({"device_name": "KOReader"}),
        )
        .await;
    assert_eq!(login.status, 201, "{}", login.body);
    let digest = dogear_e2e::expected()["good"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["file"] == "books/good/macbeth.epub")
        .unwrap()["koreader_partial_md5"]
        .as_str()
        .unwrap()
        .to_string();
    let key: String =
        <md5::Md5 as md5::Digest>::digest(login.body["password"].as_str().unwrap().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let got = dogear_e2e::http_client()
        .get(format!(
            "{}/syncs/progress/{digest}",
            login.body["sync_url"].as_str().unwrap()
        ))
        .header("x-auth-user", login.body["username"].as_str().unwrap())
        .header("x-auth-key", key)
        .send()
        .await
        .unwrap();
    let got: Value = got.json().await.unwrap();
    assert_eq!(
        got["progress"],
        format!("/body/DocFragment[{}].0", spine + 1),
        "{got}"
    );
}

#[tokio::test]
async fn a_hostile_book_runs_no_script_and_reaches_nothing_outside() {
    let server = Server::start();
    let ann = Reader::new(&server, "ann").await;
    let spy = Spy::start();
    let up = ann
        .api
        .upload(hostile_epub(spy.port), "hostile.epub", None)
        .await;
    let job = ann.api.wait_job(up.body["job_id"].as_str().unwrap()).await;
    let book = job["book_id"].as_str().unwrap();
    let out = browser(
        "hostile",
        &server.base,
        json!({"username": "ann", "password": PASSWORD, "book_id": book}),
    );
    assert!(out["requests"].as_u64().unwrap() > 3, "{out}");
    assert_eq!(
        spy.hits.load(Ordering::SeqCst),
        0,
        "the book reached the outside server"
    );
}

#[tokio::test]
async fn pdf_and_comic_turn_pages_in_the_browser() {
    let server = Server::start();
    let ann = Reader::new(&server, "ann").await;
    let mut args = json!({"username": "ann", "password": PASSWORD});
    for (kind, name) in [
        ("pdf", "a-lovers-complaint.pdf"),
        ("cbz", "William Shakespeare - All the World's a Stage.cbz"),
    ] {
        let id = upload(&ann, &good(name)).await;
        let opened = ann.api.get(&format!("/v1/books/{id}/reader")).await;
        args[kind] = json!({"id": id, "pages": opened.body["pages"]});
    }
    args["new_title"] = json!("A Lover's Complaint (1609 quarto)");
    let out = browser("paged", &server.base, args.clone());
    let pdf = ann
        .api
        .get(&format!(
            "/v1/books/{}",
            args["pdf"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(pdf.body["title"], "A Lover's Complaint (1609 quarto)");
    assert_eq!(
        pdf.body["tags"],
        json!(["Poetry", "Quartos"]),
        "{}",
        pdf.body
    );
    for kind in ["pdf", "cbz"] {
        assert!(out[kind]["width"].as_u64().unwrap() > 100, "{out}");
        let id = args[kind]["id"].as_str().unwrap();
        let pages = args[kind]["pages"].as_f64().unwrap();
        let progress = ann.api.get(&format!("/v1/books/{id}/progress")).await;
        let state = &progress.body["state"];
        let locator: Value =
            dogear_e2e::serde_json::from_str(state["locator"].as_str().unwrap()).unwrap();
        assert_eq!(locator["web"]["page"], 3, "{kind}: {state}");
        let want = 300.0 / pages;
        assert!(
            (state["percent"].as_f64().unwrap() - want).abs() < 0.01,
            "{kind}: {state}"
        );
    }
}

/// On a cluster: the browser on one node, the other device writing through another; the
/// reader's token opens the book's parts on any node (the files in the shared S3 store).
#[tokio::test]
async fn the_web_app_on_a_cluster() {
    let (c, _plan) = dogear_e2e::cluster::Nodes::start(2).await;
    let admin = c.admin_on(0);
    let other = admin
        .post(
            "/v1/books",
            json!({"title": "Hamlet", "authors": ["William Shakespeare"]}),
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.body);
    let kobo = admin
        .post("/v1/devices", json!({"name": "Kobo Libra", "kind": "kobo"}))
        .await;
    let kobo = kobo.body["id"].as_str().unwrap().to_string();
    let out = browser(
        "reading",
        &c.nodes[1].base,
        json!({
            "username": "root",
            "password": PASSWORD,
            "epub": good("macbeth.epub"),
            "title": "Macbeth",
            "other_title": "Hamlet",
            "search": "macb",
            "token": admin.token.clone().unwrap(),
            "rest_base": c.nodes[0].base,
            "other_device": kobo,
            "other_device_name": "Kobo Libra",
            "event_id": dogear_e2e::event_id(),
        }),
    );
    let book = out["book_id"].as_str().unwrap();
    let progress = admin.get(&format!("/v1/books/{book}/progress")).await;
    assert_eq!(progress.body["state"]["percent"], 63.0, "{}", progress.body);
    // A token made on node 0 opens the parts on node 1.
    let opened = admin.get(&format!("/v1/books/{book}/reader")).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let part = format!(
        "{}epub/{}",
        opened.body["base"].as_str().unwrap(),
        opened.body["spine"][1]["href"].as_str().unwrap()
    );
    let (status, h, body) = c.nodes[1].client().get_bytes(&part, &[]).await;
    assert_eq!(status, 200, "{part}");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&body).starts_with("<!DOCTYPE html>"));
}

#[tokio::test]
async fn registering_and_signing_out_in_the_browser() {
    let open = Server::start();
    let out = browser(
        "register",
        &open.base,
        json!({"username": "newcomer", "password": PASSWORD}),
    );
    assert_eq!(out["registered"], true);
    // The account is real: it signs in over the API too.
    let login = open
        .client()
        .post(
            "/v1/auth/login",
            json!({"username": "newcomer", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);

    let closed = Server::start_with(&[("DOGEAR_AUTH__REGISTRATION", "closed")]);
    let out = browser(
        "register",
        &closed.base,
        json!({"username": "newcomer", "password": PASSWORD, "closed": true}),
    );
    assert_eq!(out["registered"], false);
}

#[tokio::test]
async fn a_reader_whose_token_ran_out_goes_on() {
    let server = Server::start_with(&[("DOGEAR_AUTH__READER_TOKEN_SECS", "2")]);
    let ann = Reader::new(&server, "ann").await;
    let epub = upload(&ann, &good("hamlet.epub")).await;
    let pdf = upload(&ann, &good("a-lovers-complaint.pdf")).await;
    // The short token does run out.
    let opened = ann.api.get(&format!("/v1/books/{epub}/reader")).await;
    let part = format!(
        "{}epub/{}",
        opened.body["base"].as_str().unwrap(),
        opened.body["spine"][1]["href"].as_str().unwrap()
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (status, _, _) = server.client().get_bytes(&part, &[]).await;
    assert_eq!(status, 404, "an expired reader token opens nothing");
    let out = browser(
        "renew",
        &server.base,
        json!({"username": "ann", "password": PASSWORD, "epub": epub, "pdf": pdf, "wait_ms": 3100}),
    );
    assert_ne!(out["first"], out["later"], "{out}");
}
