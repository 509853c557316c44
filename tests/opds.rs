//! OPDS catalogs read over real HTTP from a real `dogear`, as apps read them: OPDS 1.2 feeds
//! parsed by Python's `feedparser` (and a strict XML parser) and checked for the elements and
//! link relations the specification requires; OPDS 2.0 feeds checked against the rules of
//! the OPDS 2.0 and Readium Web Publication specifications; every book reached exactly once
//! by following `next` (and `previous` back from `last`); downloads that are the stored
//! bytes; Basic sign-in; another reader sees none of it.

use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Reader, Server, fixtures};
use std::collections::{BTreeSet, HashMap};

/// What `feedparser` (and `xml.etree`, which refuses anything not well-formed, such as an
/// undeclared prefix) makes of an Atom document.
const PARSE: &str = r#"
import json, sys, feedparser, xml.etree.ElementTree as ET
raw = open(sys.argv[1], 'rb').read()
ET.fromstring(raw)
d = feedparser.parse(raw)
def links(ls):
    return [{k: v for k, v in l.items()} for l in ls]
out = {
    'bozo': bool(d.bozo), 'error': str(d.get('bozo_exception', '')),
    'version': d.version,
    'feed': {'id': d.feed.get('id'), 'title': d.feed.get('title'), 'updated': d.feed.get('updated'),
             'links': links(d.feed.get('links', []))},
    'entries': [{'id': e.get('id'), 'title': e.get('title'), 'updated': e.get('updated'),
                 'authors': [a.get('name') for a in e.get('authors', [])],
                 'summary': e.get('summary'), 'language': e.get('dcterms_language') or e.get('dc_language'),
                 'identifier': e.get('dcterms_identifier') or e.get('dc_identifier'),
                 'tags': [t.get('term') for t in e.get('tags', [])],
                 'links': links(e.get('links', []))} for e in d.entries],
}
print(json.dumps(out))
"#;

fn parse_atom(xml: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.xml");
    std::fs::write(&path, xml).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(PARSE)
        .arg(&path)
        .output()
        .expect("python3 (scripts/test.sh installs feedparser)");
    assert!(
        out.status.success(),
        "feedparser/xml.etree refused the feed: {}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bozo"], false, "{}", v["error"]);
    assert_eq!(v["version"], "atom10");
    v
}

/// A catalog app signed in with HTTP Basic.
struct App {
    http: reqwest::Client,
    user: String,
    password: String,
    ua: &'static str,
}

impl App {
    fn new(user: &str) -> App {
        App {
            http: dogear_e2e::http_client(),
            user: user.into(),
            password: "correct horse battery".into(),
            ua: "KOReader/2026.07",
        }
    }

    async fn raw(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut rb = self
            .http
            .get(url)
            .basic_auth(&self.user, Some(&self.password))
            .header("user-agent", self.ua);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().await.expect("catalog request")
    }

    async fn text(&self, url: &str) -> (u16, HashMap<String, String>, String) {
        let r = self.raw(url, &[]).await;
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        (status, headers, r.text().await.unwrap())
    }

    /// An OPDS 1.2 feed, parsed and checked.
    async fn atom(&self, url: &str) -> Value {
        let (status, headers, body) = self.text(url).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(
            headers["content-type"].starts_with("application/atom+xml"),
            "{url}: {:?}",
            headers["content-type"]
        );
        let v = parse_atom(&body);
        check_atom(&v, url);
        v
    }

    /// An OPDS 2.0 feed, checked.
    async fn opds2(&self, url: &str) -> Value {
        let (status, headers, body) = self.text(url).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(headers["content-type"], "application/opds+json", "{url}");
        let v: Value = serde_json::from_str(&body).unwrap();
        check_opds2(&v, url);
        v
    }
}

fn rel_of<'a>(links: &'a Value, rel: &str) -> Option<&'a Value> {
    links.as_array()?.iter().find(|l| {
        l["rel"] == rel
            || l["rel"]
                .as_array()
                .is_some_and(|a| a.iter().any(|r| r == rel))
    })
}

