//! The importer's readers against the fixtures in `tests/fixtures`: every good book's metadata equals
//! `expected.json`, every bad file gets its expected outcome, and every EPUB converts to a
//! well-formed KEPUB.

use dogear_actors::import::{self, cover, epub, hash, kepub, xml};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn expected() -> Value {
    let raw = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    serde_json::from_str(&raw).expect("expected.json parses")
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

#[test]
fn good_books_metadata_matches_expected() {
    let exp = expected();
    let mut checked = 0;
    for g in exp["good"].as_array().unwrap() {
        let file = g["file"].as_str().unwrap();
        let path = fixtures().join(file);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let x = import::extract(&path, &name).unwrap_or_else(|e| panic!("{file}: {e}"));
        let ctx = |what: &str| format!("{file}: {what}");
        assert_eq!(x.title, g["title"].as_str().unwrap(), "{}", ctx("title"));
        let authors: Vec<(String, Option<String>)> = x
            .authors
            .iter()
            .map(|a| (a.name.clone(), a.sort.clone()))
            .collect();
        let want: Vec<(String, Option<String>)> = g["authors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["name"].as_str().unwrap().to_string(), opt_str(&a["sort"])))
            .collect();
        assert_eq!(authors, want, "{}", ctx("authors"));
        assert_eq!(x.series, opt_str(&g["series"]), "{}", ctx("series"));
        assert_eq!(
            x.series_index,
            g["series_index"].as_f64(),
            "{}",
            ctx("series_index")
        );
        let langs: Vec<String> = g["languages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        assert_eq!(x.languages, langs, "{}", ctx("languages"));
        let (h, size) = hash::file(&path).unwrap();
        assert_eq!(h, g["xxh3_64"].as_str().unwrap(), "{}", ctx("xxh3"));
        assert_eq!(size, g["size"].as_u64().unwrap());
        if g["format"] == "epub" {
            assert_eq!(x.metadata_source, "opf");
            assert_eq!(
                x.title_sort,
                opt_str(&g["title_sort"]),
                "{}",
                ctx("title_sort")
            );
            assert_eq!(x.subtitle, opt_str(&g["subtitle"]), "{}", ctx("subtitle"));
            let ids: std::collections::BTreeMap<String, String> =
                serde_json::from_value(g["identifiers"].clone()).unwrap();
            assert_eq!(x.identifiers, ids, "{}", ctx("identifiers"));
            assert_eq!(
                x.publisher,
                opt_str(&g["publisher"]),
                "{}",
                ctx("publisher")
            );
            // calibre's "undefined date" (year 101) counts as no date.
            let published = opt_str(&g["published"]).filter(|d| !d.starts_with("0101-"));
            assert_eq!(x.published, published, "{}", ctx("published"));
            assert_eq!(
                x.description,
                opt_str(&g["description"])
                    .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" ")),
                "{}",
                ctx("description")
            );
            let tags: Vec<String> = serde_json::from_value(g["tags"].clone()).unwrap();
            assert_eq!(x.tags, tags, "{}", ctx("tags"));
        } else {
            assert_eq!(
                x.metadata_source,
                g["metadata_source"].as_str().unwrap(),
                "{}",
                ctx("metadata_source")
            );
        }
        let has_cover = g["has_cover"].as_bool().unwrap();
        let pdf_without_renderer =
            g["format"] == "pdf" && x.cover.is_none() && which_pdftoppm().is_none();
        if !pdf_without_renderer {
            let c = x
                .cover
                .clone()
                .map(|b| cover::process(b).expect("cover decodes"));
            assert_eq!(c.is_some(), has_cover, "{}", ctx("has_cover"));
            if let (Some(c), Some(w)) = (&c, g["cover"]["width"].as_u64()) {
                assert_eq!(
                    (c.width as u64, c.height as u64),
                    (w, g["cover"]["height"].as_u64().unwrap()),
                    "{}",
                    ctx("cover size")
                );
                let thumb = c.thumb.as_ref().expect("thumbnail");
                assert!(
                    thumb.len() > 100 && thumb.starts_with(&[0xFF, 0xD8]),
                    "{}",
                    ctx("thumbnail is a JPEG")
                );
                assert!(cover::check(c.full.clone()).is_ok());
                let dims = cover::header_size(&c.full).expect("header size");
                assert_eq!(dims, (c.width, c.height), "{}", ctx("header size"));
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 25);
}

fn which_pdftoppm() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("pdftoppm"))
            .find(|p| p.is_file())
    })
}

