//! The catalog's tree: which feed a path is, and what it lists. The same for both versions;
//! only the writing differs.

use super::model::{Facet, Feed, Kind, Nav, Pages};
use super::{Call, Version, atom, document, json};
use crate::error::ApiError;
use crate::http::encode_component;
use crate::wire;
use dogear_storage::{
    Book, BookAfter, BookFacet, BookId, BookQuery, BookSort, Format, LibraryId, ShelfId, Timestamp,
};
use std::sync::LazyLock;
use warp::reply::Response;

/// When this node started: the `updated` of feeds that are only links (a navigation feed's
/// content changes with the code, not the library).
static STARTED: LazyLock<Timestamp> = LazyLock::new(Timestamp::now);

/// Books per page unless the client asks (`?limit=`, 1-200).
const PAGE: usize = 50;
/// Links per page of a browse list (authors, tags...).
const LIST_PAGE: usize = 100;

const FACETS: [(&str, BookFacet, &str); 4] = [
    ("authors", BookFacet::Author, "Authors"),
    ("series", BookFacet::Series, "Series"),
    ("tags", BookFacet::Tag, "Tags"),
    ("languages", BookFacet::Language, "Languages"),
];

pub(crate) async fn answer(c: &Call<'_>) -> Result<Response, ApiError> {
    let p: Vec<&str> = c.path.iter().map(String::as_str).collect();
    let feed = match p.as_slice() {
        [] | ["catalog"] => root(c),
        ["new"] => {
            let q = BookQuery {
                sort: BookSort::Added,
                descending: true,
                ..Default::default()
            };
            books(c, "new", "Recently added", q, None, false).await?
        }
        ["all"] => {
            let q = BookQuery {
                sort: BookSort::Title,
                ..Default::default()
            };
            books(c, "all", "All books", q, None, true).await?
        }
        ["reading"] => progress(c, false).await?,
        ["finished"] => progress(c, true).await?,
        [name] if FACETS.iter().any(|f| f.0 == *name) => facet_list(c, name).await?,
        [name, value] if FACETS.iter().any(|f| f.0 == *name) => {
            let mut q = BookQuery {
                sort: BookSort::Title,
                ..Default::default()
            };
            let v = Some(value.to_string());
            match *name {
                "authors" => q.author = v,
                "series" => {
                    q.series = v;
                    q.sort = BookSort::Series;
                }
                "tags" => q.tag = v,
                _ => q.language = v,
            }
            let path = format!("{name}/{}", encode_component(value));
            books(c, &path, value, q, None, true).await?
        }
        ["shelves"] => shelves(c).await?,
        ["shelves", id] => shelf(c, id).await?,
        ["libraries"] => libraries(c).await?,
        ["libraries", id] => {
            let id: LibraryId = id.parse().map_err(|_| ApiError::not_found("library"))?;
            let name = c
                .ctx
                .app
                .libraries(c.user)
                .await?
                .into_iter()
                .find(|(l, _)| l.id == id)
                .map(|(l, _)| l.name)
                .ok_or_else(|| ApiError::not_found("library"))?;
            let q = BookQuery {
                sort: BookSort::Title,
                ..Default::default()
            };
            books(c, &format!("libraries/{id}"), &name, q, Some(id), true).await?
        }
        ["search"] => {
            let terms = c.q("q").or_else(|| c.q("query")).unwrap_or("");
            if terms.len() > 512 {
                return Err(ApiError::field("q", "must be at most 512 bytes"));
            }
            let q = BookQuery {
                q: Some(terms.to_string()),
                sort: BookSort::Title,
                ..Default::default()
            };
            let title = format!("Search: {terms}");
            books(c, "search", &title, q, None, true).await?
        }
        ["opensearch.xml"] if c.version == Version::V1 => {
            return Ok(document(
                c.req,
                "application/opensearchdescription+xml; charset=utf-8",
                atom::opensearch(&c.root).into_bytes(),
            ));
        }
        ["books", id] => {
            let book = c.ctx.app.book(c.user, book_id(id)?).await?;
            return Ok(match c.version {
                Version::V1 => document(
                    c.req,
                    "application/atom+xml;type=entry;profile=opds-catalog; charset=utf-8",
                    atom::entry_document(c, &book).into_bytes(),
                ),
                Version::V2 => document(
                    c.req,
                    "application/opds-publication+json",
                    json::publication_document(c, &book),
                ),
            });
        }
        ["books", id, which @ ("cover" | "thumb")] => {
            let (cover, loc, ct) = c
                .ctx
                .app
                .book_cover(c.user, book_id(id)?, *which == "thumb")
                .await?;
            let etag = format!("{}-{which}", cover.etag);
            let extra = [(
                warp::http::header::CACHE_CONTROL,
                "private, max-age=31536000".to_string(),
            )];
            return crate::rest::files::serve(c.ctx, &c.req.headers, &loc, &etag, ct, &extra).await;
        }
        ["books", id, "file", format, ..] => {
            let format = Format::parse(format).ok_or_else(|| ApiError::not_found("file"))?;
            let (book, f) = c.ctx.app.book_file(c.user, book_id(id)?, format).await?;
            return crate::rest::files::serve_file(
                c.ctx,
                &c.req.headers,
                &f.location,
                &f.hash,
                f.format.content_type(),
                &book.download_name(f.format),
            )
            .await;
        }
        _ => return Err(ApiError::not_found("feed")),
    };
    Ok(match c.version {
        Version::V1 => {
            let ct = match feed.kind {
                Kind::Navigation(_) => {
                    "application/atom+xml;profile=opds-catalog;kind=navigation; charset=utf-8"
                }
                Kind::Acquisition(_) => {
                    "application/atom+xml;profile=opds-catalog;kind=acquisition; charset=utf-8"
                }
            };
            document(c.req, ct, atom::feed(c, &feed).into_bytes())
        }
        Version::V2 => document(c.req, "application/opds+json", json::feed(c, &feed)),
    })
}