/// What OPDS 1.2 and Atom require of a feed and its entries.
fn check_atom(v: &Value, url: &str) {
    let f = &v["feed"];
    for k in ["id", "title", "updated"] {
        assert!(
            f[k].as_str().is_some_and(|s| !s.is_empty()),
            "{url}: feed {k}"
        );
    }
    let self_link = rel_of(&f["links"], "self").unwrap_or_else(|| panic!("{url}: self link"));
    assert!(
        self_link["type"]
            .as_str()
            .unwrap()
            .contains("profile=opds-catalog")
    );
    assert!(rel_of(&f["links"], "start").is_some(), "{url}: start link");
    let acquisition = self_link["type"]
        .as_str()
        .unwrap()
        .contains("kind=acquisition");
    for e in v["entries"].as_array().unwrap() {
        for k in ["id", "title", "updated"] {
            assert!(
                e[k].as_str().is_some_and(|s| !s.is_empty()),
                "{url}: entry {k}: {e}"
            );
        }
        let links = e["links"].as_array().unwrap();
        if acquisition {
            let acq: Vec<&Value> = links
                .iter()
                .filter(|l| {
                    l["rel"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("http://opds-spec.org/acquisition")
                })
                .collect();
            assert!(
                !acq.is_empty(),
                "{url}: a book without an acquisition link: {e}"
            );
            for l in acq {
                assert!(l["type"].as_str().is_some_and(|t| !t.is_empty()), "{l}");
                assert!(
                    l["length"]
                        .as_str()
                        .is_some_and(|n| n.parse::<u64>().is_ok()),
                    "{l}"
                );
            }
            assert!(e["id"].as_str().unwrap().starts_with("urn:uuid:"), "{e}");
        } else {
            // A folder KOReader opens: an Atom type and a subsection (or sort) rel.
            assert!(
                links.iter().any(|l| l["type"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("application/atom+xml")
                    && matches!(
                        l["rel"].as_str().unwrap_or(""),
                        "subsection" | "http://opds-spec.org/sort/new"
                    )),
                "{url}: a navigation entry KOReader cannot open: {e}"
            );
        }
    }
}

/// The rules of the OPDS 2.0 feed and Readium publication schemas: metadata with a title
/// and no blank values, a `self` link, links with `href`, one collection, publications with
/// metadata, an acquisition link and images of an allowed type.
fn check_opds2(v: &Value, url: &str) {
    fn no_blanks(v: &Value, at: &str) {
        match v {
            Value::Null => panic!("{at}: null in metadata"),
            Value::String(s) => assert!(!s.is_empty(), "{at}: empty string"),
            Value::Array(a) => {
                assert!(!a.is_empty(), "{at}: empty array");
                for (i, x) in a.iter().enumerate() {
                    no_blanks(x, &format!("{at}[{i}]"));
                }
            }
            Value::Object(o) => {
                assert!(!o.is_empty(), "{at}: empty object");
                for (k, x) in o {
                    no_blanks(x, &format!("{at}.{k}"));
                }
            }
            _ => {}
        }
    }
    fn links_ok(links: &Value, at: &str) {
        for l in links
            .as_array()
            .unwrap_or_else(|| panic!("{at}: links array"))
        {
            assert!(
                l["href"].as_str().is_some_and(|h| !h.is_empty()),
                "{at}: href: {l}"
            );
            if l["templated"] == true {
                assert!(l["href"].as_str().unwrap().contains('{'), "{l}");
            }
        }
    }
    assert!(
        v["metadata"]["title"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{url}"
    );
    no_blanks(&v["metadata"], url);
    links_ok(&v["links"], url);
    assert!(rel_of(&v["links"], "self").is_some(), "{url}: self link");
    let collections = ["navigation", "publications", "groups"]
        .iter()
        .filter(|k| v.get(**k).is_some())
        .count();
    assert!(collections >= 1, "{url}: no collection");
    if let Some(nav) = v.get("navigation") {
        for l in nav.as_array().unwrap() {
            assert!(l["title"].as_str().is_some_and(|t| !t.is_empty()), "{l}");
        }
        links_ok(nav, url);
    }
    if let Some(facets) = v.get("facets") {
        for f in facets.as_array().unwrap() {
            assert!(f["metadata"]["title"].is_string(), "{f}");
            links_ok(&f["links"], url);
        }
    }
    for p in v["publications"].as_array().into_iter().flatten() {
        check_publication(p, url);
    }
}

fn check_publication(p: &Value, url: &str) {
    let md = &p["metadata"];
    assert!(
        md["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{url}: {p}"
    );
    assert!(md["@type"].is_string(), "{p}");
    if let Some(m) = md.get("modified") {
        assert!(m.as_str().is_some_and(|s| s.contains('T')), "{p}");
    }
    let links = p["links"].as_array().unwrap();
    assert!(
        links
            .iter()
            .any(|l| l["rel"] == "http://opds-spec.org/acquisition" && l["type"].is_string()),
        "{url}: no acquisition link: {p}"
    );
    assert!(
        rel_of(&p["links"], "self")
            .is_some_and(|l| l["type"] == "application/opds-publication+json")
    );
    if let Some(images) = p.get("images") {
        let first = &images[0];
        assert!(
            matches!(
                first["type"].as_str(),
                Some("image/jpeg" | "image/png" | "image/gif" | "image/webp" | "image/avif")
            ),
            "{p}"
        );
    }
}

async fn upload_all(me: &Reader, files: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for f in files {
        let bytes = std::fs::read(fixtures().join("books/good").join(f)).unwrap();
        let r = me.api.upload(bytes, f, None).await;
        assert_eq!(r.status, 202, "{f}: {}", r.body);
        let job = me.api.wait_job(r.body["job_id"].as_str().unwrap()).await;
        assert_eq!(job["state"], "done", "{f}: {job}");
        ids.push(job["book_id"].as_str().unwrap().to_string());
    }
    ids
}

const FILES: [&str; 7] = [
    "hamlet.epub",
    "macbeth.epub",
    "romeo-and-juliet.epub",
    "sonnets.pdf",
    "gpl-3.0.epub",
    "Shakespeare Illustrated 01 - To Be or Not to Be.cbz",
    "devils-dictionary.epub",
];

fn entry_book(id: &str) -> String {
    id.trim_start_matches("urn:uuid:").to_string()
}

/// Every feed of both versions parses and follows the rules; `next` from the first page and
/// `previous` from the last each visit every book exactly once, in one stable order.
#[tokio::test]
async fn both_catalogs_page_every_book_once() {
    let server = Server::start();
    let me = Reader::new(&server, "opdsreader").await;
    let mut ids = upload_all(&me, &FILES).await;
    ids.push(me.book.clone()); // the Reader's own book, made without a file
    let want: BTreeSet<String> = ids.iter().filter(|id| **id != me.book).cloned().collect();
    let app = App::new("opdsreader");
    let v1 = format!("{}/opds/v1.2", server.base);
    let root = app.atom(&format!("{v1}/catalog")).await;
    let titles: Vec<&str> = root["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap())
        .collect();
    for t in [
        "Reading now",
        "Recently added",
        "Finished",
        "All books",
        "Authors",
        "Series",
        "Tags",
        "Languages",
        "Shelves",
        "Libraries",
    ] {
        assert!(titles.contains(&t), "{t} in {titles:?}");
    }
    // Every navigation entry of the root opens as a feed that parses.
    for e in root["entries"].as_array().unwrap() {
        let href = e["links"][0]["href"].as_str().unwrap();
        app.atom(href).await;
    }
    for sort in ["title", "author", "added", "series"] {
        let mut seen = Vec::new();
        let mut url = Some(format!("{v1}/all?limit=2&sort={sort}"));
        let mut pages = 0;
        while let Some(u) = url {
            let f = app.atom(&u).await;
            for e in f["entries"].as_array().unwrap() {
                seen.push(entry_book(e["id"].as_str().unwrap()));
            }
            url = rel_of(&f["feed"]["links"], "next")
                .map(|l| l["href"].as_str().unwrap().to_string());
            pages += 1;
            assert!(pages < 20, "next never ends");
        }
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: a book twice: {seen:?}");
        // Every book with a file, and not the one without (nothing to download).
        assert_eq!(unique, want, "{sort}: {seen:?}");
        // Backwards from the last page: the same books, the same order.
        let mut back = Vec::new();
        let mut url = Some(format!("{v1}/all?limit=2&sort={sort}&last=1"));
        while let Some(u) = url {
            let f = app.atom(&u).await;
            let mut page: Vec<String> = f["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| entry_book(e["id"].as_str().unwrap()))
                .collect();
            page.extend(back);
            back = page;
            url = rel_of(&f["feed"]["links"], "previous")
                .map(|l| l["href"].as_str().unwrap().to_string());
        }
        assert_eq!(back, seen, "{sort}: previous from the last page");
    }

    // OPDS 2.0: the same books, the same way.
    let v2 = format!("{}/opds/v2", server.base);
    let root2 = app.opds2(&format!("{v2}/catalog")).await;
    for n in root2["navigation"].as_array().unwrap() {
        app.opds2(n["href"].as_str().unwrap()).await;
    }
    let mut seen = Vec::new();
    let mut url = Some(format!("{v2}/new?limit=3"));
    while let Some(u) = url {
        let f = app.opds2(&u).await;
        for p in f["publications"].as_array().unwrap() {
            let self_href = rel_of(&p["links"], "self").unwrap()["href"]
                .as_str()
                .unwrap();
            seen.push(self_href.rsplit('/').next().unwrap().to_string());
            // The publication document is the same publication.
            let doc: Value = app.raw(self_href, &[]).await.json().await.unwrap();
            check_publication(&doc, self_href);
        }
        url = rel_of(&f["links"], "next").map(|l| l["href"].as_str().unwrap().to_string());
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "{seen:?}");
    assert_eq!(unique, want);
    // Newest first: the last upload leads.
    assert_eq!(seen.first(), ids.iter().rev().nth(1));
}

/// Entries carry the metadata, artwork and one acquisition link per format with its media
/// type and size; the links download the stored bytes; a Kobo is offered KEPUB first.
#[tokio::test]
async fn entries_download_and_describe_their_books() {
    let server = Server::start();
    let me = Reader::new(&server, "downloader").await;
    let ids = upload_all(&me, &["hamlet.epub", "sonnets.pdf"]).await;
    let app = App::new("downloader");
    let v1 = format!("{}/opds/v1.2", server.base);
    let exp = dogear_e2e::expected();
    let hamlet_meta = exp["good"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["file"] == "books/good/hamlet.epub")
        .unwrap();
    let f = app.atom(&format!("{v1}/search?q=hamlet")).await;
    let e = &f["entries"][0];
    assert_eq!(entry_book(e["id"].as_str().unwrap()), ids[0]);
    assert_eq!(e["title"], hamlet_meta["title"]);
    assert_eq!(e["authors"], json!(["William Shakespeare"]));
    assert_eq!(e["language"], "en");
    assert!(e["summary"].as_str().unwrap().contains("Danish prince"));
    assert!(e["tags"].as_array().unwrap().contains(&json!("Drama")));
    let links = e["links"].as_array().unwrap();
    let image = links
        .iter()
        .find(|l| l["rel"] == "http://opds-spec.org/image/thumbnail")
        .expect("thumbnail");
    let img = app.raw(image["href"].as_str().unwrap(), &[]).await;
    assert_eq!(img.status(), 200);
    assert_eq!(img.headers()["content-type"], "image/jpeg");
    let acq: Vec<&Value> = links
        .iter()
        .filter(|l| l["rel"] == "http://opds-spec.org/acquisition")
        .collect();
    let types: Vec<&str> = acq.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["application/epub+zip", "application/kepub+zip"],
        "KEPUB after the EPUB"
    );
    let epub = app.raw(acq[0]["href"].as_str().unwrap(), &[]).await;
    assert_eq!(epub.status(), 200);
    assert!(acq[0]["href"].as_str().unwrap().ends_with(".epub"));
    let length: u64 = acq[0]["length"].as_str().unwrap().parse().unwrap();
    let bytes = epub.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, length);
    assert_eq!(
        bytes,
        std::fs::read(fixtures().join("books/good/hamlet.epub")).unwrap()
    );
    // A Kobo's browser gets the KEPUB first.
    let kobo = App {
        ua: "Mozilla/5.0 (Linux; U; Android 2.0; en-us;) AppleWebKit/538.1 (KHTML, like Gecko) Version/4.0 Mobile Safari/538.1 (Kobo Touch 0373/4.38.21908)",
        ..App::new("downloader")
    };
    let f = kobo.atom(&format!("{v1}/search?q=hamlet")).await;
    let first = f["entries"][0]["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "http://opds-spec.org/acquisition")
        .unwrap();
    assert_eq!(first["type"], "application/kepub+zip");
    // The PDF, filtered by format.
    let pdfs = app.atom(&format!("{v1}/all?format=pdf")).await;
    let only: Vec<String> = pdfs["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| entry_book(e["id"].as_str().unwrap()))
        .collect();
    assert_eq!(only, [ids[1].clone()]);
    // The OpenSearch description points at an Atom search.
    let (status, headers, osd) = app.text(&format!("{v1}/opensearch.xml")).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("application/opensearchdescription+xml"));
    assert!(
        osd.contains(&format!("template=\"{v1}/search?q={{searchTerms}}\"")),
        "{osd}"
    );
    // Search terms as apps send them: raw UTF-8 and odd characters answer a feed, never 500.
    for q in ["%C3%A9t%C3%A9", "a%26b", "%", "\"quoted\"", "%E2%80%AE"] {
        let (status, _, body) = app.text(&format!("{v1}/search?q={q}")).await;
        assert_eq!(status, 200, "{q}: {body}");
        parse_atom(&body);
    }
}

/// Browse lists by author, series, tag and language lead to exactly their books; reading
/// now and finished follow progress.
#[tokio::test]
async fn browse_lists_and_reading_lists() {
    let server = Server::start();
    let me = Reader::new(&server, "browser").await;
    let ids = upload_all(&me, &["hamlet.epub", "macbeth.epub", "gpl-3.0.epub"]).await;
    let app = App::new("browser");
    let v2 = format!("{}/opds/v2", server.base);
    let authors = app.opds2(&format!("{v2}/authors")).await;
    let shakespeare = authors["navigation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["title"] == "William Shakespeare")
        .expect("Shakespeare among the authors");
    assert_eq!(shakespeare["properties"]["numberOfItems"], 2);
    let books = app.opds2(shakespeare["href"].as_str().unwrap()).await;
    let titles: BTreeSet<&str> = books["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert!(
        titles
            .iter()
            .all(|t| t.contains("Hamlet") || t.contains("Macbeth"))
    );
    let tags = app.opds2(&format!("{v2}/tags")).await;
    let drama = tags["navigation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["title"] == "Drama")
        .expect("Drama");
    let dramas = app.opds2(drama["href"].as_str().unwrap()).await;
    assert!(!dramas["publications"].as_array().unwrap().is_empty());
    let langs = app.opds2(&format!("{v2}/languages")).await;
    assert!(
        langs["navigation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["title"] == "en")
    );

    // Reading now and finished.
    let web = me.add_device("web").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 1_767_225_600_000;
    assert_eq!(
        me.write(&ids[0], dogear_e2e::progress(&web, 30.0, now))
            .await
            .status,
        200
    );
    assert_eq!(
        me.write(&ids[1], dogear_e2e::progress(&web, 100.0, now + 1))
            .await
            .status,
        200
    );
    let ids_of = |f: &Value| -> Vec<String> {
        f["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                rel_of(&p["links"], "self").unwrap()["href"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        ids_of(&app.opds2(&format!("{v2}/reading")).await),
        [ids[0].clone()]
    );
    assert_eq!(
        ids_of(&app.opds2(&format!("{v2}/finished")).await),
        [ids[1].clone()]
    );
    let v1 = format!("{}/opds/v1.2", server.base);
    let reading = app.atom(&format!("{v1}/reading")).await;
    assert_eq!(
        entry_book(reading["entries"][0]["id"].as_str().unwrap()),
        ids[0]
    );
    // A shelf.
    let shelf = me
        .api
        .post(
            "/v1/shelves",
            json!({"name": "Plays", "book_ids": [ids[1].clone(), ids[0].clone()]}),
        )
        .await;
    assert_eq!(shelf.status, 201, "{}", shelf.body);
    let shelves = app.atom(&format!("{v1}/shelves")).await;
    let href = shelves["entries"][0]["links"][0]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let plays = app.atom(&href).await;
    let order: Vec<String> = plays["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| entry_book(e["id"].as_str().unwrap()))
        .collect();
    assert_eq!(order, [ids[1].clone(), ids[0].clone()], "the shelf's order");
}

/// Basic sign-in: a challenge without credentials or with wrong ones, failures limited like
/// logins; another reader sees none of these books; feeds answer 304 to their ETag.
#[tokio::test]
async fn sign_in_privacy_and_validators() {
    let server = Server::start();
    let me = Reader::new(&server, "private").await;
    let ids = upload_all(&me, &["hamlet.epub"]).await;
    let _other = Reader::new(&server, "snoop").await;
    let v1 = format!("{}/opds/v1.2", server.base);
    let v2 = format!("{}/opds/v2", server.base);
    let http = dogear_e2e::http_client();
    for url in [
        format!("{v1}/catalog"),
        format!("{v2}/catalog"),
        format!("{v1}/books/{}/file/epub/x.epub", ids[0]),
    ] {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401, "{url}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic realm="),
            "{url}"
        );
    }
    let r = http.get(format!("{v2}/catalog")).send().await.unwrap();
    assert!(
        r.headers()["link"]
            .to_str()
            .unwrap()
            .contains("http://opds-spec.org/auth/document")
    );
    let doc: Value = http
        .get(format!("{v2}/auth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["authentication"][0]["type"],
        "http://opds-spec.org/auth/basic"
    );
    let wrong = App {
        password: "not the password".into(),
        ..App::new("private")
    };
    let (status, _, _) = wrong.text(&format!("{v1}/catalog")).await;
    assert_eq!(status, 401);
    // Another reader: none of these books, and 404 for them directly.
    let snoop = App::new("snoop");
    let all = snoop.atom(&format!("{v1}/all")).await;
    assert!(
        all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| entry_book(e["id"].as_str().unwrap()) != ids[0])
    );
    for url in [
        format!("{v1}/books/{}", ids[0]),
        format!("{v2}/books/{}", ids[0]),
        format!("{v1}/books/{}/file/epub/x.epub", ids[0]),
        format!("{v1}/books/{}/cover", ids[0]),
        format!("{v1}/libraries/{}", "0193a7c0-5b7e-7c3a-9d2e-1f4a6b8c0d2e"),
    ] {
        let (status, _, _) = snoop.text(&url).await;
        assert_eq!(status, 404, "{url}");
    }
    let search = snoop.atom(&format!("{v1}/search?q=hamlet")).await;
    assert!(search["entries"].as_array().unwrap().is_empty());
    // Validators.
    let app = App::new("private");
    let r = app.raw(&format!("{v1}/all"), &[]).await;
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let again = app
        .raw(&format!("{v1}/all"), &[("if-none-match", &etag)])
        .await;
    assert_eq!(again.status(), 304);
    // KOReader sends HEAD before each feed: the same validator, no body.
    let head = app
        .http
        .head(format!("{v1}/all"))
        .basic_auth(&app.user, Some(&app.password))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);
    assert!(head.bytes().await.unwrap().is_empty());
    // A change to the library changes the feed.
    upload_all(&me, &["macbeth.epub"]).await;
    let changed = app
        .raw(&format!("{v1}/all"), &[("if-none-match", &etag)])
        .await;
    assert_eq!(changed.status(), 200);
    // Wrong passwords are limited like logins.
    let mut limited = false;
    for _ in 0..30 {
        let (status, _, _) = wrong.text(&format!("{v1}/catalog")).await;
        if status == 429 {
            limited = true;
            break;
        }
        assert_eq!(status, 401);
    }
    assert!(limited, "Basic failures are rate limited");
    // Bad parameters name themselves.
    let (status, _, body) = app.text(&format!("{v1}/all?sort=price")).await;
    assert_eq!(status, 400);
    assert!(body.contains("sort"), "{body}");
    let (status, _, _) = app.text(&format!("{v1}/all?after=garbage")).await;
    assert_eq!(status, 400);
    let (status, _, _) = app.text(&format!("{}/opds/v3/catalog", server.base)).await;
    assert_eq!(status, 404);
}

/// A catalog link with a token: no password needed, every link in it carries the token
/// (covers and downloads too), the reader's books only, and revoked at once.
#[tokio::test]
async fn catalog_links_with_a_token() {
    let server = Server::start();
    let me = Reader::new(&server, "tokened").await;
    let ids = upload_all(&me, &["hamlet.epub"]).await;
    let r = me
        .api
        .post("/v1/opds/tokens", json!({"device_name": "Moon+ Reader"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();
    let v1 = r.body["catalog_v1"].as_str().unwrap().to_string();
    let v2 = r.body["catalog_v2"].as_str().unwrap().to_string();
    assert!(
        v1.ends_with(&format!("/opds/t/{token}/v1.2/catalog")),
        "{v1}"
    );
    let http = dogear_e2e::http_client();
    let get = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let root = get(v1.clone()).await;
    assert_eq!(root.status(), 200);
    let body = root.text().await.unwrap();
    let parsed = parse_atom(&body);
    check_atom(&parsed, &v1);
    let all = rel_of(
        &Value::Array(
            parsed["entries"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|e| e["links"].as_array().unwrap().clone())
                .collect(),
        ),
        "subsection",
    )
    .map(|l| l["href"].as_str().unwrap().to_string())
    .unwrap();
    assert!(all.contains(&format!("/opds/t/{token}/")), "{all}");
    let books = get(format!("{}/all", v1.trim_end_matches("/catalog")))
        .await
        .text()
        .await
        .unwrap();
    let books = parse_atom(&books);
    let links = books["entries"][0]["links"].as_array().unwrap();
    for l in links {
        let href = l["href"].as_str().unwrap();
        assert!(href.contains(&format!("/opds/t/{token}/")), "{href}");
    }
    // A cover and a download without any credentials.
    let thumb = links
        .iter()
        .find(|l| l["rel"] == "http://opds-spec.org/image/thumbnail")
        .unwrap();
    assert_eq!(
        get(thumb["href"].as_str().unwrap().to_string())
            .await
            .status(),
        200
    );
    let acq = links
        .iter()
        .find(|l| l["rel"] == "http://opds-spec.org/acquisition")
        .unwrap();
    let file = get(acq["href"].as_str().unwrap().to_string()).await;
    assert_eq!(file.status(), 200);
    assert_eq!(
        file.bytes().await.unwrap(),
        std::fs::read(fixtures().join("books/good/hamlet.epub")).unwrap()
    );
    let f2: Value = get(v2.clone()).await.json().await.unwrap();
    check_opds2(&f2, &v2);
    // Listed, then revoked: refused at once, though the node had it cached.
    let list = me.api.get("/v1/opds/tokens").await;
    assert_eq!(list.body["items"][0]["device_name"], "Moon+ Reader");
    assert!(list.body["items"][0].get("token").is_none());
    let device = r.body["device_id"].as_str().unwrap();
    assert_eq!(
        me.api
            .delete(&format!("/v1/opds/tokens/{device}"))
            .await
            .status,
        204
    );
    assert_eq!(get(v1.clone()).await.status(), 401);
    // Another reader's link shows their books, not these.
    let other = Reader::new(&server, "othertoken").await;
    let o = other
        .api
        .post("/v1/opds/tokens", json!({"device_name": "Librera"}))
        .await;
    let ov1 = o.body["catalog_v1"].as_str().unwrap();
    let oall = get(ov1.replace("/catalog", "/all"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!oall.contains(&ids[0]));
    let ob = get(ov1.replace("/catalog", &format!("/books/{}", ids[0]))).await;
    assert_eq!(ob.status(), 404);
    // Made-up tokens: 401, and an address that keeps guessing is refused.
    let mut refused = false;
    for i in 0..100 {
        let fake = format!("{}/opds/t/{:064x}/v1.2/catalog", server.base, i);
        match get(fake).await.status().as_u16() {
            401 => {}
            429 => {
                refused = true;
                break;
            }
            s => panic!("a made-up token got {s}"),
        }
    }
    assert!(refused, "token guessing is limited");
}
