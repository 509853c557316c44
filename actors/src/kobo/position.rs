//! A position from elsewhere (a percentage) as a place in the KEPUB a Kobo holds: the
//! document it falls in and the nearest `koboSpan` before it, so "Sync to last page read?"
//! on the Kobo jumps to about where the reader got to on the phone, not to the book's start.
//!
//! The estimate is by bytes: the spine's documents weighted by their size, then the offset
//! inside the document. Nickel counts pages instead, so the place is approximate (within
//! a page or two for prose), but it is always a span that exists in the served file.

use crate::import::archive::Archive;
use crate::import::epub::{self, Package};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// A place in a KEPUB: `Source`, `Value` and `ContentSourceProgressPercent` of a bookmark.
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    pub source: String,
    pub span: String,
    pub document_percent: f64,
}

/// Most bytes of one document read to find a span.
const MAX_DOCUMENT: u64 = 16 << 20;

/// The spine's documents that hold bytes: (index in the whole spine, path, size).
fn weighted_spine(ar: &Archive, pkg: &Package) -> Vec<(usize, String, u64)> {
    let sizes: HashMap<&str, u64> = ar
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.size))
        .collect();
    pkg.spine()
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| sizes.get(d.as_str()).map(|s| (i, d, *s)))
        .filter(|(_, _, s)| *s > 0)
        .collect()
}

/// Where `percent` (0-100) falls in a weighted spine: the entry and how far into it (0-1).
fn point(spine: &[(usize, String, u64)], percent: f64) -> Option<(usize, f64)> {
    let total: u64 = spine.iter().map(|(_, _, s)| s).sum();
    if total == 0 {
        return None;
    }
    let target = (percent.clamp(0.0, 100.0) / 100.0 * total as f64) as u64;
    let mut start = 0;
    for (i, (_, _, size)) in spine.iter().enumerate() {
        if target < start + size {
            return Some((i, (target - start) as f64 / *size as f64));
        }
        start += size;
    }
    Some((spine.len() - 1, 1.0))
}

/// The 0-based index, in the whole spine of the EPUB at `path`, of the document holding
/// `percent` (0-100) of the book by bytes; `None` if it cannot be read.
pub fn spine_index(path: &Path, percent: f64) -> Option<usize> {
    let (ar, pkg) = epub::open(path).ok()?;
    let spine = weighted_spine(&ar, &pkg);
    let (at, _) = point(&spine, percent)?;
    Some(spine[at].0)
}

/// The 0-based index of the spine document whose path ends with `source` (a Kobo names the
/// document of its position by its path in the book).
pub fn spine_index_of(path: &Path, source: &str) -> Option<usize> {
    let (_, pkg) = epub::open(path).ok()?;
    let source = source.trim_start_matches('/');
    pkg.spine()
        .iter()
        .position(|d| d == source || d.ends_with(&format!("/{source}")))
}

/// The span at `percent` (0-100) of the KEPUB at `path`; `None` if it has no spans or
/// cannot be read.
pub fn locate(path: &Path, percent: f64) -> Option<Located> {
    let (mut ar, pkg) = epub::open(path).ok()?;
    let spine = weighted_spine(&ar, &pkg);
    let (at, within_at) = point(&spine, percent)?;
    // The document with the place, or the nearest one after it that has spans.
    for (i, (_, doc, _)) in spine.iter().enumerate().skip(at) {
        let within = if i == at { within_at } else { 0.0 };
        let raw = ar.read(doc, MAX_DOCUMENT).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let goal = (within * text.len() as f64) as usize;
        let mut best: Option<&str> = None;
        for (off, _) in text.match_indices("id=\"kobo.") {
            let id_start = off + 4;
            let Some(end) = text[id_start..].find('"') else {
                break;
            };
            if best.is_some() && off > goal {
                break;
            }
            best = Some(&text[id_start..id_start + end]);
        }
        if let Some(span) = best {
            return Some(Located {
                source: doc.clone(),
                span: span.to_string(),
                document_percent: (within * 1000.0).round() / 10.0,
            });
        }
    }
    None
}

/// Places already found, by KEPUB hash and percentage (a sync may ask for the same book
/// on every device).
#[derive(Default)]
pub struct LocateCache(Mutex<HashMap<(String, u64), Option<Located>>>);

impl LocateCache {
    pub fn get(&self, hash: &str, percent: f64) -> Option<Option<Located>> {
        let map = self.0.lock().ok()?;
        map.get(&(hash.to_string(), percent.to_bits())).cloned()
    }

    pub fn put(&self, hash: &str, percent: f64, found: Option<Located>) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= 4096 {
                map.clear();
            }
            map.insert((hash.to_string(), percent.to_bits()), found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentage_lands_on_a_span_of_the_right_document() {
        let dir = tempfile::tempdir().unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/books/good/hamlet.epub");
        let out = dir.path().join("hamlet.kepub.epub");
        let f = std::fs::File::create(&out).unwrap();
        crate::import::kepub::convert(&src, std::io::BufWriter::new(f)).unwrap();
        let start = locate(&out, 0.0).unwrap();
        let middle = locate(&out, 50.0).unwrap();
        let end = locate(&out, 99.9).unwrap();
        let (_, pkg) = epub::open(&out).unwrap();
        let spine = pkg.spine();
        let pos = |l: &Located| spine.iter().position(|d| *d == l.source).unwrap();
        assert!(pos(&start) <= pos(&middle) && pos(&middle) <= pos(&end));
        assert!(pos(&start) < pos(&end), "{start:?} {end:?}");
        for l in [&start, &middle, &end] {
            assert!(l.span.starts_with("kobo."), "{l:?}");
            assert!((0.0..=100.0).contains(&l.document_percent));
            // The span exists in that document of the file.
            let (mut ar, _) = epub::open(&out).unwrap();
            let doc = String::from_utf8(ar.read(&l.source, 1 << 24).unwrap()).unwrap();
            assert!(doc.contains(&format!("id=\"{}\"", l.span)), "{l:?}");
        }
    }
}