fn book_id(s: &str) -> Result<BookId, ApiError> {
    s.parse().map_err(|_| ApiError::not_found("book"))
}

/// An absolute URL below the root with these query parameters (empty values left out).
pub(super) fn url(c: &Call<'_>, path: &str, params: &[(&str, String)]) -> String {
    let mut u = format!("{}/{path}", c.root);
    let mut sep = '?';
    for (k, v) in params {
        if v.is_empty() {
            continue;
        }
        u.push(sep);
        u.push_str(k);
        u.push('=');
        u.push_str(&encode_component(v));
        sep = '&';
    }
    u
}

fn nav(c: &Call<'_>, path: &str, title: &str, summary: &str, acquisition: bool) -> Nav {
    Nav {
        id: format!("urn:dogear:opds:{path}"),
        title: title.to_string(),
        url: url(c, path, &[]),
        summary: Some(summary.to_string()),
        acquisition,
        count: None,
        newest: path == "new",
    }
}

fn root(c: &Call<'_>) -> Feed {
    let entries = vec![
        nav(
            c,
            "reading",
            "Reading now",
            "Books you have started, most recently read first",
            true,
        ),
        nav(c, "new", "Recently added", "The newest books first", true),
        nav(
            c,
            "finished",
            "Finished",
            "Books you have finished, most recent first",
            true,
        ),
        nav(c, "all", "All books", "Every book, by title", true),
        nav(c, "authors", "Authors", "Books by author", false),
        nav(c, "series", "Series", "Books by series", false),
        nav(c, "tags", "Tags", "Books by tag", false),
        nav(c, "languages", "Languages", "Books by language", false),
        nav(c, "shelves", "Shelves", "Your shelves", false),
        nav(
            c,
            "libraries",
            "Libraries",
            "Each library you belong to",
            false,
        ),
    ];
    Feed {
        id: "urn:dogear:opds:catalog".into(),
        title: "Dogear".into(),
        url: url(c, "catalog", &[]),
        up: None,
        updated: *STARTED,
        kind: Kind::Navigation(entries),
        pages: Pages::default(),
        facets: Vec::new(),
    }
}

/// A position in a keyset-paged list, as the page links carry it.
enum Cursor {
    First,
    After(BookAfter),
    Before(BookAfter),
    Last,
}

