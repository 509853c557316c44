//! Books in and out over real HTTP: uploads of every fixture with its metadata checked
//! against `expected.json`, byte-for-byte downloads with ranges and validators, covers,
//! KEPUBs, every hostile file's outcome, access control, a SIGKILL mid-import, the
//! `dogear import` command, and an S3-compatible object store.

use dogear_e2e::serde_json::Value;
use dogear_e2e::{Reader, Server, expected, fixtures, zip_entries};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).expect("fixture")
}

fn name_of(rel: &str) -> String {
    rel.rsplit('/').next().unwrap().to_string()
}

/// Uploads one fixture and waits for its job.
async fn import(me: &Reader, rel: &str) -> Value {
    let r = me.api.upload(read(rel), &name_of(rel), None).await;
    assert_eq!(r.status, 202, "{rel}: {}", r.body);
    me.api.wait_job(r.body["job_id"].as_str().unwrap()).await
}

fn sort_of(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{last}, {}", rest.join(" ")),
        _ => name.to_string(),
    }
}

#[tokio::test]
async fn every_good_book_imports_with_its_metadata_and_round_trips() {
    let server = Server::start();
    let me = Reader::new(&server, "importer").await;
    let exp = expected();
    let mut ids = HashMap::new();
    for g in exp["good"].as_array().unwrap() {
        let file = g["file"].as_str().unwrap();
        let job = import(&me, file).await;
        assert_eq!(job["state"], "done", "{file}: {job}");
        assert!(job["duplicate_of"].is_null(), "{file}");
        let id = job["book_id"].as_str().unwrap().to_string();
        let b = me.api.get(&format!("/v1/books/{id}")).await.body;
        let ctx = |f: &str| format!("{file}: {f}: {b}");
        assert_eq!(b["title"], g["title"], "{}", ctx("title"));
        let names: Vec<&Value> = g["authors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["name"])
            .collect();
        assert_eq!(
            b["authors"].as_array().unwrap().iter().collect::<Vec<_>>(),
            names,
            "{}",
            ctx("authors")
        );
        let sorts: Vec<String> = g["authors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a["sort"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| sort_of(a["name"].as_str().unwrap()))
            })
            .collect();
        assert_eq!(
            b["author_sorts"],
            dogear_e2e::serde_json::json!(sorts),
            "{}",
            ctx("author sorts")
        );
        assert_eq!(b["series"], g["series"], "{}", ctx("series"));
        assert_eq!(
            b["series_index"].as_f64(),
            g["series_index"].as_f64(),
            "{}",
            ctx("series_index")
        );
        assert_eq!(b["languages"], g["languages"], "{}", ctx("languages"));
        assert_eq!(
            b["language"],
            g["languages"].get(0).cloned().unwrap_or(Value::Null),
            "{}",
            ctx("language")
        );
        assert_eq!(b["has_cover"], g["has_cover"], "{}", ctx("has_cover"));
        assert_eq!(b["source"], "upload");
        let formats = b["formats"].as_array().unwrap();
        let original = formats
            .iter()
            .find(|f| f["format"] == g["format"])
            .expect("original format");
        assert_eq!(original["hash"], g["xxh3_64"], "{}", ctx("hash"));
        assert_eq!(original["size"], g["size"], "{}", ctx("size"));
        if g["format"] == "epub" {
            assert!(
                formats.iter().any(|f| f["format"] == "kepub"),
                "{}",
                ctx("kepub made")
            );
            let ids_exp: BTreeMap<String, String> =
                dogear_e2e::serde_json::from_value(g["identifiers"].clone()).unwrap();
            let ids_got: BTreeMap<String, String> =
                dogear_e2e::serde_json::from_value(b["identifiers"].clone()).unwrap();
            assert_eq!(ids_got, ids_exp, "{}", ctx("identifiers"));
            assert_eq!(b["publisher"], g["publisher"], "{}", ctx("publisher"));
            assert_eq!(b["tags"], g["tags"], "{}", ctx("tags"));
        }
        ids.insert(file.to_string(), (id, g.clone()));
    }

    // Downloads: byte for byte, with the right headers.
    for (file, (id, g)) in &ids {
        let fmt = g["format"].as_str().unwrap();
        let (status, h, bytes) = me
            .api
            .get_bytes(&format!("/v1/books/{id}/file?format={fmt}"), &[])
            .await;
        assert_eq!(status, 200, "{file}");
        assert_eq!(
            sha256(&bytes),
            g["sha256"].as_str().unwrap(),
            "{file}: downloaded bytes differ"
        );
        let ct = h["content-type"].to_str().unwrap();
        let want = match fmt {
            "epub" => "application/epub+zip",
            "pdf" => "application/pdf",
            _ => "application/vnd.comicbook+zip",
        };
        assert_eq!(ct, want);
        let cd = h["content-disposition"].to_str().unwrap();
        assert!(
            cd.starts_with("attachment; filename=") && cd.contains(&format!(".{fmt}")),
            "{cd}"
        );
        assert_eq!(
            h["etag"].to_str().unwrap(),
            format!("\"{}\"", g["xxh3_64"].as_str().unwrap())
        );
    }
    let (hamlet, g) = &ids["books/good/hamlet.epub"];
    let whole = read("books/good/hamlet.epub");
    let (status, h, part) = me
        .api
        .get_bytes(
            &format!("/v1/books/{hamlet}/file"),
            &[("range", "bytes=100-1099")],
        )
        .await;
    assert_eq!(status, 206);
    assert_eq!(part, whole[100..1100].to_vec());
    assert_eq!(
        h["content-range"].to_str().unwrap(),
        format!("bytes 100-1099/{}", whole.len())
    );
    let (status, _, tail) = me
        .api
        .get_bytes(
            &format!("/v1/books/{hamlet}/file"),
            &[("range", "bytes=-10")],
        )
        .await;
    assert_eq!((status, tail), (206, whole[whole.len() - 10..].to_vec()));
    let (status, h, _) = me
        .api
        .get_bytes(
            &format!("/v1/books/{hamlet}/file"),
            &[("range", "bytes=999999999-")],
        )
        .await;
    assert_eq!(status, 416);
    assert_eq!(
        h["content-range"].to_str().unwrap(),
        format!("bytes */{}", whole.len())
    );
    let etag = format!("\"{}\"", g["xxh3_64"].as_str().unwrap());
    let (status, _, body) = me
        .api
        .get_bytes(
            &format!("/v1/books/{hamlet}/file"),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!((status, body.len()), (304, 0));
    let r = me
        .api
        .get(&format!("/v1/books/{hamlet}/file?format=mobi"))
        .await;
    assert!(r.assert_error(400, "bad_request").contains("format"));
    let (pdf, _) = &ids["books/good/sonnets.pdf"];
    let r = me
        .api
        .get(&format!("/v1/books/{pdf}/file?format=epub"))
        .await;
    r.assert_error(404, "not_found");

    // The KEPUB: a valid zip whose XHTML carries koboSpan ids.
    let (status, h, kepub) = me
        .api
        .get_bytes(&format!("/v1/books/{hamlet}/file?format=kepub"), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"].to_str().unwrap(), "application/kepub+zip");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".kepub.epub")
    );
    let mut zip = zip_entries(&kepub);
    assert_eq!(
        zip.remove("mimetype").as_deref(),
        Some(&b"application/epub+zip"[..])
    );
    let spans: usize = zip
        .iter()
        .filter(|(n, _)| n.ends_with(".xhtml"))
        .map(|(_, b)| {
            String::from_utf8_lossy(b)
                .matches("class=\"koboSpan\" id=\"kobo.")
                .count()
        })
        .sum();
    assert!(spans > 100, "koboSpans in the KEPUB: {spans}");

    // Covers: full as found, thumbnail as a small JPEG, both cacheable with validators.
    let (status, h, full) = me
        .api
        .get_bytes(&format!("/v1/books/{hamlet}/cover?size=full"), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"].to_str().unwrap(), "image/jpeg");
    assert_eq!(full.len() as u64, g["cover"]["bytes"].as_u64().unwrap());
    assert!(
        h["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=31536000")
    );
    let (status, h, thumb) = me
        .api
        .get_bytes(&format!("/v1/books/{hamlet}/cover?size=thumb"), &[])
        .await;
    assert_eq!(status, 200);
    assert!(thumb.starts_with(&[0xFF, 0xD8]) && thumb.len() < full.len());
    let tag = h["etag"].to_str().unwrap().to_string();
    let (status, _, _) = me
        .api
        .get_bytes(
            &format!("/v1/books/{hamlet}/cover?size=thumb"),
            &[("if-none-match", &tag)],
        )
        .await;
    assert_eq!(status, 304);
    let (macbeth, _) = &ids["books/good/macbeth.epub"];
    me.api
        .get(&format!("/v1/books/{macbeth}/cover"))
        .await
        .assert_error(404, "not_found");
    me.api
        .get(&format!("/v1/books/{hamlet}/cover?size=huge"))
        .await
        .assert_error(400, "bad_request");

    // A byte-identical copy under another name is a duplicate of the first.
    let job = import(&me, "books/duplicates/Hamlet (copy).epub").await;
    assert_eq!(job["state"], "done");
    assert_eq!(job["duplicate_of"].as_str(), Some(hamlet.as_str()));

    // Search, filters and sorts over what was imported.
    let titles = |v: Vec<Value>| {
        v.iter()
            .map(|b| b["title"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let henriad = titles(me.api.all_books("series=Henriad&sort=series").await);
    assert_eq!(
        henriad,
        [
            "Richard II",
            "Henry IV, Part 1",
            "Henry IV, Part 2",
            "The Merry Wives of Windsor",
            "Henry V"
        ]
    );
    let found = titles(me.api.all_books("q=henriad").await);
    assert_eq!(found.len(), 5, "q searches series: {found:?}");
    let found = titles(me.api.all_books("q=schember").await);
    assert_eq!(found.len(), 3, "q searches authors: {found:?}");
    let found = titles(me.api.all_books("tag=Tragedy").await);
    assert!(found.contains(&"Macbeth".to_string()), "{found:?}");
    let found = titles(me.api.all_books("author=Ambrose%20Bierce").await);
    assert_eq!(found, ["The Devil's Dictionary"]);
    let by_title = titles(me.api.all_books("sort=title").await);
    assert_eq!(
        by_title.len(),
        26,
        "25 imports and the reader's metadata-only book"
    );
    let by_author = me.api.all_books("sort=author").await;
    assert_eq!(by_author.len(), 26);
    let by_added = titles(me.api.all_books("sort=added").await);
    assert_eq!(by_added[0], "Hamlet", "the metadata-only book came first");
    me.api
        .get("/v1/books?sort=rating")
        .await
        .assert_error(400, "bad_request");
    me.api
        .get("/v1/books?sort=title&cursor=garbage")
        .await
        .assert_error(400, "bad_request");

    // Imported metadata can be edited, and the search follows.
    let r = me
        .api
        .patch(
            &format!("/v1/books/{hamlet}"),
            dogear_e2e::serde_json::json!({"series": "Great Tragedies", "series_index": 2, "tags": ["Drama", "Revenge"], "publisher": "Globe"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["series"], "Great Tragedies");
    assert_eq!(r.body["series_index"], 2.0);
    assert_eq!(
        r.body["tags"],
        dogear_e2e::serde_json::json!(["Drama", "Revenge"])
    );
    let found = titles(me.api.all_books("series=great%20tragedies").await);
    assert_eq!(found, ["Hamlet, Prince of Denmark"]);
    assert_eq!(
        titles(me.api.all_books("tag=revenge").await),
        ["Hamlet, Prince of Denmark"]
    );
    let r = me
        .api
        .patch(
            &format!("/v1/books/{hamlet}"),
            dogear_e2e::serde_json::json!({"series": null}),
        )
        .await;
    assert!(
        r.body["series"].is_null() && r.body["series_index"].is_null(),
        "{}",
        r.body
    );
    let r = me
        .api
        .patch(
            &format!("/v1/books/{hamlet}"),
            dogear_e2e::serde_json::json!({"series_index": -1}),
        )
        .await;
    assert!(r.assert_error(400, "bad_request").contains("series_index"));
    let r = me
        .api
        .patch(
            &format!("/v1/books/{hamlet}"),
            dogear_e2e::serde_json::json!({"tags": "Drama"}),
        )
        .await;
    assert!(r.assert_error(400, "bad_request").contains("tags"));

    // Nobody else sees any of it.
    let other = Reader::new(&server, "outsider").await;
    let job = job["job_id"].as_str().unwrap();
    other
        .api
        .get(&format!("/v1/imports/{job}"))
        .await
        .assert_error(404, "not_found");
    other
        .api
        .get(&format!("/v1/books/{hamlet}/file"))
        .await
        .assert_error(404, "not_found");
    other
        .api
        .get(&format!("/v1/books/{hamlet}/cover"))
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        other.api.all_books("q=hamlet").await.len(),
        1,
        "only their own Hamlet"
    );
    let mine = me.api.get("/v1/libraries").await.body["items"][0]["id"].clone();
    let r = other
        .api
        .upload(b"x".to_vec(), "x.epub", mine.as_str())
        .await;
    r.assert_error(404, "not_found");
}

/// The KEPUB Dogear hands out for a hostile book: no entry that was a link, device or FIFO
/// (their "content" is a path such as `/etc/passwd`), no declared entities.
async fn kepub_holds_nothing_hostile(me: &Reader, id: &str, file: &str) {
    let (status, _, bytes) = me
        .api
        .get_bytes(&format!("/v1/books/{id}/file?format=kepub"), &[])
        .await;
    assert_eq!(status, 200, "{file}");
    for (name, data) in zip_entries(&bytes) {
        // As a device reads it: UTF-16 by its byte-order mark, else UTF-8.
        let text = match data.as_slice() {
            [0xFF, 0xFE, rest @ ..] => String::from_utf16_lossy(
                &rest
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            ),
            _ => String::from_utf8_lossy(&data).into_owned(),
        };
        for bad in [
            "/etc/passwd",
            "/etc/shadow",
            "data in a directory",
            "<!ENTITY",
            "&lol",
        ] {
            assert!(
                !text.contains(bad),
                "{file}: KEPUB entry {name} holds {bad:?}"
            );
        }
    }
}

#[tokio::test]
async fn hostile_files_get_their_outcomes_and_the_batch_goes_on() {
    let server = Server::start();
    let me = Reader::new(&server, "hostile").await;
    let exp = expected();
    // Interleave bad and good uploads: every good one must still import.
    let mut jobs = Vec::new();
    let (bad, good) = (
        exp["bad"].as_array().unwrap(),
        exp["good"].as_array().unwrap(),
    );
    for (i, b) in bad.iter().enumerate() {
        // Past the end of the good books, a good one again: a duplicate, still `done`.
        for e in [b, &good[i % good.len()]] {
            let file = e["file"].as_str().unwrap();
            let r = me.api.upload(read(file), &name_of(file), None).await;
            assert_eq!(r.status, 202, "{file}: {}", r.body);
            jobs.push((e.clone(), r.body["job_id"].as_str().unwrap().to_string()));
        }
    }
    for (e, job) in jobs {
        let file = e["file"].as_str().unwrap();
        let j = me.api.wait_job(&job).await;
        match e["outcome"].as_str().unwrap() {
            "reject" => {
                assert_eq!(j["state"], "failed", "{file}: {j}");
                assert_eq!(j["error"]["code"], e["error"], "{file}: {j}");
                let msg = j["error"]["message"].as_str().unwrap();
                assert!(
                    !msg.is_empty() && !msg.contains(server.data.to_str().unwrap()),
                    "{file}: {msg}"
                );
                assert!(j["book_id"].is_null());
            }
            "import" => {
                assert_eq!(j["state"], "done", "{file}: {j}");
                if let Some(expect) = e.get("expect") {
                    let id = j["book_id"].as_str().unwrap_or_else(|| {
                        j["duplicate_of"].as_str().expect("a book or a duplicate")
                    });
                    let b = me.api.get(&format!("/v1/books/{id}")).await.body;
                    assert_eq!(b["title"], expect["title"], "{file}");
                    for key in ["has_cover", "authors"] {
                        if let Some(v) = expect.get(key) {
                            assert_eq!(&b[key], v, "{file}: {key}");
                        }
                    }
                    let codes: Vec<&Value> = j["warnings"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|w| &w["code"])
                        .collect();
                    let wanted = e["warnings"].as_array().into_iter().flatten();
                    for w in wanted.chain(e.get("error").filter(|c| c.is_string())) {
                        assert!(codes.contains(&w), "{file}: warning {w} in {j}");
                    }
                    if b["formats"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|f| f["format"] == "kepub")
                    {
                        kepub_holds_nothing_hostile(&me, id, file).await;
                    }
                }
            }
            "duplicate" => {
                assert_eq!(j["state"], "done", "{file}: {j}");
                assert!(j["duplicate_of"].is_string(), "{file}: {j}");
            }
            other => panic!("{other}"),
        }
    }
    // Nothing escaped: no evil.txt anywhere near the server, staging emptied.
    let root = server.data.parent().unwrap();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            assert_ne!(e.file_name(), "evil.txt", "{}", e.path().display());
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    assert!(
        !std::path::Path::new("/tmp/evil.txt").exists()
            && !std::path::Path::new("evil.txt").exists()
    );
    let staged: Vec<_> = std::fs::read_dir(server.data.join("staging"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        staged.is_empty(),
        "staged uploads are removed once their jobs end: {staged:?}"
    );

    // The failed ones are listed, newest first, with their errors (the dead letters).
    let failed = me.api.get("/v1/imports?state=failed&limit=500").await;
    assert_eq!(failed.status, 200, "{}", failed.body);
    let failed = failed.body["items"].as_array().unwrap().clone();
    let rejects = exp["bad"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["outcome"] == "reject")
        .count();
    assert_eq!(failed.len(), rejects);
    assert!(
        failed
            .iter()
            .all(|j| j["state"] == "failed" && j["error"]["code"].is_string())
    );
    let ids: Vec<&str> = failed
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    let page = me.api.get("/v1/imports?limit=3").await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 3);
    let next = page.body["next_cursor"].as_str().unwrap().to_string();
    let rest = me
        .api
        .get(&format!("/v1/imports?limit=500&cursor={next}"))
        .await;
    assert_eq!(
        rest.body["items"].as_array().unwrap().len(),
        2 * bad.len() - 3,
        "pages cover every job"
    );
    me.api
        .get("/v1/imports?state=lost")
        .await
        .assert_error(400, "bad_request");
    let outsider = Reader::new(&server, "nosy").await;
    let theirs = outsider.api.get("/v1/imports").await;
    assert!(
        theirs.body["items"].as_array().unwrap().is_empty(),
        "nobody sees another's imports"
    );

    // Upload errors the server can tell at once.
    let r = me.api.send("POST", "/v1/books/upload", Some("x")).await;
    assert!(
        r.assert_error(400, "bad_request")
            .contains("Content-Disposition")
    );
    let anon = server.client().upload(b"x".to_vec(), "x.epub", None).await;
    anon.assert_error(401, "unauthorized");
    let r = me
        .api
        .upload(b"x".to_vec(), "x.epub", Some("not-a-library"))
        .await;
    assert!(r.assert_error(400, "bad_request").contains("library_id"));
    me.api
        .get("/v1/imports/01a2089c-7c7e-71e4-80fc-285d350885a5")
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_and_multipart_works() {
    let server = Server::start_with(&[("DOGEAR_IMPORT__MAX_UPLOAD_BYTES", "100000")]);
    let me = Reader::new(&server, "limits").await;
    let big = read("books/good/hamlet.epub");
    assert!(big.len() > 100_000);
    me.api
        .upload(big, "hamlet.epub", None)
        .await
        .assert_error(413, "payload_too_large");
    let staged: Vec<_> = std::fs::read_dir(server.data.join("staging"))
        .unwrap()
        .flatten()
        .collect();
    assert!(staged.is_empty(), "a refused upload leaves nothing behind");

    // multipart/form-data with one file part.
    let file = read("books/good/gpl-3.0.epub");
    let boundary = "----dogear-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"gpl.epub\"\r\nContent-Type: application/epub+zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = me
        .api
        .http
        .post(format!("{}/v1/books/upload", me.api.base))
        .bearer_auth(me.token())
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let v: Value = r.json().await.unwrap();
    let job = me.api.wait_job(v["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["filename"], "gpl.epub");
    let id = job["book_id"].as_str().unwrap();
    let (_, _, got) = me.api.get_bytes(&format!("/v1/books/{id}/file"), &[]).await;
    assert_eq!(
        sha256(&got),
        sha256(&file),
        "the multipart file round-trips"
    );
}

#[tokio::test]
async fn the_queue_resumes_after_sigkill_without_duplicates() {
    // One worker, so that jobs are still queued when the node dies.
    let mut server = Server::start_with(&[("DOGEAR_IMPORT__WORKERS", "1")]);
    let me = Reader::new(&server, "crashy").await;
    let exp = expected();
    let mut jobs = Vec::new();
    for g in exp["good"].as_array().unwrap() {
        let file = g["file"].as_str().unwrap();
        let r = me.api.upload(read(file), &name_of(file), None).await;
        assert_eq!(r.status, 202);
        jobs.push(r.body["job_id"].as_str().unwrap().to_string());
    }
    let unfinished = {
        let mut n = 0;
        for j in &jobs {
            let s = me.api.get(&format!("/v1/imports/{j}")).await.body["state"].clone();
            if s == "queued" || s == "running" {
                n += 1;
            }
        }
        n
    };
    server.kill9();
    server.restart();
    let me_api = me.api.clone();
    let api = dogear_e2e::Api {
        base: server.base.clone(),
        ..me_api
    };
    for j in &jobs {
        let done = api.wait_job(j).await;
        assert_eq!(done["state"], "done", "{done}");
    }
    let books = api.all_books("").await;
    let hashes: Vec<String> = books
        .iter()
        .flat_map(|b| {
            b["formats"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["format"] != "kepub")
                .map(|f| f["hash"].as_str().unwrap().to_string())
        })
        .collect();
    let unique: HashSet<&String> = hashes.iter().collect();
    assert_eq!(hashes.len(), unique.len(), "no book imported twice");
    assert_eq!(books.len(), 26, "25 imports plus the metadata-only book");
    eprintln!(
        "{unfinished} of {} jobs were unfinished at the kill",
        jobs.len()
    );
    assert!(
        unfinished > 0,
        "the kill should land mid-import (one worker, 25 uploads)"
    );
}

#[tokio::test]
async fn the_import_command_runs_the_same_pipeline() {
    let mut server = Server::start();
    let me = Reader::new(&server, "clia").await;
    server.terminate();
    let dir = tempfile::tempdir().unwrap();
    for sub in ["good", "bad", "duplicates"] {
        let to = dir.path().join(sub);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(fixtures().join("books").join(sub))
            .unwrap()
            .flatten()
        {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let out = std::process::Command::new(dogear_e2e::dogear_bin())
        .arg("--data")
        .arg(&server.data)
        .args(["import", "--library", "clia"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rejections make a non-zero exit; {stdout}"
    );
    let exp = expected();
    let count = |outcome: &str| {
        exp["bad"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["outcome"] == outcome)
            .count()
    };
    let imported = exp["good"].as_array().unwrap().len() + count("import");
    let summary = format!(
        "imported {imported}, duplicates {}, rejected {}",
        count("duplicate"),
        count("reject")
    );
    assert!(stdout.contains(&summary), "{summary} in {stdout}");
    for code in [
        "zip_bomb",
        "unsafe_path",
        "empty_file",
        "not_pdf",
        "corrupt_archive",
        "not_epub",
        "missing_opf",
        "invalid_opf",
    ] {
        assert!(stdout.contains(code), "{code} in {stdout}");
    }
    server.restart();
    let api = dogear_e2e::Api {
        base: server.base.clone(),
        ..me.api.clone()
    };
    assert_eq!(
        api.all_books("").await.len(),
        imported + 1,
        "the imported books and the metadata-only one"
    );
    let bad = std::process::Command::new(dogear_e2e::dogear_bin())
        .arg("--data")
        .arg(&server.data)
        .args(["import", "--library", "nobody", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent"));
}

/// Runs against the S3-compatible server `scripts/test.sh` starts (`DOGEAR_TEST_S3`, an
/// endpoint URL; the bucket `dogear-test` exists).
#[tokio::test]
async fn an_s3_object_store_stores_and_serves_files_and_covers() {
    let endpoint = std::env::var("DOGEAR_TEST_S3").expect(
        "DOGEAR_TEST_S3 is not set: run the suite with scripts/test.sh, which starts an S3 server",
    );
    let prefix = format!("s3://dogear-test/run-{}", std::process::id());
    let server = Server::start_with(&[
        ("DOGEAR_STORAGE__OBJECTS", &prefix),
        ("AWS_ENDPOINT_URL", &endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]);
    let me = Reader::new(&server, "s3user").await;
    let job = import(&me, "books/good/hamlet.epub").await;
    assert_eq!(job["state"], "done", "{job}");
    let id = job["book_id"].as_str().unwrap();
    let (status, _, bytes) = me.api.get_bytes(&format!("/v1/books/{id}/file"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&bytes), sha256(&read("books/good/hamlet.epub")));
    let (status, _, part) = me
        .api
        .get_bytes(&format!("/v1/books/{id}/file"), &[("range", "bytes=10-19")])
        .await;
    assert_eq!((status, part.len()), (206, 10));
    let (status, h, cover) = me
        .api
        .get_bytes(&format!("/v1/books/{id}/cover?size=thumb"), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"].to_str().unwrap(), "image/jpeg");
    assert!(cover.starts_with(&[0xFF, 0xD8]));
    assert!(
        !server.data.join("objects").exists(),
        "nothing went to the local folder"
    );
    // The objects are really in the bucket: list it through the S3 API.
    let listing = reqwest::get(format!(
        "{endpoint}/dogear-test?list-type=2&prefix=run-{}/",
        std::process::id()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(listing.contains("files/4cf5b94b71648ff9.epub"), "{listing}");
    assert!(listing.contains("covers/4cf5b94b71648ff9.jpg"), "{listing}");
    assert!(
        listing.contains("-thumb.jpg"),
        "the thumbnail is kept once made: {listing}"
    );

    // Configured to presign, downloads redirect to the bucket, and the URL works.
    let mut server = server;
    server.terminate();
    server.set_env("DOGEAR_STORAGE__PRESIGN_SECS", "60");
    server.restart();
    let api = dogear_e2e::Api {
        base: server.base.clone(),
        ..me.api.clone()
    };
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(format!("{}/v1/books/{id}/file", api.base))
        .bearer_auth(me.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&endpoint) && location.contains("X-Amz-Signature"),
        "{location}"
    );
    let direct = reqwest::get(&location).await.unwrap();
    assert_eq!(direct.status().as_u16(), 200);
    assert_eq!(
        sha256(&direct.bytes().await.unwrap()),
        sha256(&read("books/good/hamlet.epub"))
    );
}
