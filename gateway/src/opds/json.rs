//! OPDS 2.0: feeds as JSON (Readium Web Publication vocabulary). Metadata never carries a
//! blank value (`null`, `""`, `[]`): absent fields are left out.

use super::Call;
use super::feeds::{file_url, identifiers, languages, offered};
use super::model::{Feed, Kind};
use dogear_storage::{Book, Timestamp};
use serde::Serialize;
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
    let mut doc = Doc {
        metadata: Value::Object(metadata),
        links,
        navigation: None,
        publications: None,
        facets: None,
    };
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
            doc.navigation = Some(nav);
        }
        Kind::Acquisition(books) => {
            doc.publications = Some(books.iter().map(|b| publication(c, b)).collect());
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
        doc.facets = Some(facets);
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// A feed: its few links as values, its publications written straight from the books.
#[derive(Serialize)]
struct Doc<'a> {
    metadata: Value,
    links: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    navigation: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publications: Option<Vec<Publication<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    facets: Option<Vec<Value>>,
}

/// One book as an OPDS 2 publication, written straight from the book (a feed page holds
/// up to 200 of them; building a `serde_json::Value` for each cost a millisecond a page).
#[derive(Serialize)]
struct Publication<'a> {
    metadata: PubMeta<'a>,
    links: Vec<PubLink<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<Image>,
}

#[derive(Serialize)]
struct PubMeta<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtitle: Option<&'a str>,
    #[serde(rename = "sortAs", skip_serializing_if = "Option::is_none")]
    sort_as: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identifier: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    author: Vec<Named<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    language: Vec<String>,
    modified: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    published: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publisher: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subject: Vec<Named<'a>>,
    #[serde(rename = "belongsTo", skip_serializing_if = "Option::is_none")]
    belongs_to: Option<BelongsTo<'a>>,
}

/// A contributor or subject: a name, and how it sorts when that differs.
#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
    #[serde(rename = "sortAs", skip_serializing_if = "Option::is_none")]
    sort_as: Option<&'a str>,
}

#[derive(Serialize)]
struct BelongsTo<'a> {
    series: [Series<'a>; 1],
}

#[derive(Serialize)]
struct Series<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<f64>,
}

#[derive(Serialize)]
struct PubLink<'a> {
    rel: &'a str,
    href: String,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
}

#[derive(Serialize)]
struct Image {
    href: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
}

/// Text worth writing: none for absent or empty.
fn text(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn publication<'a>(c: &Call<'_>, b: &'a Book) -> Publication<'a> {
    let m = &b.meta;
    let author = b
        .authors
        .iter()
        .enumerate()
        .map(|(i, a)| Named {
            name: a,
            sort_as: m
                .author_sorts
                .get(i)
                .map(String::as_str)
                .filter(|s| !s.is_empty()),
        })
        .collect();
    let metadata = PubMeta {
        kind: "http://schema.org/EBook",
        title: &b.title,
        subtitle: text(&m.subtitle),
        sort_as: text(&m.title_sort),
        identifier: identifiers(b).into_iter().next(),
        author,
        language: languages(b),
        modified: b.updated_at,
        published: text(&m.published),
        publisher: text(&m.publisher).map(|name| Named {
            name,
            sort_as: None,
        }),
        description: text(&m.description),
        subject: m
            .tags
            .iter()
            .map(|t| Named {
                name: t,
                sort_as: None,
            })
            .collect(),
        belongs_to: text(&m.series).map(|name| BelongsTo {
            series: [Series {
                name,
                position: m.series_index,
            }],
        }),
    };
    let base = format!("{}/books/{}", c.root, b.id);
    let mut links = vec![PubLink {
        rel: "self",
        href: base.clone(),
        kind: PUBLICATION,
        title: None,
    }];
    for f in offered(c, b) {
        links.push(PubLink {
            rel: "http://opds-spec.org/acquisition",
            href: file_url(c, b, f.format),
            kind: f.format.content_type(),
            title: Some(f.format.as_str().to_ascii_uppercase()),
        });
    }
    let images = match &m.cover {
        Some(cover) => {
            let kind = match cover.content_type.as_str() {
                "image/png" => "image/png",
                "image/gif" => "image/gif",
                "image/webp" => "image/webp",
                _ => "image/jpeg",
            };
            vec![
                Image {
                    href: format!("{base}/cover"),
                    kind,
                    height: None,
                },
                Image {
                    href: format!("{base}/thumb"),
                    kind: "image/jpeg",
                    height: Some(300),
                },
            ]
        }
        None => Vec::new(),
    };
    Publication {
        metadata,
        links,
        images,
    }
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