/// Pages of books in a stable order (the sort key, then the id), read by range scans: a
/// page costs the same at the end of 20,000 books as at the start.
async fn books(
    c: &Call<'_>,
    path: &str,
    title: &str,
    mut q: BookQuery,
    library: Option<LibraryId>,
    sortable: bool,
) -> Result<Feed, ApiError> {
    let limit = match c.q("limit") {
        None => PAGE,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| ApiError::field("limit", "must be an integer from 1 to 200"))?,
    };
    if sortable && let Some(s) = c.q("sort") {
        (q.sort, q.descending) = match s {
            "title" => (BookSort::Title, false),
            "author" => (BookSort::Author, false),
            "added" => (BookSort::Added, true),
            "series" => (BookSort::Series, false),
            _ => {
                return Err(ApiError::field(
                    "sort",
                    "must be title, author, added or series",
                ));
            }
        };
    }
    if let Some(f) = c.q("format") {
        q.format = Some(
            Format::parse(f)
                .ok_or_else(|| ApiError::field("format", "must be epub, kepub, pdf or cbz"))?,
        );
    }
    let (sort, descending) = (q.sort, q.descending);
    let cursor = if let Some(a) = c.q("after") {
        Cursor::After(wire::parse_book_cursor(sort, a).ok_or_else(|| bad_cursor("after"))?)
    } else if let Some(b) = c.q("before") {
        Cursor::Before(wire::parse_book_cursor(sort, b).ok_or_else(|| bad_cursor("before"))?)
    } else if c.q("last").is_some() {
        Cursor::Last
    } else {
        Cursor::First
    };
    q.limit = limit;
    q.with_files = true;
    let backwards = matches!(cursor, Cursor::Before(_) | Cursor::Last);
    q.descending = descending != backwards;
    q.after = match &cursor {
        Cursor::After(a) | Cursor::Before(a) => Some(a.clone()),
        _ => None,
    };
    let (mut items, more) = c.ctx.app.list_books(c.user, library, q.clone()).await?;
    if backwards {
        items.reverse();
    }
    let key = |b: &Book| {
        wire::book_cursor(
            sort,
            &BookAfter {
                key: b.sort_key(sort),
                id: b.id,
            },
        )
    };
    let (has_prev, has_next) = match cursor {
        Cursor::First => (false, more.is_some()),
        Cursor::After(_) => (true, more.is_some()),
        Cursor::Before(_) => (more.is_some(), true),
        Cursor::Last => (more.is_some(), false),
    };
    // The parameters every page link keeps: the order, the format, the search, the size.
    let mut keep: Vec<(&str, String)> = Vec::new();
    for k in ["q", "query", "sort", "format"] {
        if let Some(v) = c.q(k) {
            keep.push((k, v.to_string()));
        }
    }
    if limit != PAGE {
        keep.push(("limit", limit.to_string()));
    }
    let with = |extra: Option<(&'static str, String)>| {
        let mut p = keep.clone();
        p.extend(extra);
        url(c, path, &p)
    };
    let pages = Pages {
        first: Some(with(None)),
        previous: match items.first() {
            Some(b) if has_prev => Some(with(Some(("before", key(b))))),
            _ => None,
        },
        next: match items.last() {
            Some(b) if has_next => Some(with(Some(("after", key(b))))),
            _ => None,
        },
        last: Some(with(Some(("last", "1".into())))),
        total: None,
        per_page: limit,
        current: None,
    };
    let self_url = url(
        c,
        path,
        &c.req
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect::<Vec<_>>(),
    );
    let mut facets = Vec::new();
    if sortable {
        let active = c.q("sort").unwrap_or(match sort {
            BookSort::Series => "series",
            _ => "title",
        });
        for (value, label) in [
            ("title", "Title"),
            ("author", "Author"),
            ("added", "Newest"),
            ("series", "Series"),
        ] {
            let mut p: Vec<(&str, String)> =
                keep.iter().filter(|(k, _)| *k != "sort").cloned().collect();
            p.push(("sort", value.to_string()));
            facets.push(Facet {
                group: "Sort by",
                title: label.to_string(),
                url: url(c, path, &p),
                active: active == value,
            });
        }
    }
    let active_format = c.q("format").unwrap_or("");
    for (value, label) in [
        ("", "All formats"),
        ("epub", "EPUB"),
        ("kepub", "KEPUB"),
        ("pdf", "PDF"),
        ("cbz", "CBZ"),
    ] {
        let mut p: Vec<(&str, String)> = keep
            .iter()
            .filter(|(k, _)| *k != "format")
            .cloned()
            .collect();
        p.push(("format", value.to_string()));
        facets.push(Facet {
            group: "Format",
            title: label.to_string(),
            url: url(c, path, &p),
            active: active_format == value,
        });
    }
    Ok(Feed {
        id: format!("urn:dogear:opds:{path}"),
        title: title.to_string(),
        url: self_url,
        up: Some(url(c, "catalog", &[])),
        updated: newest(&items),
        kind: Kind::Acquisition(items),
        pages,
        facets,
    })
}

