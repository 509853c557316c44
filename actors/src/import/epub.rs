//! EPUB 2 and 3: the container, the package document (OPF) and the cover.

use super::archive::Archive;
use super::xml::{self, Element};
use super::{Extracted, ImportError, MAX_COVER_BYTES, MAX_XML_BYTES, Person};
use std::collections::HashMap;
use std::path::Path;

/// The package document of an opened EPUB, parsed.
pub struct Package {
    pub opf_path: String,
    pub opf: Element,
    /// What opening the book left out (a document type declaration, entries that are not
    /// files), for the import job.
    pub warnings: Vec<dogear_storage::JobIssue>,
}

impl Package {
    /// The folder the OPF is in, with a trailing slash (or empty), hrefs are relative to it.
    pub fn base(&self) -> &str {
        match self.opf_path.rfind('/') {
            Some(i) => &self.opf_path[..=i],
            None => "",
        }
    }

    /// Manifest items: id -> (zip path, media type, properties).
    pub fn manifest(&self) -> HashMap<String, (String, String, String)> {
        let mut out = HashMap::new();
        if let Some(m) = self.opf.child("manifest") {
            for item in m.elements().filter(|e| e.local() == "item") {
                if let (Some(id), Some(href)) = (item.attr("id"), item.attr("href")) {
                    out.insert(
                        id.to_string(),
                        (
                            resolve(self.base(), href),
                            item.attr("media-type").unwrap_or("").to_string(),
                            item.attr("properties").unwrap_or("").to_string(),
                        ),
                    );
                }
            }
        }
        out
    }

    /// Zip paths of the spine's documents, in reading order.
    pub fn spine(&self) -> Vec<String> {
        let manifest = self.manifest();
        let mut out = Vec::new();
        if let Some(s) = self.opf.child("spine") {
            for r in s.elements().filter(|e| e.local() == "itemref") {
                if let Some((path, _, _)) = r.attr("idref").and_then(|id| manifest.get(id)) {
                    out.push(path.clone());
                }
            }
        }
        out
    }
}

/// Resolves an href relative to `base` into a zip path (percent-decoded, `..` applied).
pub fn resolve(base: &str, href: &str) -> String {
    let href = href.split('#').next().unwrap_or("");
    let href = super::names::percent_decode(href);
    let mut parts: Vec<&str> = if href.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|p| !p.is_empty()).collect()
    };
    for p in href.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Opens the archive and finds and parses the package document.
pub fn open(path: &Path) -> Result<(Archive, Package), ImportError> {
    let mut ar = Archive::open(path)?;
    if !ar.has("META-INF/container.xml") {
        return Err(ImportError::new(
            "not_epub",
            if ar.has("mimetype") {
                "the archive has no META-INF/container.xml".to_string()
            } else {
                "the archive has neither a mimetype entry nor META-INF/container.xml: not an EPUB"
                    .to_string()
            },
        ));
    }
    let container = ar.read("META-INF/container.xml", MAX_XML_BYTES)?;
    let container = String::from_utf8_lossy(&container);
    let mut warnings = Vec::new();
    let container = xml::parse_metadata(&container, "META-INF/container.xml", &mut warnings)
        .map_err(|e| match e {
            xml::MetaError::Syntax(e) => ImportError::new(
                "not_epub",
                format!("META-INF/container.xml is not valid XML ({e})"),
            ),
            xml::MetaError::NeedsDtd(e) => ImportError::new(
                "invalid_opf",
                format!("META-INF/container.xml cannot be read: {e}"),
            ),
        })?;
    let opf_path = container
        .find("rootfile")
        .and_then(|r| r.attr("full-path"))
        .map(|p| resolve("", p))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            ImportError::new("missing_opf", "container.xml names no package document")
        })?;
    if !ar.has(&opf_path) {
        return Err(ImportError::new(
            "missing_opf",
            format!("the package document {opf_path:?} named by container.xml is missing"),
        ));
    }
    let raw = ar.read(&opf_path, MAX_XML_BYTES)?;
    let text = String::from_utf8_lossy(&raw);
    let opf = xml::parse_metadata(&text, &opf_path, &mut warnings).map_err(|e| match e {
        xml::MetaError::Syntax(e) => ImportError::new(
            "invalid_opf",
            format!("the package document {opf_path:?} is not valid XML: {e}"),
        ),
        xml::MetaError::NeedsDtd(e) => ImportError::new(
            "invalid_opf",
            format!("the package document {opf_path:?} cannot be read: {e}"),
        ),
    })?;
    if opf.local() != "package" {
        return Err(ImportError::new(
            "invalid_opf",
            format!(
                "the package document's root is <{}>, not <package>",
                opf.name
            ),
        ));
    }
    warnings.extend(ar.dropped_warning());
    Ok((
        ar,
        Package {
            opf_path,
            opf,
            warnings,
        },
    ))
}

