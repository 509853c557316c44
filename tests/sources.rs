//! Watched folders and Calibre libraries, against a running node: files added, moved and
//! removed while it runs and while it is down; a Calibre library edited by another process.

use dogear_e2e::serde_json::{Value, json};
use dogear_e2e::{Api, copy_dir, eventually, fixtures, node_with, progress};
use sha2::{Digest, Sha256};
use std::path::Path;

fn sha256_file(p: &Path) -> String {
    Sha256::digest(std::fs::read(p).unwrap())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

async fn find(api: &Api, title: &str) -> Option<Value> {
    api.all_books("")
        .await
        .into_iter()
        .find(|b| b["title"] == title)
}

#[tokio::test]
async fn a_watched_folder_follows_adds_moves_and_removals() {
    let books = tempfile::tempdir().unwrap();
    let root = books.path();
    let good = fixtures().join("books/good");
    std::fs::copy(good.join("macbeth.epub"), root.join("macbeth.epub")).unwrap();
    std::fs::copy(good.join("sonnets.pdf"), root.join("sonnets.pdf")).unwrap();
    std::fs::write(root.join("notes.txt"), "not a book").unwrap();
    let config = format!(
        "[import]\nscan_interval_secs = 3600\n[[import.folders]]\npath = \"{}\"\nlibrary = \"shelf\"\n",
        root.display()
    );
    let (mut server, me) = node_with(&config, "shelf", &[]).await;
    let api = me.api.clone();
    let macbeth = eventually(30, "macbeth imported", || find(&api, "Macbeth")).await;
    assert_eq!(macbeth["source"], "folder");
    eventually(30, "sonnets.pdf imported", || {
        find(&api, "Shakespeare's Sonnets")
    })
    .await;
    let id = macbeth["id"].as_str().unwrap().to_string();

    // Progress on the book, then the file moves into a sub-folder and is renamed.
    let r = me.write(&id, progress(&me.device, 42.0, 1_000)).await;
    assert_eq!(r.body["applied"], true, "{}", r.body);
    std::fs::create_dir_all(root.join("plays")).unwrap();
    std::fs::rename(
        root.join("macbeth.epub"),
        root.join("plays/The Scottish Play.epub"),
    )
    .unwrap();
    // A new file while running.
    std::fs::copy(good.join("henry-v.epub"), root.join("henry-v.epub")).unwrap();
    let henry = eventually(30, "a new file imported", || find(&api, "Henry V")).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let still = me.api.get(&format!("/v1/books/{id}")).await;
    assert_eq!(
        still.status, 200,
        "a moved file keeps its book: {}",
        still.body
    );
    let p = me.api.get(&format!("/v1/books/{id}/progress")).await;
    assert_eq!(p.body["state"]["percent"], 42.0, "and its progress");
    assert_eq!(
        api.all_books("q=macbeth").await.len(),
        1,
        "no second Macbeth"
    );

    // A removed file deletes its book.
    std::fs::remove_file(root.join("henry-v.epub")).unwrap();
    let hid = henry["id"].as_str().unwrap().to_string();
    eventually(30, "a removed file's book is gone", || {
        let api = api.clone();
        let hid = hid.clone();
        async move { (api.get(&format!("/v1/books/{hid}")).await.status == 404).then_some(()) }
    })
    .await;

    // While the node is down: move the file again and add one; the start-up scan catches both.
    server.terminate();
    std::fs::rename(
        root.join("plays/The Scottish Play.epub"),
        root.join("macbeth-again.epub"),
    )
    .unwrap();
    std::fs::copy(good.join("richard-ii.epub"), root.join("richard-ii.epub")).unwrap();
    server.restart();
    let api = Api {
        base: server.base.clone(),
        ..me.api.clone()
    };
    eventually(30, "a file added while down", || find(&api, "Richard II")).await;
    let r = api.get(&format!("/v1/books/{id}")).await;
    assert_eq!(r.status, 200, "moved while down, still the same book");
    let p = api.get(&format!("/v1/books/{id}/progress")).await;
    assert_eq!(p.body["state"]["percent"], 42.0);
    assert_eq!(api.all_books("q=macbeth").await.len(), 1);
    assert!(
        find(&api, "notes").await.is_none(),
        "non-book files are ignored"
    );

    // A file rewritten in place updates its book: same id, the new content's metadata.
    let richard = find(&api, "Richard II").await.unwrap();
    let rid = richard["id"].as_str().unwrap().to_string();
    std::fs::copy(
        good.join("henry-iv-part-2.epub"),
        root.join("richard-ii.epub"),
    )
    .unwrap();
    eventually(30, "the rewritten file's book updated in place", || {
        let (api, rid) = (api.clone(), rid.clone());
        async move {
            let b = api.get(&format!("/v1/books/{rid}")).await.body;
            (b["title"] == "Henry IV, Part 2").then_some(())
        }
    })
    .await;
    assert!(find(&api, "Richard II").await.is_none());
}

const EDIT: &str = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.create_function("title_sort", 1, lambda t: t)
db.create_function("uuid4", 0, lambda: "00000000-0000-4000-8000-000000000000")
db.execute("UPDATE books SET title = 'Macbeth (edited in Calibre)', last_modified = '2030-01-01 00:00:00+00:00' WHERE id = 19")
db.execute("DELETE FROM books WHERE id = 25")
db.commit()
db.close()
"#;

#[tokio::test]
async fn a_calibre_library_is_mirrored_read_only_and_followed_live() {
    let lib = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("calibre-library"), lib.path());
    let db = lib.path().join("metadata.db");
    let before = sha256_file(&db);
    assert_eq!(
        before,
        "542cbe00d75cbdb4f171c15246f3d0d290c518d86a28cfc516b600540ec2f366"
    );
    let config = format!(
        "[[import.calibre]]\npath = \"{}\"\nlibrary = \"calibrist\"\n",
        lib.path().display()
    );
    let (_server, me) = node_with(&config, "calibrist", &[]).await;
    let api = me.api.clone();
    let books = eventually(30, "25 Calibre books", || {
        let api = api.clone();
        async move {
            let all: Vec<Value> = api
                .all_books("")
                .await
                .into_iter()
                .filter(|b| b["source"] == "calibre")
                .collect();
            (all.len() == 25).then_some(all)
        }
    })
    .await;
    let expect: Value = dogear_e2e::serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("calibre-library.expected.json")).unwrap(),
    )
    .unwrap();
    let rows = expect["books"].as_array().cloned().expect("books");
    assert_eq!(rows.len(), 25);
    for row in &rows {
        let title = row["title"].as_str().unwrap();
        let b = books
            .iter()
            .find(|b| b["title"] == title)
            .unwrap_or_else(|| panic!("{title} mirrored"));
        let authors: Vec<String> = row["authors"]
            .as_str()
            .unwrap()
            .split(" & ")
            .map(str::to_string)
            .collect();
        let authors: Vec<String> = authors.into_iter().filter(|a| a != "Unknown").collect();
        assert_eq!(b["authors"], json!(authors), "{title}");
        let tags: Vec<&str> = row["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let mut got: Vec<&str> = b["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x.as_str())
            .collect();
        let mut want = tags.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{title} tags");
        if let Some(series) = row["series"].as_str() {
            assert_eq!(b["series"], series, "{title}");
            assert_eq!(
                b["series_index"].as_f64(),
                row["series_index"].as_f64(),
                "{title}"
            );
        } else {
            assert!(b["series"].is_null(), "{title}");
        }
        match row["rating"].as_f64() {
            Some(r) if r > 0.0 => assert_eq!(b["rating"].as_f64(), Some(r), "{title}"),
            _ => assert!(b["rating"].is_null(), "{title}"),
        }
        assert_eq!(b["identifiers"], row["identifiers"], "{title} identifiers");
        assert_eq!(
            b["publisher"],
            row.get("publisher").cloned().unwrap_or(Value::Null),
            "{title} publisher"
        );
        assert_eq!(b["has_cover"], row.get("cover").is_some(), "{title} cover");
        let langs: Vec<String> = row["languages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| match l.as_str().unwrap() {
                "eng" => "en".to_string(),
                "fra" => "fr".to_string(),
                "tur" => "tr".to_string(),
                "spa" => "es".to_string(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(b["languages"], json!(langs), "{title} languages");
        let formats = row["formats"].as_array().map(|f| f.len()).unwrap_or(0);
        assert_eq!(
            b["formats"].as_array().unwrap().len(),
            formats,
            "{title} formats"
        );
    }
    // Files are served from the Calibre folder, byte for byte.
    let devils = books
        .iter()
        .find(|b| b["title"] == "The Devil's Dictionary")
        .unwrap();
    let id = devils["id"].as_str().unwrap();
    let (status, _, bytes) = me
        .api
        .get_bytes(&format!("/v1/books/{id}/file?format=epub"), &[])
        .await;
    assert_eq!(status, 200);
    let src = std::fs::read(fixtures().join("books/good/devils-dictionary.epub")).unwrap();
    assert_eq!(bytes, src);
    // A KEPUB is made on first request, then kept.
    let (status, _, kepub) = me
        .api
        .get_bytes(&format!("/v1/books/{id}/file?format=kepub"), &[])
        .await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&kepub).contains("application/epub+zip"));
    let b = me.api.get(&format!("/v1/books/{id}")).await.body;
    assert!(
        b["formats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["format"] == "kepub"),
        "{b}"
    );
    let (status, h, thumb) = me
        .api
        .get_bytes(&format!("/v1/books/{id}/cover?size=thumb"), &[])
        .await;
    assert_eq!(status, 200, "{h:?}");
    assert!(thumb.starts_with(&[0xFF, 0xD8]));
    assert_eq!(sha256_file(&db), before, "metadata.db untouched by reading");

    // Another process edits the library (as Calibre desktop would) while the node runs.
    let macbeth = books.iter().find(|b| b["title"] == "Macbeth").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let kinsmen = books
        .iter()
        .find(|b| b["title"] == "The Two Noble Kinsmen")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(EDIT)
        .arg(&db)
        .status()
        .unwrap();
    assert!(status.success());
    let edited = sha256_file(&db);
    eventually(20, "the edit shows through the API", || {
        let (api, macbeth) = (api.clone(), macbeth.clone());
        async move {
            (api.get(&format!("/v1/books/{macbeth}")).await.body["title"]
                == "Macbeth (edited in Calibre)")
                .then_some(())
        }
    })
    .await;
    eventually(20, "the deleted book is gone", || {
        let (api, k) = (api.clone(), kinsmen.clone());
        async move { (api.get(&format!("/v1/books/{k}")).await.status == 404).then_some(()) }
    })
    .await;
    assert_eq!(sha256_file(&db), edited, "Dogear never writes metadata.db");
}
