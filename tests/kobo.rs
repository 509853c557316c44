//! A Kobo played over real HTTP against a real `dogear`, one behaviour a test: its token,
//! auth, initialization, OAuth, the store calls, a paged full sync, downloads and covers,
//! reading state both ways (with a WebSocket client watching), library changes, collections,
//! removal, a restart and a factory reset, a second device, another reader, revocation. Shapes are compared field by field with responses
//! captured from calibre-web, a server real devices accept.

use dogear_e2e::kobo::Kobo;
use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Api, Reader, Resp, Server, Socket, eventually, fixtures, gunzip, zip_entries};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn captures() -> PathBuf {
    fixtures().join("captures/calibre-web-0.6.27")
}

fn capture(name: &str) -> Value {
    let raw = std::fs::read_to_string(captures().join(name)).expect("capture");
    serde_json::from_str(&raw).expect("capture parses")
}

/// The capture's headers (lower-case names).
fn capture_headers(name: &str) -> BTreeMap<String, String> {
    std::fs::read_to_string(captures().join(name))
        .expect("capture headers")
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

const TIME_KEYS: [&str; 6] = [
    "Created",
    "LastModified",
    "PriorityTimestamp",
    "From",
    "PublicationDate",
    "LastTimeStartedReading",
];

fn is_kobo_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && s.chars().filter(char::is_ascii_digit).count() == 14
}

/// Every field of the captured value exists in ours with the same JSON type (a captured
/// `null` accepts anything), recursively; timestamps are in the store's format.
fn same_shape(ours: &Value, theirs: &Value, path: &str) {
    match (ours, theirs) {
        (_, Value::Null) => {}
        // A book without a publisher: calibre-web sends null there too.
        (Value::Null, Value::String(_)) if path.ends_with("Publisher.Name") => {}
        (Value::Object(o), Value::Object(t)) => {
            for (k, tv) in t {
                let ov = o
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k}: missing; ours: {ours}"));
                same_shape(ov, tv, &format!("{path}.{k}"));
            }
            for (k, ov) in o {
                if let (true, Some(s)) = (TIME_KEYS.contains(&k.as_str()), ov.as_str()) {
                    assert!(is_kobo_time(s), "{path}.{k}: {s:?} is not a Kobo timestamp");
                }
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            if let (Some(a), Some(b)) = (o.first(), t.first()) {
                same_shape(a, b, &format!("{path}[0]"));
            }
        }
        (o, t) => assert_eq!(kind(o), kind(t), "{path}: ours {o}, captured {t}"),
    }
}

fn key_of(item: &Value) -> &str {
    item.as_object()
        .and_then(|o| o.keys().next())
        .map(String::as_str)
        .unwrap_or("")
}