pub fn extract(path: &Path) -> Result<Extracted, ImportError> {
    let (mut ar, pkg) = open(path)?;
    Ok(extract_from(&mut ar, &pkg))
}

/// Metadata and cover of an opened EPUB.
pub fn extract_from(ar: &mut Archive, pkg: &Package) -> Extracted {
    let mut x = metadata(pkg);
    x.warnings.extend(pkg.warnings.iter().cloned());
    if let Some(href) = cover_path(pkg) {
        match ar.read(&href, MAX_COVER_BYTES) {
            Ok(bytes) => x.cover = Some(bytes),
            Err(e) => x.warnings.push(
                ImportError::new("cover_rejected", format!("cover {href:?}: {}", e.message))
                    .issue(),
            ),
        }
    }
    x
}

/// The cover image's zip path: EPUB 3 `properties="cover-image"`, else EPUB 2
/// `<meta name="cover" content="ID">`.
pub fn cover_path(pkg: &Package) -> Option<String> {
    let manifest = pkg.manifest();
    if let Some((p, _, _)) = manifest
        .values()
        .find(|(_, _, props)| props.split_whitespace().any(|p| p == "cover-image"))
    {
        return Some(p.clone());
    }
    let meta = pkg.opf.child("metadata")?;
    let id = meta
        .elements()
        .find(|e| e.local() == "meta" && e.attr("name") == Some("cover"))
        .and_then(|e| e.attr("content"))?;
    manifest
        .get(id)
        .filter(|(_, mt, _)| mt.starts_with("image/"))
        .map(|(p, _, _)| p.clone())
}

fn clean(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// An EPUB 3 refinement of another element: (property, value, scheme).
type Refinement<'a> = (&'a str, String, Option<&'a str>);

/// Reads the package metadata.
pub fn metadata(pkg: &Package) -> Extracted {
    let mut x = Extracted {
        metadata_source: "opf",
        ..Default::default()
    };
    let Some(meta) = pkg.opf.child("metadata") else {
        return x;
    };
    // EPUB 3 refinements: `<meta refines="#id" property="...">value</meta>`.
    let mut refines: HashMap<&str, Vec<Refinement>> = HashMap::new();
    let mut named: HashMap<&str, &str> = HashMap::new();
    for m in meta.elements().filter(|e| e.local() == "meta") {
        if let (Some(target), Some(prop)) = (m.attr("refines"), m.attr("property")) {
            refines
                .entry(target.trim_start_matches('#'))
                .or_default()
                .push((prop, m.text(), m.attr("scheme")));
        }
        if let (Some(name), Some(content)) = (m.attr("name"), m.attr("content")) {
            named.entry(name).or_insert(content);
        }
    }
    let refined = |e: &Element, prop: &str| -> Option<String> {
        let id = e.attr("id")?;
        refines
            .get(id)?
            .iter()
            .find(|(p, _, _)| *p == prop)
            .map(|(_, v, _)| v.clone())
    };
    let dc = |name: &'static str| meta.elements().filter(move |e| e.local() == name);

    // Titles: EPUB 3 marks the main one; otherwise the first is the title.
    let titles: Vec<&Element> = dc("title").collect();
    let main = titles
        .iter()
        .find(|t| refined(t, "title-type").as_deref() == Some("main"))
        .or(titles.first());
    if let Some(t) = main {
        x.title = t.text();
    }
    x.subtitle = titles
        .iter()
        .find(|t| refined(t, "title-type").as_deref() == Some("subtitle"))
        .map(|t| t.text());
    x.title_sort = named
        .get("calibre:title_sort")
        .map(|s| s.to_string())
        .and_then(clean);

    for c in dc("creator") {
        let role = c
            .attr("role")
            .map(str::to_string)
            .or_else(|| refined(c, "role"));
        if role.as_deref().is_some_and(|r| r != "aut") {
            continue;
        }
        let name = c.text();
        if name.is_empty() {
            continue;
        }
        let sort = c
            .attr("file-as")
            .map(str::to_string)
            .or_else(|| refined(c, "file-as"))
            .and_then(clean);
        x.authors.push(Person { name, sort });
    }

    x.languages = dc("language")
        .map(|l| l.text())
        .filter(|l| !l.is_empty())
        .collect();
    for id in dc("identifier") {
        let onix = id.attr("id").and_then(|i| refines.get(i)).and_then(|r| {
            r.iter()
                .find(|(p, _, _)| *p == "identifier-type")
                .map(|(_, v, _)| v.clone())
        });
        if let Some((scheme, value)) = identifier(id.attr("scheme"), onix.as_deref(), &id.text()) {
            x.identifiers.entry(scheme).or_insert(value);
        }
    }
    x.publisher = dc("publisher").next().map(|p| p.text()).and_then(clean);
    x.published = dc("date")
        .next()
        .map(|d| d.text())
        .and_then(clean)
        .filter(|d| !is_undefined_date(d));
    x.description = dc("description").next().map(|d| d.text()).and_then(clean);
    x.tags = dc("subject")
        .map(|s| s.text())
        .filter(|s| !s.is_empty())
        .collect();

    x.fixed_layout = meta.elements().any(|e| {
        e.local() == "meta"
            && e.attr("property") == Some("rendition:layout")
            && e.attr("refines").is_none()
            && e.text().trim() == "pre-paginated"
    });
    // Series: calibre's metas, else EPUB 3 `belongs-to-collection` of type series.
    if let Some(s) = named
        .get("calibre:series")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        x.series = Some(s.to_string());
        x.series_index = named
            .get("calibre:series_index")
            .and_then(|i| i.trim().parse::<f64>().ok())
            .filter(|i| i.is_finite())
            .or(Some(1.0));
    } else {
        for m in meta.elements().filter(|e| {
            e.local() == "meta"
                && e.attr("property") == Some("belongs-to-collection")
                && e.attr("refines").is_none()
        }) {
            let kind = refined(m, "collection-type");
            if kind.as_deref().is_some_and(|k| k != "series") {
                continue;
            }
            x.series = clean(m.text());
            x.series_index = refined(m, "group-position")
                .and_then(|p| p.trim().parse::<f64>().ok())
                .filter(|i| i.is_finite());
            break;
        }
    }
    x
}

