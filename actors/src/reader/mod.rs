//! Reading in the browser: what the web reader needs of a book file. An EPUB's spine (with
//! each document's size, so a place in the book is a percentage the Kobo and KOReader sides
//! read the same way) and table of contents; its documents made safe ([`sanitize`]); the
//! pages of a PDF or comic as images. Pure functions of a file on disk; the use cases that
//! find the file and check the reader's right to it are in [`service`].

pub mod sanitize;
pub mod service;

use crate::import::archive::Archive;
use crate::import::epub::{self, Package};
use crate::import::xml::{self, Element};
use crate::import::{ImportError, MAX_XML_BYTES};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Most bytes of one book part served to a browser.
pub const MAX_PART: u64 = 32 << 20;
/// Most bytes of a document or stylesheet put through the sanitizer (parsing costs many
/// times its size in memory).
const MAX_DOCUMENT: u64 = 16 << 20;
/// Most entries of a table of contents.
const MAX_TOC: usize = 5000;
/// Deepest table-of-contents level read.
const MAX_DEPTH: u32 = 8;

/// One document of the spine: its path in the book and its inflated size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpineDoc {
    pub href: String,
    pub size: u64,
}

/// One entry of the table of contents: its label, the path (and `#fragment`) it points
/// at, and how deep it is (0 at the top).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TocEntry {
    pub title: String,
    pub href: String,
    pub depth: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpubLayout {
    pub spine: Vec<SpineDoc>,
    pub toc: Vec<TocEntry>,
}

/// The spine and table of contents of the EPUB at `path`.
pub fn epub_layout(path: &Path) -> Result<EpubLayout, ImportError> {
    let (mut ar, pkg) = epub::open(path)?;
    let sizes: HashMap<String, u64> = ar
        .entries
        .iter()
        .filter(|e| !e.is_dir && e.special.is_none())
        .map(|e| (e.name.clone(), e.size))
        .collect();
    let spine: Vec<SpineDoc> = pkg
        .spine()
        .into_iter()
        .map(|href| SpineDoc {
            size: sizes.get(&href).copied().unwrap_or(0),
            href,
        })
        .collect();
    let toc = toc(&mut ar, &pkg).unwrap_or_default();
    Ok(EpubLayout { spine, toc })
}

/// The folder of a zip path, with a trailing slash (or empty).
fn folder(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..=i])
}

/// `href` relative to the document at `from`, as a zip path keeping its `#fragment`.
fn resolve_keeping_fragment(from: &str, href: &str) -> String {
    let path = epub::resolve(folder(from), href);
    match href.split_once('#') {
        Some((_, frag)) if !frag.is_empty() => format!("{path}#{frag}"),
        _ => path,
    }
}

fn read_xml(ar: &mut Archive, name: &str) -> Option<Element> {
    let raw = ar.read(name, MAX_XML_BYTES).ok()?;
    xml::parse(&String::from_utf8_lossy(&raw)).ok()
}

/// EPUB 3's navigation document, else EPUB 2's NCX.
fn toc(ar: &mut Archive, pkg: &Package) -> Option<Vec<TocEntry>> {
    let manifest = pkg.manifest();
    let nav = manifest
        .values()
        .find(|(_, _, props)| props.split_whitespace().any(|p| p == "nav"))
        .map(|(p, _, _)| p.clone());
    if let Some(nav_path) = nav
        && let Some(doc) = read_xml(ar, &nav_path)
    {
        let mut navs = Vec::new();
        doc.find_all("nav", &mut navs);
        let chosen = navs
            .iter()
            .find(|n| n.attr("type").is_some_and(|t| t.contains("toc")))
            .or(navs.first());
        if let Some(nav) = chosen
            && let Some(ol) = nav.find("ol")
        {
            let mut out = Vec::new();
            nav_list(ol, &nav_path, 0, &mut out);
            if !out.is_empty() {
                return Some(out);
            }
        }
    }
    let ncx_id = pkg.opf.child("spine").and_then(|s| s.attr("toc"));
    let ncx = ncx_id
        .and_then(|id| manifest.get(id))
        .or_else(|| {
            manifest
                .values()
                .find(|(_, mt, _)| mt == "application/x-dtbncx+xml")
        })
        .map(|(p, _, _)| p.clone())?;
    let doc = read_xml(ar, &ncx)?;
    let map = doc.find("navMap")?;
    let mut out = Vec::new();
    nav_points(map, &ncx, 0, &mut out);
    Some(out)
}