fn entitled_id(item: &Value) -> String {
    item[key_of(item)]["BookEntitlement"]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Uploads the good fixtures `wanted` accepts; returns (book id, file) of the EPUBs.
async fn import_fixtures(me: &Reader, wanted: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let exp = dogear_e2e::expected();
    let mut epubs = Vec::new();
    for g in exp["good"].as_array().unwrap() {
        let file = g["file"].as_str().unwrap();
        if !wanted(file) {
            continue;
        }
        let bytes = std::fs::read(fixtures().join(file)).unwrap();
        let name = file.rsplit('/').next().unwrap();
        let r = me.api.upload(bytes, name, None).await;
        assert_eq!(r.status, 202, "{file}: {}", r.body);
        let job = me.api.wait_job(r.body["job_id"].as_str().unwrap()).await;
        assert_eq!(job["state"], "done", "{file}: {job}");
        if file.ends_with(".epub") {
            epubs.push((
                job["book_id"].as_str().unwrap().to_string(),
                file.to_string(),
            ));
        }
    }
    epubs
}

async fn new_kobo(api: &Api, name: &str) -> (String, String, String) {
    let r = api
        .post("/v1/kobo/tokens", json!({"device_name": name}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (
        r.body["device_id"].as_str().unwrap().to_string(),
        r.body["token"].as_str().unwrap().to_string(),
        r.body["api_endpoint"].as_str().unwrap().to_string(),
    )
}

/// Width, height and colour components from a JPEG's frame header.
fn jpeg_frame(b: &[u8]) -> (u32, u32, u8) {
    let mut i = 2;
    while i + 9 < b.len() {
        assert_eq!(b[i], 0xFF, "JPEG marker expected at {i}");
        let marker = b[i + 1];
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if (0xC0..=0xC2).contains(&marker) {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as u32;
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as u32;
            return (w, h, b[i + 9]);
        }
        i += 2 + len;
    }
    panic!("no JPEG frame header");
}

/// A reader with a Kobo connected and books uploaded: `None` uploads every good fixture,
/// `Some(names)` those files of `books/good/`.
struct Setup {
    server: Server,
    me: Reader,
    device_id: String,
    token: String,
    endpoint: String,
    kobo: Kobo,
    /// (book id, fixture path) of the EPUBs uploaded.
    epubs: Vec<(String, String)>,
}

async fn setup(page_size: usize, files: Option<&[&str]>) -> Setup {
    setup_with(page_size, files, &[]).await
}

async fn setup_with(page_size: usize, files: Option<&[&str]>, env: &[(&str, &str)]) -> Setup {
    let size = page_size.to_string();
    let mut env = env.to_vec();
    env.push(("DOGEAR_KOBO__PAGE_SIZE", &size));
    let server = Server::start_with(&env);
    let me = Reader::new(&server, "koboreader").await;
    let epubs = import_fixtures(&me, |file| {
        files.is_none_or(|names| names.iter().any(|n| file.ends_with(&format!("/{n}"))))
    })
    .await;
    let (device_id, token, endpoint) = new_kobo(&me.api, "Libra Colour").await;
    let kobo = Kobo::new(&endpoint);
    Setup {
        server,
        me,
        device_id,
        token,
        endpoint,
        kobo,
        epubs,
    }
}

impl Setup {
    fn book(&self, file: &str) -> String {
        self.epubs
            .iter()
            .find(|(_, f)| f.ends_with(&format!("/{file}")))
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("{file} was not uploaded"))
    }

    fn epub_ids(&self) -> BTreeSet<String> {
        self.epubs.iter().map(|(id, _)| id.clone()).collect()
    }

    /// The KEPUB the Kobo downloads for `book`, by entry.
    async fn download_kepub(&self, book: &str) -> BTreeMap<String, Vec<u8>> {
        let meta = self.kobo.get(&format!("/v1/library/{book}/metadata")).await;
        let url = meta.body[0]["DownloadUrls"][0]["Url"].as_str().unwrap();
        let r = self.kobo.http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        zip_entries(&r.bytes().await.unwrap())
    }

    /// The captured device `PUT` for `book`; returns its `LastModified`.
    async fn put_capture(&self, book: &str) -> String {
        let mut put: Value = capture("small.kobo.v1.library.UUID.state.PUT.request-body.json");
        put["ReadingStates"][0]["EntitlementId"] = json!(book);
        let url = format!("{}/v1/library/{book}/state", self.endpoint);
        let r = self.kobo.call("PUT", &url, Some(put.clone())).await;
        assert_eq!(r.status, 200, "{}", r.body);
        put["ReadingStates"][0]["LastModified"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Step 1 of connecting a Kobo: its token and `api_endpoint`.
#[tokio::test]
async fn a_token_is_made_once_listed_and_checked() {
    let server = Server::start();
    let me = Reader::new(&server, "koboreader").await;
    // A token for the device: the api_endpoint line points here and carries the token.
    let (device_id, token, endpoint) = new_kobo(&me.api, "Libra Colour").await;
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(endpoint, format!("{}/kobo/{token}", server.client().base));
    let list = me.api.get("/v1/kobo/tokens").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["items"][0]["device_id"], device_id.as_str());
    assert!(
        !list.body.to_string().contains(&token),
        "tokens are never listed"
    );
    let bad = me.api.post("/v1/kobo/tokens", json!({})).await;
    assert!(bad.assert_error(400, "bad_request").contains("device_name"));
}

/// The device signs in (`/v1/auth/device`) and refreshes, shaped like the capture.
#[tokio::test]
async fn device_auth_and_refresh_are_shaped_like_the_store() {
    let s = setup(100, Some(&[])).await;
    let (kobo, endpoint) = (&s.kobo, s.endpoint.as_str());
    // Device auth: shaped like the capture, echoing the (empty) UserKey.
    let auth_req = "{\"AffiliateName\":\"Kobo\",\"AppVersion\":\"4.38.21908\",\"ClientKey\":\"MDEyMzQ1Njc4OWFiY2RlZg==\",\"DeviceId\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"PlatformId\":\"00000000-0000-0000-0000-000000000377\",\"SerialNumber\":\"N000000000000\",\"UserKey\":\"\"}";
    let auth = kobo
        .call(
            "POST",
            &format!("{endpoint}/v1/auth/device"),
            Some(serde_json::from_str(auth_req).unwrap()),
        )
        .await;
    assert_eq!(auth.status, 200);
    same_shape(
        &auth.body,
        &capture("small.kobo.v1.auth.device.body"),
        "auth",
    );
    assert_eq!(auth.body["UserKey"], "");
    let refresh = kobo
        .call(
            "POST",
            &format!("{endpoint}/v1/auth/refresh"),
            Some(json!({"RefreshToken": auth.body["RefreshToken"]})),
        )
        .await;
    assert_eq!(refresh.status, 200);
    assert!(refresh.body["AccessToken"].is_string());
}

/// `/v1/initialization`: the store's every key, its URLs pointing at Dogear, gzip on request.
#[tokio::test]
async fn initialization_points_every_store_url_here_and_gzips() {
    let s = setup(100, Some(&[])).await;
    let (server, kobo, endpoint) = (&s.server, &s.kobo, s.endpoint.as_str());
    // Initialization: every key the store sends, every store URL pointing here.
    let init = kobo.get("/v1/initialization").await;
    assert_eq!(init.status, 200);
    let cap_headers = capture_headers("small.kobo.v1.initialization.headers");
    assert_eq!(
        init.headers["x-kobo-apitoken"],
        cap_headers["x-kobo-apitoken"]
    );
    let res = init.body["Resources"].as_object().expect("Resources");
    let theirs = capture("small.kobo.v1.initialization.body");
    for (k, v) in theirs["Resources"].as_object().unwrap() {
        let ours = res.get(k).unwrap_or_else(|| panic!("resource {k} missing"));
        assert_eq!(kind(ours), kind(v), "resource {k}");
    }
    let text = init.body.to_string();
    assert!(!text.contains("storeapi.kobo.com"), "a store URL left");
    for k in [
        "library_sync",
        "library_metadata",
        "reading_state",
        "delete_entitlement",
        "add_entitlement",
        "tags",
        "tag_items",
        "delete_tag_items",
        "rename_tag",
        "delete_tag",
        "device_auth",
        "device_refresh",
        "get_download_keys",
        "get_download_link",
        "image_url_template",
        "image_url_quality_template",
        "oauth_host",
    ] {
        assert!(
            res[k].as_str().unwrap().starts_with(endpoint),
            "{k}: {}",
            res[k]
        );
    }
    assert_eq!(res["reading_services_host"], server.client().base.as_str());
    assert_eq!(res["image_host"], server.client().base.as_str());
    assert!(
        res["image_url_quality_template"]
            .as_str()
            .unwrap()
            .ends_with("/{ImageId}/{Width}/{Height}/{Quality}/{IsGreyscale}/image.jpg")
    );
    assert_eq!(res["kobo_wishlist_enabled"], "False");
    // Asked for gzip, as the device does: compressed, and the same document.
    let z = kobo
        .http
        .get(format!("{endpoint}/v1/initialization"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(z.headers()["content-encoding"], "gzip");
    assert_eq!(z.headers()["x-kobo-apitoken"], "e30=");
    let packed = z.bytes().await.unwrap().to_vec();
    assert!(
        packed.len() * 3 < text.len(),
        "{} of {}",
        packed.len(),
        text.len()
    );
    let plain = gunzip(&packed);
    let unpacked: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(unpacked["Resources"], init.body["Resources"]);
}

/// The local OpenID provider a Kobo without a Kobo account signs in with.
#[tokio::test]
async fn oauth_answers_a_device_without_a_kobo_account() {
    let s = setup(100, Some(&[])).await;
    let kobo = &s.kobo;
    let init = kobo.get("/v1/initialization").await;
    let res = init.body["Resources"]
        .as_object()
        .expect("Resources")
        .clone();
    // OAuth for a device without a Kobo account: discovery, authorize, token.
    let oauth = res["oauth_host"].as_str().unwrap().to_string();
    let disco = kobo
        .call(
            "GET",
            &format!("{oauth}/.well-known/openid-configuration"),
            None,
        )
        .await;
    assert_eq!(disco.status, 200);
    assert_eq!(disco.body["token_endpoint"], format!("{oauth}/token"));
    assert!(disco.body.get("access_token").is_none());
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authz = no_redirect
        .get(format!(
            "{oauth}/authorize?scope=openid&response_type=code&client_id=nickel&state=abc123&redirect_uri=kobo://UserAuthenticated&code_challenge=x&code_challenge_method=S256"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(authz.status(), 302);
    let loc = authz.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with("kobo://UserAuthenticated?code="), "{loc}");
    let tok = no_redirect
        .post(format!("{oauth}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=x&code_verifier=y&client_id=nickel")
        .send()
        .await
        .unwrap();
    assert_eq!(tok.status(), 200);
    let tok: Value = tok.json().await.unwrap();
    assert!(tok["access_token"].is_string() && tok["expires_in"] == 3600);
}

/// Store calls Dogear has no feature for: `200`, never `404` or `500`.
#[tokio::test]
async fn store_calls_without_a_feature_answer_harmlessly() {
    let s = setup(100, Some(&[])).await;
    let (server, kobo, endpoint) = (&s.server, &s.kobo, s.endpoint.as_str());
    // Store calls Dogear has no feature for: harmless 200s, never a 404 or 500.
    let profile = kobo.get("/v1/user/profile").await;
    assert_eq!(profile.status, 200);
    assert_eq!(profile.body, capture("small.kobo.v1.user.profile.body"));
    // Raw brackets and braces in the query, as devices send them.
    let assets = kobo
        .get("/v1/assets?DiffRequests=[{Key:EPD-KoboPlus-ReadOnly-NeverSubscribed,ETag:}]")
        .await;
    assert_eq!(assets.status, 200, "{}", assets.body);
    assert_eq!(
        kobo.get("/v1/user/loyalty/benefits").await.body,
        json!({"Benefits": {}})
    );
    let tests = kobo
        .call(
            "POST",
            &format!("{endpoint}/v1/analytics/gettests"),
            Some(json!({"TestKey": "k-1", "PlatformId": "x"})),
        )
        .await;
    assert_eq!(tests.body["TestKey"], "k-1");
    let events = kobo
        .call(
            "POST",
            &format!("{endpoint}/v1/analytics/event"),
            Some(json!({"Events": [{"Id": "e1"}, {"Id": "e2"}]})),
        )
        .await;
    assert_eq!(events.body["AcceptedEvents"], json!(["e1", "e2"]));
    for path in [
        "/v1/products/dictionary/en-us",
        "/v1/deals",
        "/v1/nothing/at/all",
        "",
    ] {
        let r = kobo.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.body, json!({}), "{path}");
    }
    let cfc = kobo
        .call(
            "POST",
            &format!("{}/api/v3/content/checkforchanges", server.client().base),
            Some(json!([{"ContentId": "x", "etag": "y"}])),
        )
        .await;
    assert_eq!((cfc.status, cfc.body.clone()), (200, json!([])));
}

/// The first sync: pages of at most 10, every EPUB once, no PDF, CBZ or file-less book.
#[tokio::test]
async fn a_full_first_sync_pages_every_epub_once() {
    let mut s = setup(10, None).await;
    let epub_ids = s.epub_ids();
    assert!(epub_ids.len() > 10, "need several pages of EPUBs");
    let kobo = &mut s.kobo;
    // The full first sync: several pages of at most 10, every EPUB once, nothing else.
    let pages = kobo.sync_all().await;
    assert!(pages.len() >= 3, "{} pages", pages.len());
    let mut seen = BTreeSet::new();
    for p in &pages {
        assert!(p.len() <= 10, "page of {}", p.len());
        for item in p {
            assert_eq!(key_of(item), "NewEntitlement", "{item}");
            assert!(seen.insert(entitled_id(item)), "sent twice: {item}");
        }
    }
    assert_eq!(seen, epub_ids, "the EPUBs, no PDF, CBZ or file-less book");
    let cap_page = capture("small.kobo.v1.library.sync.page1.body");
    let first = pages[0][0].clone();
    same_shape(&first, &cap_page[0], "NewEntitlement");
    let cap_sync_headers = capture_headers("small.kobo.v1.library.sync.page1.headers");
    assert!(cap_sync_headers.contains_key("x-kobo-synctoken"));
    // A second sync with nothing new returns nothing.
    let (again, more) = kobo.sync_page().await;
    assert_eq!((again.len(), more), (0, false), "{again:?}");
    assert_eq!(
        capture("small.kobo.v1.library.sync.again-nothing-new.body"),
        json!([])
    );
}

/// Metadata is an array of one; its download is a KEPUB of the size it names, with ranges.
#[tokio::test]
async fn metadata_names_a_kepub_download_of_the_exact_size() {
    let s = setup(100, Some(&["hamlet.epub"])).await;
    let (kobo, endpoint) = (&s.kobo, s.endpoint.as_str());
    // Metadata (an array of one) and the download it names: a KEPUB of the exact size.
    let hamlet = s.book("hamlet.epub");
    let meta = kobo.get(&format!("/v1/library/{hamlet}/metadata")).await;
    assert_eq!(meta.status, 200);
    assert_eq!(meta.body.as_array().unwrap().len(), 1);
    same_shape(
        &meta.body,
        &capture("small.kobo.v1.library.UUID.metadata.body"),
        "metadata",
    );
    let dl = &meta.body[0]["DownloadUrls"];
    assert_eq!(dl.as_array().unwrap().len(), 1, "KEPUB only: {dl}");
    assert_eq!(dl[0]["Format"], "KEPUB");
    let url = dl[0]["Url"].as_str().unwrap();
    assert!(url.starts_with(endpoint));
    let r = kobo.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/epub+zip");
    let disp = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(disp.contains(".kepub.epub"), "{disp}");
    let kepub = r.bytes().await.unwrap().to_vec();
    assert_eq!(kepub.len() as u64, dl[0]["Size"].as_u64().unwrap());
    let zip = zip_entries(&kepub);
    assert_eq!(
        zip.get("mimetype").map(Vec::as_slice),
        Some(&b"application/epub+zip"[..])
    );
    let spans: usize = zip
        .iter()
        .filter(|(n, _)| n.ends_with(".xhtml") || n.ends_with(".html"))
        .map(|(_, b)| {
            String::from_utf8_lossy(b)
                .matches("class=\"koboSpan\" id=\"kobo.")
                .count()
        })
        .sum();
    assert!(spans > 100, "koboSpans: {spans}");
    let part = kobo
        .http
        .get(url)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().len(), 100);
    let head = kobo.http.head(url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        kepub.len().to_string()
    );
    assert_eq!(
        kobo.get("/v1/library/00000000-0000-0000-0000-000000000000/metadata")
            .await
            .body,
        json!([])
    );
}

/// Covers scaled into the box the device asks for, both template shapes, greyscale on request.
#[tokio::test]
async fn covers_come_at_the_requested_size_and_greyscale() {
    let s = setup(100, Some(&["hamlet.epub"])).await;
    let (me, token) = (&s.me, &s.token);
    let hamlet = s.book("hamlet.epub");
    let meta = s.kobo.get(&format!("/v1/library/{hamlet}/metadata")).await;
    let with_cover = meta.body[0]["CoverImageId"].as_str().unwrap().to_string();
    assert!(
        with_cover.len() > 36,
        "the cover's etag is in its id: {with_cover}"
    );
    // Scaled into the box.
    let (status, h, jpg) = me
        .api
        .get_bytes(
            &format!("/kobo/{token}/{with_cover}/355/530/false/image.jpg"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "image/jpeg");
    let (w, hgt, comps) = jpeg_frame(&jpg);
    assert!(
        w <= 355 && hgt <= 530 && w % 2 == 0 && hgt % 2 == 0,
        "{w}x{hgt}"
    );
    assert!(w >= 300 || hgt >= 500, "scaled to fill the box: {w}x{hgt}");
    assert_eq!(comps, 3);
    let cap_cover = capture_headers("small.kobo.cover.UUID.355x530.headers");
    assert_eq!(cap_cover["content-type"], "image/jpeg");
    let (status, _, grey) = me
        .api
        .get_bytes(
            &format!("/kobo/{token}/{with_cover}/1264/1680/80/true/image.jpg"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(jpeg_frame(&grey).2, 1, "greyscale JPEG");
}

/// Reading on the Kobo: its `PUT` is live on a WebSocket, in the REST API, and echoed back exactly.
#[tokio::test]
async fn a_kobo_put_is_seen_live_and_echoed_exactly() {
    let mut s = setup(100, Some(&["hamlet.epub"])).await;
    let hamlet = s.book("hamlet.epub");
    s.kobo.sync_all().await;
    let (server, me, kobo, endpoint, device_id) = (
        &s.server,
        &s.me,
        &mut s.kobo,
        s.endpoint.as_str(),
        &s.device_id,
    );
    // Reading on the Kobo: the PUT as a device sends it, seen live on a WebSocket and
    //    through the REST API, and echoed back to the device exactly.
    let web = me.add_device("web").await;
    let (mut ws, _hello) = Socket::connect(server, me.token(), &web).await;
    let mut put: Value = capture("small.kobo.v1.library.UUID.state.PUT.request-body.json");
    put["ReadingStates"][0]["EntitlementId"] = json!(hamlet);
    let lm = put["ReadingStates"][0]["LastModified"]
        .as_str()
        .unwrap()
        .to_string();
    let r = kobo
        .call(
            "PUT",
            &format!("{endpoint}/v1/library/{hamlet}/state"),
            Some(put.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    same_shape(
        &r.body,
        &capture("small.kobo.v1.library.UUID.state.PUT.body"),
        "PUT",
    );
    assert_eq!(r.body["UpdateResults"][0]["PriorityTimestamp"], lm.as_str());
    let pushed = ws
        .next_json_within(std::time::Duration::from_secs(10))
        .await
        .expect("a push on the web socket");
    assert_eq!(pushed["type"], "progress");
    assert_eq!(pushed["state"]["book_id"], hamlet.as_str());
    assert_eq!(pushed["state"]["percent"], 11.0);
    assert_eq!(pushed["state"]["device_id"], device_id.as_str());
    let p = me.api.get(&format!("/v1/books/{hamlet}/progress")).await;
    assert_eq!(p.body["state"]["percent"], 11.0);
    assert_eq!(p.body["state"]["status"], "reading");
    let st = kobo.get(&format!("/v1/library/{hamlet}/state")).await;
    assert_eq!(st.status, 200);
    same_shape(
        &st.body,
        &capture("small.kobo.v1.library.UUID.state.GET.body"),
        "GET state",
    );
    // As the device wrote it: the shape of a Kobo-written state in a sync.
    same_shape(
        &st.body[0],
        &capture("small.kobo.v1.library.sync.after-PUT.body")[0]["ChangedReadingState"]["ReadingState"],
        "GET state after PUT",
    );
    let s0 = &st.body[0];
    assert_eq!(s0["PriorityTimestamp"], lm.as_str());
    assert_eq!(s0["CurrentBookmark"]["ProgressPercent"].to_string(), "11");
    assert_eq!(s0["CurrentBookmark"]["Location"]["Value"], "kobo.12.3");
    assert_eq!(s0["Statistics"]["SpentReadingMinutes"], 12);
    // The same PUT again (two racing on wake-up) changes nothing.
    let again = kobo
        .call(
            "PUT",
            &format!("{endpoint}/v1/library/{hamlet}/state"),
            Some(put.clone()),
        )
        .await;
    assert_eq!(again.status, 200);
    // Its own write does not come back to the device.
    let (items, _) = kobo.sync_page().await;
    assert!(items.is_empty(), "{items:?}");
    // Bad bodies name the field and write nothing.
    let mut worse = put.clone();
    worse["ReadingStates"][0]["CurrentBookmark"]["ProgressPercent"] = json!(140);
    let r = kobo
        .call(
            "PUT",
            &format!("{endpoint}/v1/library/{hamlet}/state"),
            Some(worse),
        )
        .await;
    assert!(
        r.assert_error(400, "bad_request")
            .contains("ProgressPercent")
    );
    let r = kobo
        .call(
            "PUT",
            &format!("{endpoint}/v1/library/{hamlet}/state"),
            Some(json!({"ReadingStates": "no"})),
        )
        .await;
    assert!(r.assert_error(400, "bad_request").contains("ReadingStates"));
    assert_eq!(
        me.api
            .get(&format!("/v1/books/{hamlet}/progress"))
            .await
            .body["state"]["percent"],
        11.0
    );
}

/// Reading on the web: the Kobo gets the position at its next sync, newer than its own, on a span of its KEPUB.
#[tokio::test]
async fn a_web_position_reaches_the_kobo_on_a_span_of_its_kepub() {
    let mut s = setup(100, Some(&["hamlet.epub"])).await;
    let hamlet = s.book("hamlet.epub");
    s.kobo.sync_all().await;
    let zip = s.download_kepub(&hamlet).await;
    let lm = s.put_capture(&hamlet).await;
    let web = s.me.add_device("web").await;
    let (me, kobo) = (&s.me, &mut s.kobo);
    // Reading on the web: the Kobo gets it at its next sync, as newer than its own.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let w = me
        .write(
            &hamlet,
            dogear_e2e::progress(&web, 50.0, now - 1_767_225_600_000),
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    let (items, _) = kobo.sync_page().await;
    assert_eq!(items.len(), 1, "{items:?}");
    let rs = &items[0]["ChangedReadingState"]["ReadingState"];
    assert_eq!(rs["EntitlementId"], hamlet.as_str());
    assert_eq!(rs["CurrentBookmark"]["ProgressPercent"].to_string(), "50");
    assert!(rs["PriorityTimestamp"].as_str().unwrap() > lm.as_str());
    // Placed on a span of the KEPUB the Kobo downloaded, about half-way through.
    let loc = &rs["CurrentBookmark"]["Location"];
    let source = loc["Source"]
        .as_str()
        .expect("a Location for the web's position");
    let span = loc["Value"].as_str().unwrap();
    let doc = String::from_utf8_lossy(zip.get(source).expect("Source is a file of the KEPUB"));
    assert!(
        doc.contains(&format!("id=\"{span}\"")),
        "{span} in {source}"
    );
    assert_eq!(loc["Type"], "KoboSpan");
    // A web position carries no reading statistics: those are left out.
    let mut cap = capture("small.kobo.v1.library.sync.after-PUT.body")[0].clone();
    let cap_rs = &mut cap["ChangedReadingState"]["ReadingState"];
    for (part, field) in [
        ("CurrentBookmark", "ContentSourceProgressPercent"),
        ("CurrentBookmark", "Location"),
        ("Statistics", "SpentReadingMinutes"),
        ("Statistics", "RemainingTimeMinutes"),
    ] {
        cap_rs[part].as_object_mut().unwrap().remove(field);
    }
    same_shape(&items[0], &cap, "ChangedReadingState");
}

/// An edit, a deletion, a new upload and a new shelf reach the Kobo at its next sync, and nothing else.
#[tokio::test]
async fn library_changes_reach_the_kobo_at_its_next_sync() {
    let mut s = setup(
        100,
        Some(&[
            "hamlet.epub",
            "macbeth.epub",
            "sonnets.epub",
            "apache-2.0.epub",
        ]),
    )
    .await;
    let hamlet = s.book("hamlet.epub");
    let epubs = s.epubs.clone();
    s.kobo.sync_all().await;
    let (me, kobo) = (&s.me, &mut s.kobo);
    // The library changes: an edit, a deletion, a new upload, a shelf.
    let (edited, _) = epubs.iter().find(|(id, _)| *id != hamlet).cloned().unwrap();
    let r = me
        .api
        .patch(
            &format!("/v1/books/{edited}"),
            json!({"title": "Renamed on the web"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (gone, gone_file) = epubs
        .iter()
        .find(|(id, _)| *id != hamlet && *id != edited)
        .cloned()
        .unwrap();
    assert_eq!(
        me.api.delete(&format!("/v1/books/{gone}")).await.status,
        204
    );
    let shelf = me
        .api
        .post(
            "/v1/shelves",
            json!({"name": "Beach", "book_ids": [hamlet]}),
        )
        .await;
    assert_eq!(shelf.status, 201, "{}", shelf.body);
    let shelf_id = shelf.body["id"].as_str().unwrap().to_string();
    let bytes = std::fs::read(fixtures().join(&gone_file)).unwrap();
    let up = me.api.upload(bytes, "again.epub", None).await;
    let job = me.api.wait_job(up.body["job_id"].as_str().unwrap()).await;
    let fresh = job["book_id"].as_str().unwrap().to_string();
    assert_ne!(fresh, gone);
    let items: Vec<Value> = kobo.sync_all().await.into_iter().flatten().collect();
    let find = |k: &str, id: &str| {
        items
            .iter()
            .find(|i| key_of(i) == k && entitled_id(i) == id)
            .cloned()
    };
    let renamed = find("NewEntitlement", &edited).expect("the edited book again");
    assert_eq!(
        renamed["NewEntitlement"]["BookMetadata"]["Title"],
        "Renamed on the web"
    );
    let cpm = items
        .iter()
        .find(|i| key_of(i) == "ChangedProductMetadata")
        .expect("ChangedProductMetadata with it");
    assert_eq!(
        cpm["ChangedProductMetadata"]["EntitlementId"],
        edited.as_str()
    );
    let removed = find("ChangedEntitlement", &gone).expect("the deleted book removed");
    assert_eq!(
        removed["ChangedEntitlement"]["BookEntitlement"]["IsRemoved"],
        true
    );
    assert!(find("NewEntitlement", &fresh).is_some(), "the new upload");
    let tag = items
        .iter()
        .find(|i| key_of(i) == "NewTag")
        .expect("the shelf as a collection");
    assert_eq!(tag["NewTag"]["Tag"]["Id"], shelf_id.as_str());
    assert_eq!(tag["NewTag"]["Tag"]["Name"], "Beach");
    assert_eq!(
        tag["NewTag"]["Tag"]["Items"],
        json!([{"RevisionId": hamlet, "Type": "ProductRevisionTagItem"}])
    );
    assert_eq!(items.len(), 5, "nothing else: {items:?}");
}

/// Collections made, filled, renamed and deleted on the Kobo change the reader's shelves.
#[tokio::test]
async fn collections_made_on_the_kobo_become_shelves() {
    let s = setup(100, Some(&["hamlet.epub", "macbeth.epub"])).await;
    let (me, kobo, endpoint) = (&s.me, &s.kobo, s.endpoint.as_str());
    let (hamlet, edited) = (s.book("hamlet.epub"), s.book("macbeth.epub"));
    let shelf = me
        .api
        .post(
            "/v1/shelves",
            json!({"name": "Beach", "book_ids": [hamlet]}),
        )
        .await;
    assert_eq!(shelf.status, 201, "{}", shelf.body);
    let shelf_id = shelf.body["id"].as_str().unwrap().to_string();
    // Collections made on the device become shelves.
    let made = kobo
        .call(
            "POST",
            &format!("{endpoint}/v1/library/tags"),
            Some(json!({"Name": "Made on Kobo", "Items": [
                {"RevisionId": edited, "Type": "ProductRevisionTagItem"},
                {"RevisionId": "not-a-dogear-book", "Type": "ProductRevisionTagItem"}]})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let tag_id = made.body.as_str().expect("a bare string id").to_string();
    let shelves = me.api.get("/v1/shelves").await.body;
    let mine = shelves["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == tag_id.as_str())
        .expect("the collection as a shelf")
        .clone();
    assert_eq!(mine["name"], "Made on Kobo");
    assert_eq!(mine["book_ids"], json!([edited]));
    let add = kobo
        .call(
            "POST",
            &format!("{endpoint}/v1/library/tags/{tag_id}/Items"),
            Some(json!({"Items": [{"RevisionId": hamlet, "Type": "ProductRevisionTagItem"}]})),
        )
        .await;
    assert_eq!(add.status, 201);
    let rename = kobo
        .call(
            "PUT",
            &format!("{endpoint}/v1/library/tags/{tag_id}"),
            Some(json!({"Name": "Holiday"})),
        )
        .await;
    assert_eq!(rename.status, 200);
    let s = me.api.get(&format!("/v1/shelves/{tag_id}")).await.body;
    assert_eq!(
        (s["name"].clone(), s["book_ids"].clone()),
        (json!("Holiday"), json!([edited, hamlet]))
    );
    let unknown = kobo
        .call(
            "DELETE",
            &format!("{endpoint}/v1/library/tags/0190ffee-0000-7000-8000-000000000002"),
            None,
        )
        .await;
    assert_eq!(unknown.status, 200, "unknown tags never 404");
    let del = kobo
        .call(
            "DELETE",
            &format!("{endpoint}/v1/library/tags/{shelf_id}"),
            None,
        )
        .await;
    assert_eq!(del.status, 200);
    assert_eq!(
        me.api.get(&format!("/v1/shelves/{shelf_id}")).await.status,
        404
    );
}

/// The reader removes a book on the Kobo: `204`, and it is not offered again, even when edited.
#[tokio::test]
async fn a_book_removed_on_the_kobo_is_not_offered_again() {
    let mut s = setup(100, Some(&["hamlet.epub", "macbeth.epub"])).await;
    let hamlet = s.book("hamlet.epub");
    s.kobo.sync_all().await;
    let (me, kobo, endpoint) = (&s.me, &mut s.kobo, s.endpoint.as_str());
    // The reader removes a book from the device: 204, and it is not offered again.
    let r = kobo
        .call("DELETE", &format!("{endpoint}/v1/library/{hamlet}"), None)
        .await;
    assert_eq!(r.status, 204);
    let r = me
        .api
        .patch(
            &format!("/v1/books/{hamlet}"),
            json!({"title": "Hamlet, edited"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let after: Vec<Value> = kobo.sync_all().await.into_iter().flatten().collect();
    assert!(
        !after.iter().any(|i| entitled_id(i) == hamlet),
        "an archived book is not pushed back: {after:?}"
    );
}

/// The sync position is stored (SIGKILL and restart: nothing new is nothing); a factory reset gets everything again.
#[tokio::test]
async fn the_sync_position_survives_a_restart_and_a_reset_starts_over() {
    let mut s = setup(
        2,
        Some(&[
            "hamlet.epub",
            "macbeth.epub",
            "sonnets.epub",
            "apache-2.0.epub",
            "gpl-3.0.epub",
        ]),
    )
    .await;
    let epub_ids = s.epub_ids();
    s.kobo.sync_all().await;
    let token = s.token.clone();
    let (server, me, kobo) = (&mut s.server, &mut s.me, &mut s.kobo);
    // The position is stored: after a SIGKILL and a restart, nothing new means nothing.
    server.kill9();
    server.restart();
    let base = server.client().base;
    me.api.base = base.clone();
    kobo.endpoint = format!("{base}/kobo/{token}");
    let (items, more) = kobo.sync_page().await;
    assert_eq!((items.len(), more), (0, false), "{items:?}");
    // A factory reset (no token): everything again, as new.
    kobo.sync_token = None;
    let all: Vec<Value> = kobo.sync_all().await.into_iter().flatten().collect();
    let news: BTreeSet<String> = all
        .iter()
        .filter(|i| key_of(i) == "NewEntitlement")
        .map(entitled_id)
        .collect();
    assert_eq!(news.len(), epub_ids.len(), "every live EPUB again");
}

/// A second Kobo gets everything on its own, even firing two sync requests at once.
#[tokio::test]
async fn a_second_kobo_syncs_on_its_own_even_with_racing_requests() {
    let s = setup(
        2,
        Some(&[
            "hamlet.epub",
            "macbeth.epub",
            "sonnets.epub",
            "apache-2.0.epub",
            "gpl-3.0.epub",
        ]),
    )
    .await;
    let epub_ids = s.epub_ids();
    let me = &s.me;
    // A second Kobo of the same reader gets everything on its own, even when it fires
    //     two sync requests at once (wake-up): they are served one after the other, so
    //     between them nothing is sent twice and nothing is skipped.
    let (_, _, second) = new_kobo(&me.api, "Clara").await;
    let mut clara = Kobo::new(&second);
    let (first_page, more) = clara.sync_page().await;
    assert!(more);
    let mut twin = Kobo::new(&second);
    twin.sync_token = clara.sync_token.clone();
    let ((a, _), (b, _)) = tokio::join!(clara.sync_page(), twin.sync_page());
    let rest: Vec<Value> = clara.sync_all().await.into_iter().flatten().collect();
    let mut got = BTreeSet::new();
    for item in first_page.iter().chain(&a).chain(&b).chain(&rest) {
        if key_of(item) == "NewEntitlement" {
            assert!(got.insert(entitled_id(item)), "sent twice: {item}");
        }
    }
    assert_eq!(got.len(), epub_ids.len(), "every live EPUB once");
}

/// Another reader's Kobo gets neither metadata nor files of this reader's books.
#[tokio::test]
async fn another_readers_kobo_sees_none_of_it() {
    let s = setup(100, Some(&["hamlet.epub"])).await;
    let (server, hamlet) = (&s.server, s.book("hamlet.epub"));
    // Another reader's Kobo sees none of it.
    let other = Reader::new(server, "stranger").await;
    let (_, _, theirs) = new_kobo(&other.api, "Sage").await;
    let stranger = Kobo::new(&theirs);
    assert_eq!(
        stranger
            .get(&format!("/v1/library/{hamlet}/metadata"))
            .await
            .body,
        json!([])
    );
    let r = stranger.get(&format!("/download/{hamlet}/kepub")).await;
    assert_eq!(r.status, 404);
}

/// Revoked: the device gets `401` at once, and the token was never written to the log or metrics.
#[tokio::test]
async fn a_revoked_kobo_is_refused_and_its_token_never_logged() {
    // Request lines (with their paths) are logged at debug.
    let mut s = setup_with(100, Some(&["hamlet.epub"]), &[("RUST_LOG", "debug")]).await;
    s.kobo.sync_all().await;
    let (server, me, kobo, device_id, token) =
        (&s.server, &s.me, &s.kobo, &s.device_id, s.token.as_str());
    // Revoked: the device is refused, and the token was never logged.
    let r = me.api.delete(&format!("/v1/kobo/tokens/{device_id}")).await;
    assert_eq!(r.status, 204);
    let r = kobo.get("/v1/library/sync").await;
    r.assert_error(401, "unauthorized");
    let r = kobo.get("/v1/initialization").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        me.api
            .delete(&format!("/v1/kobo/tokens/{device_id}"))
            .await
            .status,
        404
    );
    let log = server.log();
    assert!(
        log.contains("/kobo/{token}/"),
        "requests are logged, redacted"
    );
    assert!(!log.contains(token), "the token is in the log");
    assert!(
        !server.metrics().await.contains(token),
        "the token is in the metrics"
    );
}

#[tokio::test]
async fn urls_follow_the_proxy_and_the_configured_public_url() {
    let server = Server::start();
    let me = Reader::new(&server, "proxied").await;
    let r = me
        .api
        .http
        .post(format!("{}/v1/kobo/tokens", me.api.base))
        .bearer_auth(me.token())
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "books.example.org")
        .header("x-forwarded-port", "443")
        .json(&json!({"device_name": "Libra"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(
        body["api_endpoint"],
        format!("https://books.example.org/kobo/{token}")
    );
    let configured =
        Server::start_with(&[("DOGEAR_SERVER__PUBLIC_URL", "https://read.example.net/")]);
    let you = Reader::new(&configured, "configured").await;
    let (_, token, endpoint) = new_kobo(&you.api, "Libra").await;
    assert_eq!(endpoint, format!("https://read.example.net/kobo/{token}"));
    // The device reaches the server at its own address; the URLs it is given are public.
    let local = format!("{}/kobo/{token}", configured.client().base);
    let init = Kobo::new(&local).get("/v1/initialization").await;
    assert_eq!(
        init.body["Resources"]["library_sync"],
        format!("https://read.example.net/kobo/{token}/v1/library/sync")
    );
    let r = eventually(5, "an unknown token refused", || async {
        let r = Kobo::new(&format!(
            "{}/kobo/{}",
            configured.client().base,
            "0".repeat(64)
        ))
        .get("/v1/library/sync")
        .await;
        (r.status == 401).then_some(())
    })
    .await;
    let _: () = r;
}

#[tokio::test]
async fn calibre_books_go_out_as_kepubs_made_on_first_download_and_stay_put() {
    let lib = tempfile::tempdir().unwrap();
    dogear_e2e::copy_dir(&fixtures().join("calibre-library"), lib.path());
    let config = format!(
        "[[import.calibre]]\npath = \"{}\"\nlibrary = \"calikobo\"\n",
        lib.path().display()
    );
    let (_server, me) = dogear_e2e::node_with(&config, "calikobo", &[]).await;
    let api = me.api.clone();
    let epubs: Vec<Value> = eventually(30, "25 Calibre books", || {
        let api = api.clone();
        async move {
            let all = api.all_books("").await;
            (all.len() >= 26).then_some(all)
        }
    })
    .await
    .into_iter()
    .filter(|b| {
        b["formats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["format"] == "epub")
    })
    .collect();
    assert!(!epubs.is_empty());
    let (_, _, endpoint) = new_kobo(&me.api, "Libra").await;
    let mut kobo = Kobo::new(&endpoint);
    let items: Vec<Value> = kobo.sync_all().await.into_iter().flatten().collect();
    assert_eq!(items.len(), epubs.len(), "one entitlement per EPUB book");
    for b in &epubs {
        let item = items
            .iter()
            .find(|i| entitled_id(i) == b["id"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{} synced", b["title"]));
        let dl = &item["NewEntitlement"]["BookMetadata"]["DownloadUrls"];
        assert_eq!(dl[0]["Format"], "KEPUB", "{}", b["title"]);
        let epub_size = b["formats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["format"] == "epub")
            .unwrap()["size"]
            .clone();
        assert_eq!(
            dl[0]["Size"], epub_size,
            "the EPUB's size until the KEPUB exists"
        );
    }
    // The first download makes the KEPUB, from the Calibre folder, left untouched.
    let url = items[0]["NewEntitlement"]["BookMetadata"]["DownloadUrls"][0]["Url"]
        .as_str()
        .unwrap()
        .to_string();
    let r = kobo.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".kepub.epub")
    );
    let kepub = r.bytes().await.unwrap().to_vec();
    let spans: usize = zip_entries(&kepub)
        .values()
        .map(|b| {
            String::from_utf8_lossy(b)
                .matches("class=\"koboSpan\"")
                .count()
        })
        .sum();
    assert!(spans > 0, "a KEPUB, made on demand");
    // Making it changed the book record, not what the device shows: no re-announcement
    // (that would make the Kobo drop the copy it just downloaded).
    let (again, more) = kobo.sync_page().await;
    assert_eq!((again.len(), more), (0, false), "{again:?}");
    let meta = kobo
        .get(&format!("/v1/library/{}/metadata", entitled_id(&items[0])))
        .await;
    assert_eq!(
        meta.body[0]["DownloadUrls"][0]["Size"].as_u64().unwrap(),
        kepub.len() as u64,
        "the exact size once the KEPUB exists"
    );
}

/// The `Result` of the bookmark, statistics and status parts of a `PUT`'s answer.
fn part_results(r: &Resp) -> [String; 3] {
    let res = &r.body["UpdateResults"][0];
    [
        "CurrentBookmarkResult",
        "StatisticsResult",
        "StatusInfoResult",
    ]
    .map(|part| {
        res[part]["Result"]
            .as_str()
            .unwrap_or("missing")
            .to_string()
    })
}

/// A Kobo `PUT .../state` as an attacker or a broken clock sends it: times that are not
/// times are refused by name with nothing written, an oversized location is refused, parts
/// older than what is stored are answered "Ignored" (not "Success"), and a clock in year
/// 9999 is clamped so that later writes, from the Kobo and elsewhere, still apply.
#[tokio::test]
async fn kobo_state_puts_are_checked_and_report_what_they_ignored() {
    // The reader's metadata-only book is enough: a state needs a book, not a file.
    let s = setup(100, Some(&[])).await;
    let (me, kobo, endpoint) = (&s.me, &s.kobo, s.endpoint.as_str());
    let book = me.book.clone();
    let url = format!("{endpoint}/v1/library/{book}/state");
    let state = |lm: &str, pct: u32, extra: Value| {
        let mut s = json!({
            "EntitlementId": book,
            "LastModified": lm,
            "PriorityTimestamp": lm,
            "CurrentBookmark": {"LastModified": lm, "ProgressPercent": pct,
                "Location": {"Value": "kobo.3.1", "Type": "KoboSpan", "Source": "ch1.xhtml"}},
            "Statistics": {"LastModified": lm, "SpentReadingMinutes": 3},
            "StatusInfo": {"LastModified": lm, "Status": "Reading"},
        });
        if let (Some(s), Value::Object(x)) = (s.as_object_mut(), extra) {
            s.extend(x);
        }
        json!({ "ReadingStates": [s] })
    };
    let progress =
        || async { me.api.get(&format!("/v1/books/{book}/progress")).await.body["state"].clone() };

    // Garbage times: 400 naming the field, nothing stored.
    for (body, field) in [
        (
            state("garbage", 20, json!({})),
            "ReadingStates[0].LastModified",
        ),
        (
            state(
                "2026-11-20T21:04:55Z",
                20,
                json!({"StatusInfo": {"LastModified": "soon", "Status": "Reading"}}),
            ),
            "ReadingStates[0].StatusInfo.LastModified",
        ),
    ] {
        let r = kobo.call("PUT", &url, Some(body)).await;
        assert!(
            r.assert_error(400, "bad_request").starts_with(field),
            "{}",
            r.body
        );
    }
    assert!(progress().await.is_null(), "nothing written");

    // An oversized location is refused, not cut.
    let big = state(
        "2026-11-20T21:04:55Z",
        20,
        json!({"CurrentBookmark": {"LastModified": "2026-11-20T21:04:55Z", "ProgressPercent": 20,
            "Location": {"Value": "k".repeat(5000), "Type": "KoboSpan", "Source": "ch1.xhtml"}}}),
    );
    let r = kobo.call("PUT", &url, Some(big)).await;
    assert!(
        r.assert_error(400, "bad_request")
            .starts_with("ReadingStates[0].CurrentBookmark.Location.Value")
    );

    // A real write, then an older one: the older parts are "Ignored".
    let r = kobo
        .call(
            "PUT",
            &url,
            Some(state("2026-11-20T21:04:55Z", 30, json!({}))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(part_results(&r), ["Success"; 3], "{}", r.body);
    let r = kobo
        .call(
            "PUT",
            &url,
            Some(state("2026-11-19T08:00:00Z", 10, json!({}))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(part_results(&r), ["Ignored"; 3], "{}", r.body);
    assert_eq!(progress().await["percent"], 30.0);
    // The same newer PUT again is a replay: "Success", nothing changes.
    let r = kobo
        .call(
            "PUT",
            &url,
            Some(state("2026-11-20T21:04:55Z", 30, json!({}))),
        )
        .await;
    assert_eq!(
        r.body["UpdateResults"][0]["CurrentBookmarkResult"]["Result"],
        "Success"
    );

    // A clock in year 9999: clamped to the server's time, and the answer shows it.
    let r = kobo
        .call(
            "PUT",
            &url,
            Some(state("9999-12-31T23:59:59Z", 40, json!({}))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answered = r.body["UpdateResults"][0]["LastModified"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        answered.starts_with("20"),
        "the server's time, not 9999: {answered}"
    );
    let p = progress().await;
    assert_eq!(p["percent"], 40.0);
    assert!(p["client_ts"].as_str().unwrap().starts_with("20"), "{p}");
    // ...so a rewind a minute later still applies, from the Kobo...
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // A minute from now (`ts` counts from 2026-01-01).
    let soon = dogear_e2e::ts(now_ms - 1_767_225_600_000 + 60_000);
    let reset = json!({"ReadingStates": [{"LastModified": soon,
        "StatusInfo": {"LastModified": soon, "Status": "ReadyToRead"}}]});
    let r = kobo.call("PUT", &url, Some(reset)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["UpdateResults"][0]["StatusInfoResult"]["Result"],
        "Success"
    );
    let p = progress().await;
    assert_eq!(
        (p["percent"].as_f64(), p["status"].as_str()),
        (Some(0.0), Some("unread"))
    );

    // ...and over REST: a year-9999 client_ts is clamped and says so.
    let web = me.add_device("web").await;
    let mut body = dogear_e2e::progress(&web, 55.0, 0);
    body["client_ts"] = json!("9999-12-31T23:59:59.000Z");
    let r = me.write(&book, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["clamped"]["field"], "client_ts", "{}", r.body);
    assert_eq!(r.body["clamped"]["sent"], "9999-12-31T23:59:59.000Z");
    assert_eq!(r.body["state"]["client_ts"], r.body["clamped"]["used"]);
    let mut rewind = dogear_e2e::progress(&web, 5.0, 0);
    rewind["client_ts"] = json!(soon);
    rewind["rewind"] = json!(true);
    let r = me.write(&book, rewind).await;
    assert_eq!(
        r.body["applied"], true,
        "a later rewind still applies: {}",
        r.body
    );

    // The Kobo says the book is finished: the reader's record says so too.
    let later = dogear_e2e::ts(now_ms - 1_767_225_600_000 + 120_000);
    let done = json!({"ReadingStates": [{"LastModified": later,
        "StatusInfo": {"LastModified": later, "Status": "Finished"}}]});
    let r = kobo.call("PUT", &url, Some(done)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mine = me.api.get(&format!("/v1/books/{book}/mine")).await.body;
    assert_eq!(mine["status"], "finished", "{mine}");
    assert_eq!(mine["status_source"], "progress");
}