fn bad_cursor(field: &str) -> ApiError {
    ApiError::field(field, "is not a valid cursor for this order")
}

fn newest(items: &[Book]) -> Timestamp {
    items.iter().map(|b| b.updated_at).max().unwrap_or(*STARTED)
}

/// `?page=N` (1-based) of `total` items, `per` a page: the range and the page links.
fn numbered(
    c: &Call<'_>,
    path: &str,
    total: usize,
    per: usize,
) -> Result<(std::ops::Range<usize>, Pages), ApiError> {
    let pages = total.div_ceil(per).max(1);
    let page = match c.q("page") {
        None => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| (1..=pages).contains(p))
            .ok_or_else(|| ApiError::field("page", &format!("must be a page from 1 to {pages}")))?,
    };
    let link = |n: usize| url(c, path, &[("page", n.to_string())]);
    let start = (page - 1) * per;
    Ok((
        start..(start + per).min(total),
        Pages {
            first: Some(link(1)),
            previous: (page > 1).then(|| link(page - 1)),
            next: (page < pages).then(|| link(page + 1)),
            last: Some(link(pages)),
            total: Some(total as u64),
            per_page: per,
            current: Some(page as u64),
        },
    ))
}

/// Reading now (started, not finished) or finished, the most recently moved first.
async fn progress(c: &Call<'_>, finished: bool) -> Result<Feed, ApiError> {
    let (path, title) = if finished {
        ("finished", "Finished")
    } else {
        ("reading", "Reading now")
    };
    let states = c.ctx.app.recent_progress(c.user, finished).await?;
    let (range, pages) = numbered(c, path, states.len(), PAGE)?;
    let ids: Vec<BookId> = states[range].iter().map(|s| s.book_id).collect();
    let items = c.ctx.app.books_in_order(c.user, &ids).await?;
    Ok(Feed {
        id: format!("urn:dogear:opds:{path}"),
        title: title.into(),
        url: url(c, path, &[("page", pages.current.unwrap_or(1).to_string())]),
        up: Some(url(c, "catalog", &[])),
        updated: states.first().map_or(*STARTED, |s| s.updated_at),
        kind: Kind::Acquisition(items),
        pages,
        facets: Vec::new(),
    })
}

/// Authors, series, tags or languages, each a link to its books.
async fn facet_list(c: &Call<'_>, name: &str) -> Result<Feed, ApiError> {
    let Some((_, facet, title)) = FACETS.iter().find(|f| f.0 == name) else {
        return Err(ApiError::not_found("feed"));
    };
    let values = c.ctx.app.book_facets(c.user, None, *facet).await?;
    let (range, pages) = numbered(c, name, values.len(), LIST_PAGE)?;
    let entries = values[range]
        .iter()
        .map(|(v, n)| {
            let path = format!("{name}/{}", encode_component(v));
            Nav {
                id: format!("urn:dogear:opds:{path}"),
                title: v.clone(),
                url: url(c, &path, &[]),
                summary: Some(if *n == 1 {
                    "1 book".into()
                } else {
                    format!("{n} books")
                }),
                acquisition: true,
                count: Some(*n),
                newest: false,
            }
        })
        .collect();
    Ok(Feed {
        id: format!("urn:dogear:opds:{name}"),
        title: (*title).into(),
        url: url(c, name, &[("page", pages.current.unwrap_or(1).to_string())]),
        up: Some(url(c, "catalog", &[])),
        updated: *STARTED,
        kind: Kind::Navigation(entries),
        pages,
        facets: Vec::new(),
    })
}