#[test]
fn bad_files_get_their_expected_outcome() {
    let exp = expected();
    for b in exp["bad"].as_array().unwrap() {
        let file = b["file"].as_str().unwrap();
        let path = fixtures().join(file);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let r = import::extract(&path, &name);
        match b["outcome"].as_str().unwrap() {
            "reject" => {
                let e = r.err().unwrap_or_else(|| panic!("{file} must be rejected"));
                assert_eq!(
                    e.code,
                    b["error"].as_str().unwrap(),
                    "{file}: {}",
                    e.message
                );
                assert!(!e.message.is_empty());
            }
            "import" => imported_as_expected(&path, &name, b),
            "duplicate" => {
                r.unwrap_or_else(|e| panic!("{file}: {e}"));
                let of = fixtures().join(b["duplicate_of"].as_str().unwrap());
                assert_eq!(hash::file(&path).unwrap().0, hash::file(&of).unwrap().0);
            }
            other => panic!("unknown outcome {other}"),
        }
    }
    assert!(!Path::new("evil.txt").exists() && !fixtures().join("evil.txt").exists());
}

/// An edge or hostile file that imports: its metadata, its warnings, and (for an EPUB) a
/// KEPUB that holds only regular files and no document type declaration with an internal
/// subset, with nothing expanded.
fn imported_as_expected(path: &Path, name: &str, b: &Value) {
    let file = b["file"].as_str().unwrap();
    let (mut x, opened) =
        import::extract_keep(path, name).unwrap_or_else(|e| panic!("{file}: {e}"));
    let expect = &b["expect"];
    assert_eq!(x.title, expect["title"].as_str().unwrap(), "{file}: title");
    if let Some(authors) = expect.get("authors").and_then(Value::as_array) {
        let got: Vec<&str> = x.authors.iter().map(|p| p.name.as_str()).collect();
        let want: Vec<&str> = authors.iter().filter_map(Value::as_str).collect();
        assert_eq!(got, want, "{file}: authors");
    }
    if let Some(code) = b["error"].as_str() {
        // The cover is refused by its check, the book still imports.
        let c = x.cover.take().map(cover::process);
        assert!(
            matches!(&c, Some(Err(e)) if e.code == code),
            "{file}: the cover must be refused with {code}"
        );
    }
    match expect.get("has_cover").and_then(Value::as_bool) {
        Some(true) => assert!(x.cover.is_some(), "{file}: a cover"),
        Some(false) => assert!(
            x.cover
                .as_ref()
                .is_none_or(|c| cover::process(c.clone()).is_err()),
            "{file}: no usable cover"
        ),
        None => {}
    }
    let mut codes: Vec<String> = x.warnings.iter().map(|w| w.code.clone()).collect();
    if let Some((mut ar, pkg)) = opened {
        let mut warnings = Vec::new();
        let out = kepub::convert_opened(
            &mut ar,
            &pkg,
            std::io::Cursor::new(Vec::new()),
            &mut warnings,
        )
        .unwrap_or_else(|e| panic!("{file}: KEPUB: {e}"))
        .into_inner();
        codes.extend(warnings.iter().map(|w| w.code.clone()));
        kepub_is_clean(file, &out);
    }
    for w in b["warnings"].as_array().into_iter().flatten() {
        let w = w.as_str().unwrap();
        assert!(
            codes.iter().any(|c| c == w),
            "{file}: warning {w} in {codes:?}"
        );
    }
    for w in &x.warnings {
        assert!(
            !w.message.is_empty() && !w.message.contains("/work"),
            "{file}: {w:?}"
        );
    }
}

