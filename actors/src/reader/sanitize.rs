//! A book's documents made safe for a browser. An EPUB is a zip of web pages anyone can
//! write: scripts, event handlers, forms, and images or fonts on other servers (a way to
//! learn who reads what). What leaves here has none of them; the frame it renders in also
//! forbids script by its Content-Security-Policy, so a miss here is not yet a hole.

use ammonia::{Builder, UrlRelative};
use std::borrow::Cow;
use std::collections::HashSet;

/// Elements with no content that XHTML may write as `<br/>`; every other `<x/>` must be
/// opened and closed before an HTML parser reads it, or it swallows what follows.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Structural and inline elements books use, beyond ammonia's defaults.
const BOOK_TAGS: &[&str] = &[
    "section",
    "article",
    "aside",
    "nav",
    "header",
    "footer",
    "main",
    "figure",
    "figcaption",
    "mark",
    "time",
    "ruby",
    "rt",
    "rp",
    "sup",
    "sub",
    "small",
    "big",
    "center",
    "hgroup",
    "details",
    "summary",
];

/// True for a URL that reaches outside the book: a scheme (`http:`, `javascript:`,
/// `data:`), a host (`//host`), a path from the server's root, or backslashes browsers read
/// as slashes. What is left is relative, and resolves inside the book's own URL space.
pub fn is_remote(url: &str) -> bool {
    let u = url.trim();
    if u.starts_with('/') || u.contains('\\') {
        return true;
    }
    match u.find(':') {
        Some(colon) => {
            let before = &u[..colon];
            !before.contains('/') && !before.contains('?') && !before.contains('#')
        }
        None => false,
    }
}

/// `<x .../>` for non-void `x` becomes `<x ...></x>`, outside comments and quoted values.
fn expand_self_closing(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 64);
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'<' && src[i..].starts_with("<!--") {
            let end = src[i..].find("-->").map_or(src.len(), |e| i + e + 3);
            out.push_str(&src[i..end]);
            i = end;
            continue;
        }
        if bytes[i] == b'<' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_alphabetic() {
            // Find the tag's end, skipping quoted attribute values.
            let mut j = i + 1;
            let mut quote = 0u8;
            while j < bytes.len() {
                let c = bytes[j];
                if quote != 0 {
                    if c == quote {
                        quote = 0;
                    }
                } else if c == b'"' || c == b'\'' {
                    quote = c;
                } else if c == b'>' {
                    break;
                }
                j += 1;
            }
            if j >= bytes.len() {
                out.push_str(&src[i..]);
                break;
            }
            let tag = &src[i..=j];
            let name_end = tag[1..]
                .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
                .map_or(tag.len(), |e| e + 1);
            let name = &tag[1..name_end];
            if tag.ends_with("/>") && !VOID.iter().any(|v| v.eq_ignore_ascii_case(name)) {
                out.push_str(&tag[..tag.len() - 2]);
                out.push_str("></");
                out.push_str(name);
                out.push('>');
            } else {
                out.push_str(tag);
            }
            i = j + 1;
            continue;
        }
        let next = src[i + 1..].find('<').map_or(src.len(), |n| i + 1 + n);
        out.push_str(&src[i..next]);
        i = next;
    }
    out
}

/// `<svg>` wrappers of one image (how most EPUB covers are drawn) become an `<img>` of that
/// image: the sanitizer keeps no SVG, and a cover should still show.
fn svg_images(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut from = 0;
    while let Some(at) = find_ci(src, "<svg", from) {
        let Some(end) = find_ci(src, "</svg>", at).map(|e| e + "</svg>".len()) else {
            break;
        };
        out.push_str(&src[from..at]);
        let inner = &src[at..end];
        let href = find_ci(inner, "<image", 0).and_then(|i| {
            let close = inner[i..].find('>').map_or(inner.len(), |e| i + e + 1);
            let tag = &inner[i..close];
            tag_attr(tag, "xlink:href").or_else(|| tag_attr(tag, "href"))
        });
        match href.filter(|h| !h.is_empty() && !is_remote(h)) {
            Some(h) => {
                out.push_str("<img src=\"");
                out.push_str(&escape_attr(&h));
                out.push_str("\" alt=\"\">");
            }
            None => out.push_str(inner),
        }
        from = end;
    }
    out.push_str(&src[from..]);
    out
}

