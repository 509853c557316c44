//! OPDS 1.2: feeds as Atom. Every prefix used is declared on the root element (strict
//! parsers reject undeclared ones, and KOReader looks attributes up by their literal
//! prefixed names), text is escaped and stripped of what XML 1.0 forbids.

use super::Call;
use super::feeds::{file_url, identifiers, languages, offered};
use super::model::{Feed, Kind, Nav};
use dogear_storage::{Book, Timestamp};
use std::fmt::Write;

const NAVIGATION: &str = "application/atom+xml;profile=opds-catalog;kind=navigation";
const ACQUISITION: &str = "application/atom+xml;profile=opds-catalog;kind=acquisition";
const ENTRY: &str = "application/atom+xml;type=entry;profile=opds-catalog";

/// Text safe inside XML content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 allows no other control characters, not even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            '\u{fffe}' | '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// RFC 3339 in whole seconds, as Atom dates are usually written.
fn date(t: Timestamp) -> String {
    let s = t.to_string();
    match s.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => s,
    }
}

fn link(out: &mut String, rel: &str, href: &str, kind: &str, extra: &str) {
    let _ = write!(
        out,
        "<link rel=\"{}\" href=\"{}\" type=\"{}\"{extra}/>",
        esc(rel),
        esc(href),
        esc(kind)
    );
}

pub(super) fn feed(c: &Call<'_>, f: &Feed) -> String {
    let mut o = String::with_capacity(4096);
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    o.push_str(
        "<feed xmlns=\"http://www.w3.org/2005/Atom\" xmlns:dc=\"http://purl.org/dc/terms/\" \
         xmlns:opds=\"http://opds-spec.org/2010/catalog\" \
         xmlns:opensearch=\"http://a9.com/-/spec/opensearch/1.1/\" \
         xmlns:thr=\"http://purl.org/syndication/thread/1.0\">",
    );
    let _ = write!(
        o,
        "<id>{}</id><title>{}</title><updated>{}</updated><author><name>Dogear</name></author>",
        esc(&f.id),
        esc(&f.title),
        date(f.updated)
    );
    let own = match f.kind {
        Kind::Navigation(_) => NAVIGATION,
        Kind::Acquisition(_) => ACQUISITION,
    };
    let start = format!("{}/catalog", c.root);
    link(&mut o, "self", &f.url, own, "");
    link(&mut o, "start", &start, NAVIGATION, "");
    if let Some(up) = &f.up {
        link(&mut o, "up", up, NAVIGATION, "");
    }
    link(
        &mut o,
        "search",
        &format!("{}/opensearch.xml", c.root),
        "application/opensearchdescription+xml",
        "",
    );
    link(
        &mut o,
        "search",
        &format!("{}/search?q={{searchTerms}}", c.root),
        ACQUISITION,
        "",
    );
    if f.id == "urn:dogear:opds:catalog" {
        let v2 = c.root.replace("/opds/v1.2", "/opds/v2");
        link(
            &mut o,
            "alternate",
            &format!("{v2}/catalog"),
            "application/opds+json",
            "",
        );
    }
    for (rel, href) in [
        ("first", &f.pages.first),
        ("previous", &f.pages.previous),
        ("next", &f.pages.next),
        ("last", &f.pages.last),
    ] {
        if let Some(h) = href {
            link(&mut o, rel, h, own, "");
        }
    }
    for facet in &f.facets {
        let extra = format!(
            " title=\"{}\" opds:facetGroup=\"{}\"{}",
            esc(&facet.title),
            esc(facet.group),
            if facet.active {
                " opds:activeFacet=\"true\""
            } else {
                ""
            }
        );
        link(
            &mut o,
            "http://opds-spec.org/facet",
            &facet.url,
            own,
            &extra,
        );
    }
    if let Some(total) = f.pages.total {
        let _ = write!(
            o,
            "<opensearch:totalResults>{total}</opensearch:totalResults>"
        );
    }
    if f.pages.per_page > 0 {
        let _ = write!(
            o,
            "<opensearch:itemsPerPage>{}</opensearch:itemsPerPage>",
            f.pages.per_page
        );
    }
    match &f.kind {
        Kind::Navigation(entries) => {
            for n in entries {
                nav_entry(&mut o, n, f.updated);
            }
        }
        Kind::Acquisition(books) => {
            for b in books {
                book_entry(&mut o, c, b);
            }
        }
    }
    o.push_str("</feed>\n");
    o
}

fn nav_entry(o: &mut String, n: &Nav, updated: Timestamp) {
    let _ = write!(
        o,
        "<entry><title>{}</title><id>{}</id><updated>{}</updated>",
        esc(&n.title),
        esc(&n.id),
        date(updated)
    );
    if let Some(s) = &n.summary {
        let _ = write!(o, "<content type=\"text\">{}</content>", esc(s));
    }
    // `subsection` (or sort/new) on every folder: KOReader only opens those.
    let rel = if n.newest {
        "http://opds-spec.org/sort/new"
    } else {
        "subsection"
    };
    let kind = if n.acquisition {
        ACQUISITION
    } else {
        NAVIGATION
    };
    let extra = n
        .count
        .map(|c| format!(" thr:count=\"{c}\""))
        .unwrap_or_default();
    link(o, rel, &n.url, kind, &extra);
    o.push_str("</entry>");
}

