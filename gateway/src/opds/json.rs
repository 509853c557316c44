//! OPDS 2.0: feeds as JSON (Readium Web Publication vocabulary). Metadata never carries a
//! blank value (`null`, `""`, `[]`): absent fields are left out.

use super::Call;
use super::feeds::{file_url, identifiers, languages, offered};
use super::model::{Feed, Kind};
use dogear_storage::Book;
use serde_json::{Map, Value, json};
use warp::http::StatusCode;
use warp::http::header::{CONTENT_TYPE, HeaderValue};
use warp::reply::{Reply, Response};

const FEED: &str = "application/opds+json";
const PUBLICATION: &str = "application/opds-publication+json";

fn link(rel: &str, href: &str, kind: &str) -> Value {
    json!({"rel": rel, "href": href, "type": kind})
}

pub(super) fn feed(c: &Call<'_>, f: &Feed) -> Vec<u8> {
    let mut metadata = Map::new();
    metadata.insert("title".into(), json!(f.title));
    metadata.insert("modified".into(), json!(f.updated));
    if let Some(t) = f.pages.total {
        metadata.insert("numberOfItems".into(), json!(t));
    }
    if matches!(f.kind, Kind::Acquisition(_)) || f.pages.current.is_some() {
        metadata.insert("itemsPerPage".into(), json!(f.pages.per_page.max(1)));
    }
    if let Some(p) = f.pages.current {
        metadata.insert("currentPage".into(), json!(p));
    }
    let mut links = vec![
        link("self", &f.url, FEED),
        link("start", &format!("{}/catalog", c.root), FEED),
        json!({
            "rel": "search",
            "href": format!("{}/search{{?query}}", c.root),
            "type": FEED,
            "templated": true,
        }),
    ];
    if let Some(up) = &f.up {
        links.push(link("up", up, FEED));
    }
    for (rel, href) in [
        ("first", &f.pages.first),
        ("previous", &f.pages.previous),
        ("next", &f.pages.next),
        ("last", &f.pages.last),
    ] {
        if let Some(h) = href {
            links.push(link(rel, h, FEED));
        }
    }
    let mut doc = Map::new();
    doc.insert("metadata".into(), Value::Object(metadata));
    doc.insert("links".into(), Value::Array(links));
    match &f.kind {
        Kind::Navigation(entries) => {
            let nav: Vec<Value> = entries
                .iter()
                .map(|n| {
                    let mut l = json!({"href": n.url, "title": n.title, "type": FEED});
                    if n.newest {
                        l["rel"] = json!("http://opds-spec.org/sort/new");
                    }
                    if let Some(count) = n.count {
                        l["properties"] = json!({"numberOfItems": count});
                    }
                    l
                })
                .collect();
            doc.insert("navigation".into(), Value::Array(nav));
        }
        Kind::Acquisition(books) => {
            let pubs: Vec<Value> = books.iter().map(|b| publication(c, b)).collect();
            doc.insert("publications".into(), Value::Array(pubs));
        }
    }
    if !f.facets.is_empty() {
        let mut groups: Vec<(&str, Vec<Value>)> = Vec::new();
        for facet in &f.facets {
            let mut l = json!({"href": facet.url, "title": facet.title, "type": FEED});
            if facet.active {
                l["rel"] = json!("self");
            }
            match groups.iter_mut().find(|(g, _)| *g == facet.group) {
                Some((_, v)) => v.push(l),
                None => groups.push((facet.group, vec![l])),
            }
        }
        let facets: Vec<Value> = groups
            .into_iter()
            .map(|(g, links)| json!({"metadata": {"title": g}, "links": links}))
            .collect();
        doc.insert("facets".into(), Value::Array(facets));
    }
    serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
}

/// One book as an OPDS 2 publication.
fn publication(c: &Call<'_>, b: &Book) -> Value {
    let m = &b.meta;
    let mut md = Map::new();
    md.insert("@type".into(), json!("http://schema.org/EBook"));
    md.insert("title".into(), json!(b.title));
    if let Some(s) = m.subtitle.as_ref().filter(|s| !s.is_empty()) {
        md.insert("subtitle".into(), json!(s));
    }
    if let Some(s) = m.title_sort.as_ref().filter(|s| !s.is_empty()) {
        md.insert("sortAs".into(), json!(s));
    }
    if let Some(id) = identifiers(b).into_iter().next() {
        md.insert("identifier".into(), json!(id));
    }
    let authors: Vec<Value> = b
        .authors
        .iter()
        .enumerate()
        .map(
            |(i, a)| match m.author_sorts.get(i).filter(|s| !s.is_empty()) {
                Some(sort) => json!({"name": a, "sortAs": sort}),
                None => json!({"name": a}),
            },
        )
        .collect();
    if !authors.is_empty() {
        md.insert("author".into(), Value::Array(authors));
    }
    let langs = languages(b);
    if !langs.is_empty() {
        md.insert("language".into(), json!(langs));
    }
    md.insert("modified".into(), json!(b.updated_at));
    if let Some(p) = m.published.as_ref().filter(|s| !s.is_empty()) {
        md.insert("published".into(), json!(p));
    }
    if let Some(p) = m.publisher.as_ref().filter(|s| !s.is_empty()) {
        md.insert("publisher".into(), json!({"name": p}));
    }
    if let Some(d) = m.description.as_ref().filter(|s| !s.is_empty()) {
        md.insert("description".into(), json!(d));
    }
    if !m.tags.is_empty() {
        let subjects: Vec<Value> = m.tags.iter().map(|t| json!({"name": t})).collect();
        md.insert("subject".into(), Value::Array(subjects));
    }
    if let Some(s) = m.series.as_ref().filter(|s| !s.is_empty()) {
        let mut series = json!({"name": s});
        if let Some(i) = m.series_index {
            series["position"] = json!(i);
        }
        md.insert("belongsTo".into(), json!({"series": [series]}));
    }
    let mut links = vec![link(
        "self",
        &format!("{}/books/{}", c.root, b.id),
        PUBLICATION,
    )];
    for f in offered(c, b) {
        links.push(json!({
            "rel": "http://opds-spec.org/acquisition",
            "href": file_url(c, b, f.format),
            "type": f.format.content_type(),
            "title": f.format.as_str().to_ascii_uppercase(),
        }));
    }
    let mut publication = json!({"metadata": md, "links": links});
    if let Some(cover) = &m.cover {
        let base = format!("{}/books/{}", c.root, b.id);
        let ct = match cover.content_type.as_str() {
            t @ ("image/png" | "image/gif" | "image/webp") => t,
            _ => "image/jpeg",
        };
        publication["images"] = json!([
            {"href": format!("{base}/cover"), "type": ct},
            {"href": format!("{base}/thumb"), "type": "image/jpeg", "height": 300},
        ]);
    }
    publication
}

pub(super) fn publication_document(c: &Call<'_>, b: &Book) -> Vec<u8> {
    serde_json::to_vec(&publication(c, b)).unwrap_or_default()
}

/// The Authentication for OPDS document: Basic, with the labels an app shows.
pub(super) fn auth_document(root: &str) -> Response {
    let doc = json!({
        "id": format!("{root}/auth"),
        "title": "Dogear",
        "description": "Sign in with your Dogear user name and password.",
        "links": [{"rel": "start", "href": format!("{root}/catalog"), "type": FEED}],
        "authentication": [{
            "type": "http://opds-spec.org/auth/basic",
            "labels": {"login": "User name", "password": "Password"},
        }],
    });
    let mut r = serde_json::to_vec(&doc).unwrap_or_default().into_response();
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/opds-authentication+json"),
    );
    r
}