async fn shelves(c: &Call<'_>) -> Result<Feed, ApiError> {
    let entries = c
        .ctx
        .app
        .shelves(c.user)
        .await?
        .into_iter()
        .map(|s| {
            let path = format!("shelves/{}", s.id);
            let n = s.books.len() as u64;
            Nav {
                id: format!("urn:uuid:{}", s.id),
                title: s.name,
                url: url(c, &path, &[]),
                summary: Some(format!("{n} books")),
                acquisition: true,
                count: Some(n),
                newest: false,
            }
        })
        .collect();
    Ok(Feed {
        id: "urn:dogear:opds:shelves".into(),
        title: "Shelves".into(),
        url: url(c, "shelves", &[]),
        up: Some(url(c, "catalog", &[])),
        updated: *STARTED,
        kind: Kind::Navigation(entries),
        pages: Pages::default(),
        facets: Vec::new(),
    })
}

async fn shelf(c: &Call<'_>, id: &str) -> Result<Feed, ApiError> {
    let id: ShelfId = id.parse().map_err(|_| ApiError::not_found("shelf"))?;
    let shelf = c.ctx.app.shelf(c.user, id).await?;
    let path = format!("shelves/{id}");
    let (range, pages) = numbered(c, &path, shelf.books.len(), PAGE)?;
    let items = c
        .ctx
        .app
        .books_in_order(c.user, &shelf.books[range])
        .await?;
    Ok(Feed {
        id: format!("urn:uuid:{id}"),
        title: shelf.name,
        url: url(
            c,
            &path,
            &[("page", pages.current.unwrap_or(1).to_string())],
        ),
        up: Some(url(c, "shelves", &[])),
        updated: shelf.updated_at,
        kind: Kind::Acquisition(items),
        pages,
        facets: Vec::new(),
    })
}

async fn libraries(c: &Call<'_>) -> Result<Feed, ApiError> {
    let entries = c
        .ctx
        .app
        .libraries(c.user)
        .await?
        .into_iter()
        .map(|(l, _)| {
            let mut n = nav(c, &format!("libraries/{}", l.id), &l.name, "", true);
            n.id = format!("urn:uuid:{}", l.id);
            n.summary = None;
            n
        })
        .collect();
    Ok(Feed {
        id: "urn:dogear:opds:libraries".into(),
        title: "Libraries".into(),
        url: url(c, "libraries", &[]),
        up: Some(url(c, "catalog", &[])),
        updated: *STARTED,
        kind: Kind::Navigation(entries),
        pages: Pages::default(),
        facets: Vec::new(),
    })
}

/// The formats of a book in the order offered: KEPUB first to a Kobo, last to anyone else.
pub(super) fn offered(c: &Call<'_>, book: &Book) -> Vec<dogear_storage::BookFile> {
    let mut files = book.meta.formats.clone();
    let kobo = c.is_kobo();
    files.sort_by_key(|f| match (f.format == Format::Kepub, kobo) {
        (true, true) => 0,
        (false, _) => 1,
        (true, false) => 2,
    });
    files
}

/// Where a file of a book downloads from: ends in a readable file name (apps name the
/// download by the last segment).
pub(super) fn file_url(c: &Call<'_>, book: &Book, format: Format) -> String {
    format!(
        "{}/books/{}/file/{}/{}",
        c.root,
        book.id,
        format.as_str(),
        encode_component(&book.download_name(format))
    )
}

/// Identifiers as URNs: `urn:isbn:...`, `urn:uuid:...`, else `scheme:value`.
pub(super) fn identifiers(book: &Book) -> Vec<String> {
    book.identifiers
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| match k.as_str() {
            "isbn" => format!("urn:isbn:{v}"),
            "uuid" => format!("urn:uuid:{v}"),
            _ => format!("{k}:{v}"),
        })
        .collect()
}

/// The languages of a book, the main one first.
pub(super) fn languages(book: &Book) -> Vec<String> {
    let mut out: Vec<String> = book.language.iter().cloned().collect();
    for l in &book.meta.languages {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(l)) {
            out.push(l.clone());
        }
    }
    out
}