/// One book: identity, metadata, artwork and one acquisition link per format.
fn book_entry(o: &mut String, c: &Call<'_>, b: &Book) {
    o.push_str("<entry>");
    entry_body(o, c, b);
    o.push_str("</entry>");
}

fn entry_body(o: &mut String, c: &Call<'_>, b: &Book) {
    let m = &b.meta;
    let _ = write!(
        o,
        "<title>{}</title><id>urn:uuid:{}</id><updated>{}</updated><published>{}</published>",
        esc(&b.title),
        b.id,
        date(b.updated_at),
        date(b.added_at)
    );
    for a in &b.authors {
        let _ = write!(o, "<author><name>{}</name></author>", esc(a));
    }
    for id in identifiers(b) {
        let _ = write!(o, "<dc:identifier>{}</dc:identifier>", esc(&id));
    }
    for l in languages(b) {
        let _ = write!(o, "<dc:language>{}</dc:language>", esc(&l));
    }
    if let Some(p) = &m.publisher {
        let _ = write!(o, "<dc:publisher>{}</dc:publisher>", esc(p));
    }
    if let Some(p) = &m.published {
        let _ = write!(o, "<dc:issued>{}</dc:issued>", esc(p));
    }
    for t in &m.tags {
        let _ = write!(o, "<category term=\"{}\" label=\"{}\"/>", esc(t), esc(t));
    }
    let mut summary = String::new();
    if let Some(s) = &m.series {
        summary = match m.series_index {
            Some(i) => format!("{s}, book {i}."),
            None => format!("{s}."),
        };
        let _ = write!(
            o,
            "<category scheme=\"http://schema.org/Series\" term=\"{}\" label=\"Series: {}\"/>",
            esc(s),
            esc(s)
        );
    }
    if let Some(d) = &m.description {
        if !summary.is_empty() {
            summary.push(' ');
        }
        summary.push_str(d);
    }
    if !summary.is_empty() {
        let _ = write!(o, "<summary type=\"text\">{}</summary>", esc(&summary));
    }
    if let Some(cover) = &m.cover {
        let base = format!("{}/books/{}", c.root, b.id);
        let ct = match cover.content_type.as_str() {
            t @ ("image/png" | "image/gif" | "image/webp") => t,
            _ => "image/jpeg",
        };
        link(
            o,
            "http://opds-spec.org/image",
            &format!("{base}/cover"),
            ct,
            "",
        );
        link(
            o,
            "http://opds-spec.org/image/thumbnail",
            &format!("{base}/thumb"),
            "image/jpeg",
            "",
        );
    }
    for f in offered(c, b) {
        let extra = format!(
            " title=\"{}\" length=\"{}\"",
            f.format.as_str().to_ascii_uppercase(),
            f.size
        );
        link(
            o,
            "http://opds-spec.org/acquisition",
            &file_url(c, b, f.format),
            f.format.content_type(),
            &extra,
        );
    }
    link(
        o,
        "alternate",
        &format!("{}/books/{}", c.root, b.id),
        ENTRY,
        "",
    );
}

/// A complete entry document for one book.
pub(super) fn entry_document(c: &Call<'_>, b: &Book) -> String {
    let mut o = String::with_capacity(2048);
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    o.push_str(
        "<entry xmlns=\"http://www.w3.org/2005/Atom\" xmlns:dc=\"http://purl.org/dc/terms/\" \
         xmlns:opds=\"http://opds-spec.org/2010/catalog\">",
    );
    entry_body(&mut o, c, b);
    o.push_str("</entry>\n");
    o
}

/// The OpenSearch description: the first `Url` an OPDS client looks for is the Atom one.
pub(super) fn opensearch(root: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <OpenSearchDescription xmlns=\"http://a9.com/-/spec/opensearch/1.1/\">\
         <ShortName>Dogear</ShortName>\
         <Description>Search titles, authors, series and tags</Description>\
         <InputEncoding>UTF-8</InputEncoding><OutputEncoding>UTF-8</OutputEncoding>\
         <Url type=\"{ACQUISITION}\" template=\"{}/search?q={{searchTerms}}\"/>\
         </OpenSearchDescription>\n",
        esc(root)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_cleaned() {
        assert_eq!(
            esc("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(esc("bell\u{7}\ttab"), "bell\ttab");
        assert_eq!(
            date(Timestamp::from_millis(1_795_500_000_123)),
            "2026-11-24T06:00:00Z"
        );
    }
}