fn nav_list(ol: &Element, from: &str, depth: u32, out: &mut Vec<TocEntry>) {
    for li in ol.elements().filter(|e| e.local() == "li") {
        if out.len() >= MAX_TOC {
            return;
        }
        let label = li.child("a").or_else(|| li.child("span"));
        if let Some(label) = label {
            let title = label.text();
            if let Some(href) = label.attr("href").filter(|h| !h.is_empty())
                && !title.is_empty()
            {
                out.push(TocEntry {
                    title,
                    href: resolve_keeping_fragment(from, href),
                    depth,
                });
            }
        }
        if depth < MAX_DEPTH
            && let Some(sub) = li.child("ol")
        {
            nav_list(sub, from, depth + 1, out);
        }
    }
}

fn nav_points(parent: &Element, from: &str, depth: u32, out: &mut Vec<TocEntry>) {
    for p in parent.elements().filter(|e| e.local() == "navPoint") {
        if out.len() >= MAX_TOC {
            return;
        }
        let title = p.child("navLabel").map(|l| l.text()).unwrap_or_default();
        if let Some(src) = p.child("content").and_then(|c| c.attr("src"))
            && !title.is_empty()
        {
            out.push(TocEntry {
                title,
                href: resolve_keeping_fragment(from, src),
                depth,
            });
        }
        if depth < MAX_DEPTH {
            nav_points(p, from, depth + 1, out);
        }
    }
}

/// A part of a book as a browser gets it.
#[derive(Debug)]
pub struct Part {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// What a book part is, from its manifest media type or, failing that, its name. `None`:
/// not something a page of a book needs (scripts, everything unknown).
fn kind_of(name: &str, media_type: Option<&str>) -> Option<&'static str> {
    let by_type = media_type.and_then(|mt| match mt.to_ascii_lowercase().as_str() {
        "application/xhtml+xml" | "text/html" => Some("html"),
        "text/css" => Some("text/css; charset=utf-8"),
        "image/jpeg" | "image/jpg" => Some("image/jpeg"),
        "image/png" => Some("image/png"),
        "image/gif" => Some("image/gif"),
        "image/webp" => Some("image/webp"),
        "image/svg+xml" => Some("image/svg+xml"),
        "font/otf" | "application/vnd.ms-opentype" | "application/x-font-otf" => Some("font/otf"),
        "font/ttf" | "application/x-font-ttf" | "application/x-font-truetype" => Some("font/ttf"),
        "font/woff" | "application/font-woff" => Some("font/woff"),
        "font/woff2" => Some("font/woff2"),
        _ => None,
    });
    by_type.or_else(|| {
        let ext = name.rsplit('.').next()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "xhtml" | "html" | "htm" => "html",
            "css" => "text/css; charset=utf-8",
            "jpg" | "jpeg" => "image/jpeg",
            "png" => "image/png",
            "gif" => "image/gif",
            "webp" => "image/webp",
            "svg" => "image/svg+xml",
            "otf" => "font/otf",
            "ttf" => "font/ttf",
            "woff" => "font/woff",
            "woff2" => "font/woff2",
            _ => return None,
        })
    })
}

