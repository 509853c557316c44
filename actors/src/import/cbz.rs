//! CBZ comics: pages are the images in name order; metadata from `ComicInfo.xml`.

use super::archive::Archive;
use super::{Extracted, ImportError, MAX_COVER_BYTES, MAX_XML_BYTES, Person, xml};
use std::path::Path;

pub(crate) fn is_image(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png", ".gif", ".webp"]
        .iter()
        .any(|e| n.ends_with(e))
        && !n.starts_with("__macosx/")
}

fn list(s: &str) -> Vec<String> {
    s.split([',', ';'])
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The number of pages (images) of the comic at `path`.
pub fn page_count(path: &Path) -> Option<u32> {
    let ar = Archive::open(path).ok()?;
    let n = ar
        .entries
        .iter()
        .filter(|e| !e.is_dir && e.special.is_none() && is_image(&e.name))
        .count();
    u32::try_from(n).ok().filter(|n| *n > 0)
}

pub fn extract(path: &Path) -> Result<Extracted, ImportError> {
    let mut ar = Archive::open(path)?;
    let mut pages: Vec<(String, usize)> = ar
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.is_dir && e.special.is_none() && is_image(&e.name))
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    pages.sort();
    if pages.is_empty() {
        return Err(ImportError::new(
            "not_cbz",
            "the archive holds no images: not a comic",
        ));
    }
    let mut x = Extracted {
        metadata_source: "filename",
        warnings: ar.dropped_warning().into_iter().collect(),
        ..Default::default()
    };
    let mut front = None;
    let info_name = ar
        .entries
        .iter()
        .find(|e| e.special.is_none() && e.name.eq_ignore_ascii_case("ComicInfo.xml"))
        .map(|e| e.name.clone());
    if let Some(name) = info_name {
        let raw = ar.read(&name, MAX_XML_BYTES)?;
        let parsed = xml::parse_metadata(
            &String::from_utf8_lossy(&raw),
            "ComicInfo.xml",
            &mut x.warnings,
        );
        match parsed {
            Ok(doc) => {
                let field = |n: &str| doc.child(n).map(|e| e.text()).filter(|t| !t.is_empty());
                x.metadata_source = "ComicInfo.xml";
                x.title = field("Title").unwrap_or_default();
                x.series = field("Series");
                x.series_index = field("Number")
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|n| n.is_finite());
                x.authors = field("Writer")
                    .map(|w| list(&w))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|name| Person { name, sort: None })
                    .collect();
                x.languages = field("LanguageISO").into_iter().collect();
                x.description = field("Summary");
                x.publisher = field("Publisher");
                x.tags = field("Genre").map(|g| list(&g)).unwrap_or_default();
                x.published = field("Year").map(|y| match (field("Month"), field("Day")) {
                    (Some(m), Some(d)) => format!("{y}-{m:0>2}-{d:0>2}"),
                    (Some(m), None) => format!("{y}-{m:0>2}"),
                    _ => y,
                });
                if let Some(p) = doc.child("Pages") {
                    front = p
                        .elements()
                        .find(|pg| pg.attr("Type") == Some("FrontCover"))
                        .and_then(|pg| pg.attr("Image"))
                        .and_then(|i| i.parse::<usize>().ok());
                }
                if x.title.is_empty() {
                    x.metadata_source = "filename";
                }
            }
            Err(xml::MetaError::Syntax(e)) => x.warnings.push(
                ImportError::new(
                    "invalid_comicinfo",
                    format!("ComicInfo.xml is not valid XML: {e}"),
                )
                .issue(),
            ),
            Err(xml::MetaError::NeedsDtd(e)) => x.warnings.push(
                ImportError::new("dtd_ignored", format!("ComicInfo.xml was ignored: {e}")).issue(),
            ),
        }
    }
    let cover_idx = front.and_then(|i| pages.get(i)).unwrap_or(&pages[0]).1;
    match ar.read_index(cover_idx, MAX_COVER_BYTES) {
        Ok(b) => x.cover = Some(b),
        Err(e) => x
            .warnings
            .push(ImportError::new("cover_rejected", e.message).issue()),
    }
    Ok(x)
}