/// calibre writes year 101 for "no date".
fn is_undefined_date(d: &str) -> bool {
    d.starts_with("0101-01-01") || d.starts_with("0100-")
}

/// Names an identifier: (scheme, value) from `opf:scheme`, an ONIX identifier type, or a
/// `scheme:` prefix on the value.
pub fn identifier(
    scheme: Option<&str>,
    onix: Option<&str>,
    value: &str,
) -> Option<(String, String)> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let lower = value.to_ascii_lowercase();
    let strip = |prefixes: &[&str]| -> Option<String> {
        prefixes
            .iter()
            .find(|p| lower.starts_with(*p))
            .map(|p| value[p.len()..].to_string())
    };
    let bare =
        strip(&["urn:uuid:", "uuid:", "urn:isbn:", "isbn:"]).unwrap_or_else(|| value.to_string());
    if let Some(s) = scheme
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
    {
        return Some((s, bare));
    }
    match onix.map(str::trim) {
        Some("15") | Some("02") => return Some(("isbn".into(), bare)),
        Some("06") => return Some(("doi".into(), bare)),
        _ => {}
    }
    if let Some(v) = strip(&["urn:uuid:", "uuid:"]) {
        return Some(("uuid".into(), v));
    }
    if let Some(v) = strip(&["urn:isbn:", "isbn:"]) {
        return Some(("isbn".into(), v));
    }
    if let Some((s, v)) = value.split_once(':')
        && !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !v.is_empty()
        && !v.starts_with("//")
    {
        return Some((s.to_ascii_lowercase(), v.to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(metadata: &str) -> Package {
        let opf = format!(
            r#"<package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>T</dc:title>{metadata}</metadata></package>"#
        );
        Package {
            opf_path: "OEBPS/content.opf".into(),
            opf: crate::import::xml::parse(&opf).unwrap(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn fixed_layout_is_read_from_the_rendition_meta() {
        let fl = package(r#"<meta property="rendition:layout">pre-paginated</meta>"#);
        assert!(metadata(&fl).fixed_layout);
        let reflow = package(r#"<meta property="rendition:layout">reflowable</meta>"#);
        assert!(!metadata(&reflow).fixed_layout);
        assert!(!metadata(&package("")).fixed_layout);
    }
}