/// Text as a device's parser would read it: UTF-16 by its byte-order mark, else UTF-8.
fn decoded(data: &[u8]) -> String {
    let units = |be: bool| -> Vec<u16> {
        data[2..]
            .chunks_exact(2)
            .map(|c| {
                if be {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect()
    };
    match data {
        [0xFE, 0xFF, ..] => String::from_utf16_lossy(&units(true)),
        [0xFF, 0xFE, ..] => String::from_utf16_lossy(&units(false)),
        _ => String::from_utf8_lossy(data).into_owned(),
    }
}

/// What a device unzips: regular files only, no internal DTD subsets, no entity that only
/// such a subset could define.
fn kepub_is_clean(file: &str, bytes: &[u8]) {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let kind = f.unix_mode().map(|m| m & 0o170000);
        assert!(
            matches!(kind, None | Some(0) | Some(0o100000)) && !f.is_symlink(),
            "{file}: KEPUB entry {name} is not a regular file"
        );
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).unwrap();
        let text = decoded(&data);
        if let Some(at) = text.find("<!DOCTYPE") {
            let decl = &text[at..text[at..].find('>').map_or(text.len(), |e| at + e)];
            assert!(!decl.contains('['), "{file}: {name} keeps {decl}");
        }
        for entity in ["&lol", "&x;", "&t;", "&remote;", "<!ENTITY"] {
            assert!(!text.contains(entity), "{file}: {name} keeps {entity}");
        }
    }
}

#[test]
fn every_epub_converts_to_a_wellformed_kepub() {
    let dir = tempfile::tempdir().unwrap();
    let good = fixtures().join("books/good");
    let mut n = 0;
    for entry in std::fs::read_dir(&good).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("epub") {
            continue;
        }
        let out = dir.path().join(format!("{n}.kepub.epub"));
        kepub::convert(&path, std::fs::File::create(&out).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The result is an EPUB again, with the same metadata, and spans in its documents.
        let (mut ar, pkg) = epub::open(&out).unwrap();
        assert_eq!(ar.entries[0].name, "mimetype", "mimetype first");
        let spine = pkg.spine();
        let mut spans = 0;
        for doc in &spine {
            let bytes = ar.read(doc, 64 << 20).unwrap();
            let text = String::from_utf8(bytes).unwrap();
            xml::parse(&text)
                .unwrap_or_else(|e| panic!("{} {doc}: not well-formed: {e}", path.display()));
            spans += text.matches("class=\"koboSpan\"").count();
        }
        assert!(spans > 0, "{}: no koboSpans", path.display());
        let before = import::extract(&path, "x.epub").unwrap();
        let after = import::extract(&out, "x.epub").unwrap();
        assert_eq!(before.title, after.title);
        n += 1;
    }
    assert_eq!(n, 20);
}

/// Hostile bytes never panic the readers: every fixture, corrupted in many seeded ways
/// (bytes flipped, truncated, a run zeroed), is either read or refused with an error, and
/// whatever reads as an EPUB also converts (or is refused) without a panic.
#[test]
fn corrupted_files_never_panic_the_readers() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut files = Vec::new();
    for sub in ["books/good", "books/bad"] {
        for e in std::fs::read_dir(fixtures().join(sub)).unwrap().flatten() {
            files.push(e.path());
        }
    }
    files.sort();
    let (mut read, mut refused) = (0, 0);
    for path in &files {
        let original = std::fs::read(path).unwrap();
        if original.len() > 1 << 20 {
            continue; // the large ones are covered unmodified above; keep this test quick
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for round in 0..12 {
            let mut bytes = original.clone();
            match round % 3 {
                0 => {
                    for _ in 0..1 + next() % 16 {
                        let i = (next() as usize) % bytes.len().max(1);
                        if let Some(b) = bytes.get_mut(i) {
                            *b ^= 1 << (next() % 8);
                        }
                    }
                }
                1 => bytes.truncate((next() as usize) % bytes.len().max(1)),
                _ => {
                    let start = (next() as usize) % bytes.len().max(1);
                    let end = (start + 1 + (next() as usize) % 4096).min(bytes.len());
                    bytes[start..end].iter_mut().for_each(|b| *b = 0);
                }
            }
            let p = dir.path().join(format!("{round}-{name}"));
            std::fs::write(&p, &bytes).unwrap();
            let outcome = std::panic::catch_unwind(|| {
                let x = import::extract(&p, &name);
                if let Ok(x) = &x {
                    if let Some(c) = x.cover.clone() {
                        let _ = cover::process(c);
                    }
                    if x.format == Some(dogear_storage::Format::Epub) {
                        let _ = kepub::convert(&p, std::io::Cursor::new(Vec::new()));
                    }
                }
                x.is_ok()
            });
            match outcome {
                Ok(true) => read += 1,
                Ok(false) => refused += 1,
                Err(_) => panic!("{} (round {round}) panicked the readers", p.display()),
            }
        }
    }
    assert!(read > 0 && refused > 0, "read {read}, refused {refused}");
}