/// The part of the EPUB at `path` named `name` (a zip path), made safe: documents through
/// the sanitizer, stylesheets cleaned, images and fonts as they are. `Ok(None)`: no such
/// part, or one a page does not need.
pub fn epub_part(path: &Path, name: &str) -> Result<Option<Part>, ImportError> {
    let (mut ar, pkg) = epub::open(path)?;
    if !ar.has(name) {
        return Ok(None);
    }
    let media_type = pkg
        .manifest()
        .into_values()
        .find(|(p, _, _)| p == name)
        .map(|(_, mt, _)| mt);
    let Some(kind) = kind_of(name, media_type.as_deref()) else {
        return Ok(None);
    };
    let cleaned = kind == "html" || kind == "text/css; charset=utf-8";
    let bytes = ar.read(name, if cleaned { MAX_DOCUMENT } else { MAX_PART })?;
    Ok(Some(match kind {
        "html" => Part {
            content_type: "text/html; charset=utf-8",
            bytes: sanitize::document(&String::from_utf8_lossy(&bytes)).into_bytes(),
        },
        "text/css; charset=utf-8" => Part {
            content_type: kind,
            bytes: sanitize::clean_css(&String::from_utf8_lossy(&bytes)).into_bytes(),
        },
        other => Part {
            content_type: other,
            bytes,
        },
    }))
}

/// Page `n` (1-based) of a comic: its image, pages in name order as the importer counts
/// them.
pub fn cbz_page(path: &Path, n: u32) -> Result<Option<Part>, ImportError> {
    let mut ar = Archive::open(path)?;
    let mut pages: Vec<(String, usize)> = ar
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.is_dir && e.special.is_none() && crate::import::cbz::is_image(&e.name))
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    pages.sort();
    let Some((name, idx)) = n
        .checked_sub(1)
        .and_then(|i| pages.get(i as usize))
        .cloned()
    else {
        return Ok(None);
    };
    let bytes = ar.read_index(idx, MAX_PART)?;
    let content_type = kind_of(&name, None)
        .filter(|k| k.starts_with("image/") && *k != "image/svg+xml")
        .unwrap_or("application/octet-stream");
    Ok(Some(Part {
        content_type,
        bytes,
    }))
}

/// Page `n` (1-based) of a PDF rendered to a JPEG `width` pixels wide, by poppler.
pub fn pdf_page(path: &Path, n: u32, width: u32) -> Option<Part> {
    crate::import::pdf::render_page(path, n, width).map(|bytes| Part {
        content_type: "image/jpeg",
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/books/good")
            .join(name)
    }

    #[test]
    fn layout_of_an_epub3_and_an_epub2() {
        for name in ["hamlet.epub", "apache-2.0.epub", "devils-dictionary.epub"] {
            let l = epub_layout(&fixture(name)).unwrap();
            assert!(!l.spine.is_empty(), "{name}");
            assert!(l.spine.iter().any(|d| d.size > 0), "{name}");
            assert!(!l.toc.is_empty(), "{name}: a table of contents");
            for t in &l.toc {
                let path = t.href.split('#').next().unwrap();
                assert!(
                    l.spine.iter().any(|d| d.href == path) || !path.is_empty(),
                    "{name}: {t:?}"
                );
            }
        }
    }

    #[test]
    fn parts_are_typed_and_documents_clean() {
        let f = fixture("hamlet.epub");
        let l = epub_layout(&f).unwrap();
        let doc = epub_part(&f, &l.spine[0].href).unwrap().unwrap();
        assert_eq!(doc.content_type, "text/html; charset=utf-8");
        assert!(String::from_utf8_lossy(&doc.bytes).starts_with("<!DOCTYPE html>"));
        assert!(epub_part(&f, "no/such.xhtml").unwrap().is_none());
        assert!(epub_part(&f, "META-INF/container.xml").unwrap().is_none());
    }

    #[test]
    fn comic_pages() {
        let f = fixture("William Shakespeare - All the World's a Stage.cbz");
        let first = cbz_page(&f, 1).unwrap().unwrap();
        assert!(first.content_type.starts_with("image/"));
        assert!(cbz_page(&f, 0).unwrap().is_none());
        assert!(cbz_page(&f, 10_000).unwrap().is_none());
    }
}