/// The index of `needle` (ASCII, lowercase) in `hay`, ignoring ASCII case.
fn find_ci(hay: &str, needle: &str, from: usize) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (from..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// An attribute's value from the text of one start tag.
fn tag_attr(tag: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = find_ci(tag, name, from) {
        from = at + name.len();
        let before_ok = at > 0 && tag.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = tag[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let rest = rest[1..].trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
            _ => rest
                .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .next()
                .unwrap_or(""),
        };
        return Some(value.to_string());
    }
    None
}

/// Stylesheets a document's head asks for: linked (relative hrefs only) and inline.
fn head_styles(head: &str) -> (Vec<String>, Vec<String>) {
    let mut links = Vec::new();
    let mut inline = Vec::new();
    let mut from = 0;
    while let Some(at) = find_ci(head, "<link", from) {
        let end = head[at..].find('>').map_or(head.len(), |e| at + e + 1);
        let tag = &head[at..end];
        let rel = tag_attr(tag, "rel")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if rel.split_whitespace().any(|r| r == "stylesheet")
            && !rel.contains("alternate")
            && let Some(href) = tag_attr(tag, "href")
            && !href.is_empty()
            && !is_remote(&href)
        {
            links.push(href);
        }
        from = end;
    }
    from = 0;
    while let Some(at) = find_ci(head, "<style", from) {
        let open_end = head[at..].find('>').map_or(head.len(), |e| at + e + 1);
        let close = find_ci(head, "</style", open_end).unwrap_or(head.len());
        inline.push(clean_css(&head[open_end..close]));
        from = close;
    }
    (links, inline)
}

/// A stylesheet with every way out of the book removed: `url(...)` and `@import` of
/// anything remote (kept: relative paths into the book, `data:` images and fonts), and the
/// old script hooks (`expression(`, `behavior`, `-moz-binding`). `<` is escaped so the text
/// can never close the `<style>` element it is put in.
pub fn clean_css(css: &str) -> String {
    // One pass over the text: a hostile book may hold a stylesheet of millions of `url(`s.
    // ASCII lower-casing keeps every byte offset, so positions in `lower` are positions in
    // `css`.
    let lower = css.to_ascii_lowercase();
    let mut out = String::with_capacity(css.len());
    let mut pos = 0;
    let (mut next_url, mut next_import) = (lower.find("url("), lower.find("@import"));
    loop {
        if next_url.is_some_and(|u| u < pos) {
            next_url = lower[pos..].find("url(").map(|i| i + pos);
        }
        if next_import.is_some_and(|i| i < pos) {
            next_import = lower[pos..].find("@import").map(|i| i + pos);
        }
        let (at, is_import) = match (next_url, next_import) {
            (Some(u), Some(i)) if i < u => (i, true),
            (Some(u), _) => (u, false),
            (None, Some(i)) => (i, true),
            (None, None) => {
                out.push_str(&css[pos..]);
                break;
            }
        };
        out.push_str(&css[pos..at]);
        if is_import {
            // The whole rule, to its semicolon: kept only when it names a relative sheet.
            let end = css[at..].find(';').map_or(css.len(), |e| at + e + 1);
            let rule = &css[at..end];
            let target = rule["@import".len()..]
                .trim()
                .trim_start_matches("url(")
                .trim_start_matches("URL(")
                .trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
            if !is_remote(target) {
                out.push_str(rule);
            }
            pos = end;
        } else {
            let open = at + 4;
            let close = css[open..].find(')').map_or(css.len(), |e| open + e);
            let arg = css[open..close]
                .trim()
                .trim_matches(|c: char| c == '"' || c == '\'');
            let data = arg.len() >= 5 && arg[..5].eq_ignore_ascii_case("data:");
            let end = (close + 1).min(css.len());
            if is_remote(arg) && !data {
                out.push_str("none");
            } else {
                out.push_str(&css[at..end]);
            }
            pos = end;
        }
    }
    for hook in ["expression(", "behavior", "-moz-binding", "javascript:"] {
        out = replace_ci(&out, hook, "x-removed");
    }
    out.replace('<', "\\3c ")
}

/// Every `needle` (ASCII, lowercase) in `hay` replaced, ignoring ASCII case; one pass.
fn replace_ci(hay: &str, needle: &str, with: &str) -> String {
    let mut out = String::with_capacity(hay.len());
    let mut from = 0;
    while let Some(at) = find_ci(hay, needle, from) {
        out.push_str(&hay[from..at]);
        out.push_str(with);
        from = at + needle.len();
    }
    out.push_str(&hay[from..]);
    out
}

/// A spine document (XHTML or HTML) as a whole HTML page: its stylesheets, and its body
/// with only the elements and attributes a book needs. Relative links stay relative, so
/// they resolve to Dogear's URL of the same book file.
pub fn document(src: &str) -> String {
    let src = svg_images(&expand_self_closing(src));
    let body_open = find_ci(&src, "<body", 0);
    let (head, body) = match body_open {
        Some(b) => {
            let start = src[b..].find('>').map_or(src.len(), |e| b + e + 1);
            let end = find_ci(&src, "</body", start).unwrap_or(src.len());
            (&src[..b], &src[start..end])
        }
        None => {
            // No body: everything after the head, if any.
            let start = find_ci(&src, "</head", 0)
                .and_then(|h| src[h..].find('>').map(|e| h + e + 1))
                .unwrap_or(0);
            (&src[..start], &src[start..])
        }
    };
    let lang = find_ci(&src, "<html", 0)
        .and_then(|h| {
            let end = src[h..].find('>').map_or(src.len(), |e| h + e + 1);
            let tag = &src[h..end];
            tag_attr(tag, "xml:lang").or_else(|| tag_attr(tag, "lang"))
        })
        .filter(|l| {
            l.len() <= 35
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    let (links, inline) = head_styles(head);
    let clean_body = cleaner().clean(body).to_string();
    let mut out = String::with_capacity(clean_body.len() + 512);
    out.push_str("<!DOCTYPE html>\n<html");
    if let Some(l) = lang {
        out.push_str(" lang=\"");
        out.push_str(&l);
        out.push('"');
    }
    out.push_str("><head><meta charset=\"utf-8\">");
    for href in links {
        out.push_str("<link rel=\"stylesheet\" href=\"");
        out.push_str(&escape_attr(&href));
        out.push_str("\">");
    }
    for css in inline {
        out.push_str("<style>");
        out.push_str(&css);
        out.push_str("</style>");
    }
    out.push_str("</head><body>");
    out.push_str(&clean_body);
    out.push_str("</body></html>\n");
    out
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn keep_relative(u: &str) -> Option<Cow<'_, str>> {
    (!is_remote(u)).then_some(Cow::Borrowed(u))
}

fn cleaner() -> Builder<'static> {
    let mut b = Builder::default();
    b.add_tags(BOOK_TAGS)
        .add_generic_attributes(["id", "class", "style", "dir", "lang"])
        .add_tag_attributes("img", ["src", "alt", "width", "height"])
        .add_tag_attributes("a", ["href", "id", "name"])
        .add_clean_content_tags(["title", "head", "noscript", "template", "object"])
        .link_rel(None)
        .strip_comments(true)
        .url_schemes(HashSet::new())
        .url_relative(UrlRelative::Custom(Box::new(keep_relative)))
        .attribute_filter(|_element, attr, value| {
            if attr == "style" {
                let cleaned = clean_css(value);
                return (!cleaned.contains("x-removed")).then_some(Cow::Owned(cleaned));
            }
            Some(Cow::Borrowed(value))
        });
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_handlers_forms_and_remote_resources_go() {
        let doc = r#"<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en"><head><title>T</title>
<link rel="stylesheet" type="text/css" href="../styles/book.css"/>
<link rel="stylesheet" href="https://evil.example/track.css"/>
<style>p { background: url(http://evil.example/p.png) } h1 { background: url('../img/h.png') }</style>
<script>window.pwned = 1</script></head>
<body onload="window.pwned = 2"><a id="start"/><h1 class="c">Title</h1>
<p style="color: red">One <img src="../img/a.jpg" alt="A" onerror="x()"/> two
<img src="https://evil.example/x.png"/><img src="//evil.example/y.png"/>
<a href="javascript:alert(1)">j</a><a href="ch2.xhtml#n">next</a></p>
<form action="/x"><input name="q"/><button>go</button></form>
<iframe src="https://evil.example/"></iframe><svg onload="x()"></svg>
<p style="background: url(https://evil.example/s.png)">s</p>
</body></html>"#;
        let out = document(doc);
        assert!(!out.contains("script"), "{out}");
        assert!(!out.contains("pwned"), "{out}");
        assert!(!out.contains("onload") && !out.contains("onerror"), "{out}");
        assert!(!out.contains("evil.example"), "{out}");
        assert!(!out.contains("javascript"), "{out}");
        assert!(!out.contains("<form") && !out.contains("<input"), "{out}");
        assert!(!out.contains("<iframe"), "{out}");
        assert!(!out.contains("<title"), "{out}");
        assert!(out.contains(r#"<link rel="stylesheet" href="../styles/book.css">"#));
        assert!(out.contains("url('../img/h.png')"), "{out}");
        assert!(out.contains(r#"<img src="../img/a.jpg" alt="A">"#), "{out}");
        assert!(out.contains(r#"<a href="ch2.xhtml#n">next</a>"#), "{out}");
        assert!(
            out.contains(r#"<a id="start"></a><h1 class="c">Title</h1>"#),
            "{out}"
        );
        assert!(out.contains(r#"<p style="color: red">"#), "{out}");
        assert!(
            out.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
            "{out}"
        );
    }

    #[test]
    fn an_svg_cover_becomes_its_image() {
        let doc = r#"<html><body><div id="cover-image">
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 600 900">
<image width="600" height="900" xlink:href="../media/cover.jpg" /></svg></div>
<svg><image href="https://evil.example/x.png"/></svg></body></html>"#;
        let out = document(doc);
        assert!(
            out.contains(r#"<img src="../media/cover.jpg" alt="">"#),
            "{out}"
        );
        assert!(
            !out.contains("evil.example") && !out.contains("<svg"),
            "{out}"
        );
    }

    #[test]
    fn css_keeps_the_book_and_drops_the_world() {
        let css = "@import url(http://x.test/a.css);\n@import 'local.css';\nbody{background:URL( \"//x.test/b.png\" )}\n@font-face{src:url(../f/a.ttf)}\ni{b:url(data:image/png;base64,AA)}\nx{width:expression(alert(1))}</style><script>";
        let out = clean_css(css);
        assert!(!out.contains("x.test"), "{out}");
        assert!(out.contains("@import 'local.css';"), "{out}");
        assert!(out.contains("url(../f/a.ttf)"), "{out}");
        assert!(out.contains("url(data:image/png;base64,AA)"), "{out}");
        assert!(!out.contains("expression("), "{out}");
        assert!(!out.contains('<'), "{out}");
    }

    #[test]
    fn a_huge_stylesheet_is_cleaned_in_one_pass() {
        let css = "a{background:url(http://x.test/a.png)}b{x:expression(1)}".repeat(200_000);
        // (11 MB: the quadratic cleaner this replaced would not finish in a test run.)
        let out = clean_css(&css);
        assert!(!out.contains("x.test") && !out.contains("expression("));
        assert_eq!(out.matches("url(").count(), 0);
        assert_eq!(out.matches("x-removed").count(), 200_000);
        assert_eq!(out.matches("none").count(), 200_000);
    }

    #[test]
    fn remote_urls() {
        for u in [
            "http://a",
            "HTTPS://a",
            "//a/b",
            "\\\\a",
            "javascript:x",
            "data:x",
            "a\\b",
            "/v1/users/me",
        ] {
            assert!(is_remote(u), "{u}");
        }
        for u in ["a.png", "../a.png", "a/b:c.png", "#x", "a?b:c"] {
            assert!(!is_remote(u), "{u}");
        }
    }

    #[test]
    fn self_closing_only_where_html_allows() {
        assert_eq!(
            expand_self_closing(
                r#"<p>a<br/><span class="x"/>b<!-- <i/> --><img src="a/b.png"/></p>"#
            ),
            r#"<p>a<br/><span class="x"></span>b<!-- <i/> --><img src="a/b.png"/></p>"#
        );
        assert_eq!(expand_self_closing("a < b <"), "a < b <");
        assert_eq!(
            expand_self_closing("<p title='a/>b'/>"),
            "<p title='a/>b'></p>"
        );
    }
}
