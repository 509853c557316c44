//! KEPUB, natively: the EPUB with every sentence of its spine documents wrapped in
//! `<span class="koboSpan" id="kobo.P.S">` (P counts block elements, S sentences within
//! one), and the body wrapped in `book-columns`/`book-inner` divs, as Kobo's reader expects
//! for its reading statistics and precise positions. Every other entry is copied unchanged
//! (compressed bytes and all); the archive was already checked by [`super::archive`].

use super::ImportError;
use super::archive::Archive;
use super::epub;
use quick_xml::events::{BytesEnd, BytesStart, Event};
use quick_xml::reader::Reader;
use quick_xml::writer::Writer;
use std::io::{Seek, Write};
use std::path::Path;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Most bytes of one spine document converted.
const MAX_DOC: u64 = 32 << 20;

const BLOCKS: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "div",
    "blockquote",
    "td",
    "th",
    "dt",
    "dd",
    "figcaption",
    "caption",
    "pre",
    "section",
    "article",
    "aside",
    "header",
    "footer",
];
/// Elements whose text is never wrapped.
const SKIP: &[&str] = &[
    "script", "style", "svg", "math", "head", "title", "textarea",
];

/// Converts the EPUB at `src` into a KEPUB written to `out`.
pub fn convert<W: Write + Seek>(src: &Path, out: W) -> Result<W, ImportError> {
    let (mut ar, pkg) = epub::open(src)?;
    convert_opened(&mut ar, &pkg, out, &mut Vec::new())
}

/// What the conversion left out of the KEPUB, for the job's warnings.
#[derive(Default)]
struct Removed {
    /// Documents whose document type declaration was removed.
    doctypes: Vec<String>,
    /// Entity references that only such a declaration could have defined, dropped.
    refs: usize,
}

/// [`convert`] for an EPUB already opened (and checked) by [`epub::open`]. What the KEPUB
/// leaves out is added to `warnings`: entries that are not regular files, and document type
/// declarations with an internal subset (a device's parser might expand what they declare).
pub fn convert_opened<W: Write + Seek>(
    ar: &mut Archive,
    pkg: &epub::Package,
    out: W,
    warnings: &mut Vec<dogear_storage::JobIssue>,
) -> Result<W, ImportError> {
    let mut removed = Removed::default();
    let w = write_kepub(ar, pkg, out, &mut removed)?;
    if !removed.doctypes.is_empty() {
        let shown = removed.doctypes.iter().take(3).cloned().collect::<Vec<_>>();
        warnings.push(dogear_storage::JobIssue {
            code: "dtd_ignored".into(),
            message: format!(
                "the KEPUB leaves out the document type declarations of {} document(s) ({}{}) \
                 and {} entity reference(s) only they defined; nothing was expanded or fetched",
                removed.doctypes.len(),
                shown.join(", "),
                if removed.doctypes.len() > 3 {
                    ", ..."
                } else {
                    ""
                },
                removed.refs
            ),
        });
    }
    Ok(w)
}

/// Files with XML inside, which may carry a document type declaration.
fn is_xml_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        ".xml", ".opf", ".ncx", ".xhtml", ".html", ".htm", ".svg", ".smil",
    ]
    .iter()
    .any(|e| n.ends_with(e))
}

fn write_kepub<W: Write + Seek>(
    ar: &mut Archive,
    pkg: &epub::Package,
    out: W,
    removed: &mut Removed,
) -> Result<W, ImportError> {
    let manifest = pkg.manifest();
    let spine: std::collections::HashSet<String> = manifest
        .values()
        .filter(|(_, mt, _)| mt == "application/xhtml+xml" || mt == "text/html")
        .map(|(p, _, _)| p.clone())
        .collect();
    let werr =
        |e: zip::result::ZipError| ImportError::new("io", format!("cannot write the KEPUB ({e})"));
    let mut zw = ZipWriter::new(out);
    zw.start_file(
        "mimetype",
        SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
    )
    .map_err(werr)?;
    zw.write_all(b"application/epub+zip")
        .map_err(ImportError::io)?;
    // Level 1: a third of the CPU of the default level for a few percent more bytes; the
    // conversion is the costliest stage of an import.
    let deflated = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(1));
    let names: Vec<(usize, String, bool)> = ar
        .entries
        .iter()
        .enumerate()
        // Entries that are not regular files (symbolic links, devices, ...) never reach a
        // KEPUB: unzipping it would make them on the reader's machine.
        .filter(|(_, e)| e.special.is_none())
        .map(|(i, e)| (i, e.name.clone(), e.is_dir))
        .collect();
    // Two buffers for every document of the book, instead of two allocations per document.
    let (mut raw, mut out_buf) = (Vec::new(), Vec::new());
    for (i, name, is_dir) in names {
        if name == "mimetype" || is_dir {
            continue;
        }
        if spine.contains(&name) {
            ar.read_index_into(i, MAX_DOC, &mut raw)?;
            // A UTF-16 document is read as the UTF-8 it becomes in the KEPUB.
            let text: Option<std::borrow::Cow<str>> = match std::str::from_utf8(&raw) {
                Ok(t) => Some(t.into()),
                Err(_) => utf16_to_utf8(&raw).map(Into::into),
            };
            let mut cleaned = None;
            let converted: &[u8] = match text {
                Some(text) => {
                    match spans_report(&text, std::mem::take(&mut out_buf), removed, &name) {
                        Some(b) => {
                            out_buf = b;
                            &out_buf
                        }
                        None => match without_internal_subset(&text) {
                            Some(c) => {
                                removed.doctypes.push(name.clone());
                                cleaned.insert(c).as_bytes()
                            }
                            None => &raw,
                        },
                    }
                }
                None => &raw,
            };
            zw.start_file(name.as_str(), deflated).map_err(werr)?;
            zw.write_all(converted).map_err(ImportError::io)?;
        } else if is_xml_name(&name) {
            ar.read_index_into(i, MAX_DOC, &mut raw)?;
            let clean = match std::str::from_utf8(&raw) {
                Ok(text) => without_internal_subset(text),
                Err(_) => utf16_to_utf8(&raw).and_then(|t| without_internal_subset(&t)),
            };
            match clean {
                Some(clean) => {
                    removed.doctypes.push(name.clone());
                    zw.start_file(name.as_str(), deflated).map_err(werr)?;
                    zw.write_all(clean.as_bytes()).map_err(ImportError::io)?;
                }
                None => ar.copy_raw(i, &mut zw)?,
            }
        } else {
            ar.copy_raw(i, &mut zw)?;
        }
    }
    zw.finish().map_err(werr)
}

/// `doc` without its document type declaration, if that declaration has an internal subset
/// (`<!DOCTYPE x [ ... ]>`, where entities are declared); `None` when there is nothing to
/// remove or the document cannot be read.
pub fn without_internal_subset(doc: &str) -> Option<String> {
    let mut r = Reader::from_str(doc);
    loop {
        let before = r.buffer_position() as usize;
        match r.read_event() {
            Ok(Event::DocType(d)) => {
                if !d.into_inner().contains('[') {
                    return None;
                }
                let after = r.buffer_position() as usize;
                return Some(format!("{}{}", doc.get(..before)?, doc.get(after..)?));
            }
            Ok(Event::Start(_) | Event::Empty(_) | Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A UTF-16 document (known by its byte-order mark), which the XML reader cannot read, as
/// UTF-8, its XML declaration saying so. `None` when it is not UTF-16.
fn utf16_to_utf8(raw: &[u8]) -> Option<String> {
    let (big_endian, body) = match raw {
        [0xFE, 0xFF, rest @ ..] => (true, rest),
        [0xFF, 0xFE, rest @ ..] => (false, rest),
        _ => return None,
    };
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| {
            if big_endian {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        })
        .collect();
    let text = String::from_utf16_lossy(&units);
    let head_end = text.find("?>").filter(|_| text.starts_with("<?xml"));
    Some(match head_end {
        Some(end) => {
            let decl = text[..end]
                .replace("UTF-16", "UTF-8")
                .replace("utf-16", "UTF-8");
            format!("{decl}{}", &text[end..])
        }
        None => text,
    })
}

/// A document type declaration a KEPUB may keep: the plain HTML/XHTML ones, no internal subset.
fn harmless_doctype(d: &str) -> bool {
    let d = d.trim();
    !d.contains('[')
        && d.get(..4).is_some_and(|h| h.eq_ignore_ascii_case("html"))
        && (d.len() == 4 || d.contains("//W3C//DTD XHTML") || d.contains("//W3C//DTD HTML"))
}

/// Splits text into sentences, keeping each sentence's trailing spaces with it.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?' | '…') {
            // Include closing quotes and brackets, then the spaces after.
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if matches!(d, '"' | '\'' | '”' | '’' | ')' | ']' | '.' | '!' | '?') {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let mut saw_space = false;
            while let Some(&(j, d)) = chars.peek() {
                if d.is_whitespace() {
                    end = j + d.len_utf8();
                    saw_space = true;
                    chars.next();
                } else {
                    break;
                }
            }
            if saw_space || chars.peek().is_none() {
                out.push(&text[start..end]);
                start = end;
            }
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

struct State {
    in_body: bool,
    skip: usize,
    para: u32,
    seg: u32,
    buf: String,
}

/// Rewrites one XHTML document with koboSpans.
pub fn spans(doc: &str) -> Result<Vec<u8>, String> {
    spans_into(doc, Vec::new())
}

/// Converts one spine document, noting in `removed` what was left out of it; `None` when
/// it cannot be read as XML (the caller then copies it unchanged, less any internal subset).
fn spans_report(doc: &str, buf: Vec<u8>, removed: &mut Removed, name: &str) -> Option<Vec<u8>> {
    let before = removed.refs;
    let mut dropped = false;
    let out = spans_with(doc, buf, &mut removed.refs, &mut dropped).ok()?;
    if dropped || removed.refs > before {
        removed.doctypes.push(name.to_string());
    }
    Some(out)
}

/// [`spans`] into a reused buffer (cleared first).
pub fn spans_into(doc: &str, buf: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut refs = 0;
    let mut dropped = false;
    spans_with(doc, buf, &mut refs, &mut dropped)
}

/// The conversion. A document type declaration other than the plain HTML ones is left out
/// (`dropped_doctype`), and so is every reference to an entity only a declaration could
/// define (`refs` counts them): nothing is ever expanded, and the KEPUB a device parses never
/// declares entities of its own.
fn spans_with(
    doc: &str,
    mut buf: Vec<u8>,
    refs: &mut usize,
    dropped_doctype: &mut bool,
) -> Result<Vec<u8>, String> {
    buf.clear();
    buf.reserve(doc.len() + doc.len() / 2);
    let mut r = Reader::from_str(doc);
    r.config_mut().check_end_names = false;
    let mut w = Writer::new(buf);
    let mut st = State {
        in_body: false,
        skip: 0,
        para: 0,
        seg: 0,
        buf: String::new(),
    };
    let e = |e: std::io::Error| e.to_string();
    loop {
        let ev = r.read_event().map_err(|e| e.to_string())?;
        match ev {
            Event::Text(t) if st.in_body && st.skip == 0 => st.buf.push_str(&t.xml10_content()),
            Event::CData(t) if st.in_body && st.skip == 0 => st.buf.push_str(&t.xml10_content()),
            Event::GeneralRef(g) => {
                let resolved = match g.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    _ => {
                        let n = g.xml10_content();
                        super::xml::entity(&n).map(str::to_string)
                    }
                };
                match resolved {
                    Some(s) if st.in_body && st.skip == 0 => st.buf.push_str(&s),
                    Some(s) => escape_into(w.get_mut(), &s),
                    None => *refs += 1,
                }
            }
            Event::DocType(d) => {
                flush(&mut st, &mut w).map_err(e)?;
                if harmless_doctype(&d.clone().into_inner()) {
                    w.write_event(Event::DocType(d)).map_err(e)?;
                } else {
                    *dropped_doctype = true;
                }
            }
            Event::Eof => {
                flush(&mut st, &mut w).map_err(e)?;
                break;
            }
            other => {
                flush(&mut st, &mut w).map_err(e)?;
                match &other {
                    Event::Start(s) => {
                        let name = local(s.name().as_ref());
                        if name == "body" {
                            w.write_event(other.borrow()).map_err(e)?;
                            st.in_body = true;
                            w.write_event(Event::Start(
                                BytesStart::new("div").with_attributes([("id", "book-columns")]),
                            ))
                            .map_err(e)?;
                            w.write_event(Event::Start(
                                BytesStart::new("div").with_attributes([("id", "book-inner")]),
                            ))
                            .map_err(e)?;
                            continue;
                        }
                        if SKIP.contains(&name.as_str()) || st.skip > 0 {
                            st.skip += 1;
                        } else if st.in_body && BLOCKS.contains(&name.as_str()) {
                            st.para += 1;
                            st.seg = 0;
                        }
                    }
                    Event::End(end) => {
                        let name = local(end.name().as_ref());
                        if name == "body" && st.in_body {
                            w.write_event(Event::End(BytesEnd::new("div"))).map_err(e)?;
                            w.write_event(Event::End(BytesEnd::new("div"))).map_err(e)?;
                            st.in_body = false;
                        } else if st.skip > 0 {
                            st.skip -= 1;
                        }
                    }
                    _ => {}
                }
                w.write_event(other).map_err(e)?;
            }
        }
    }
    Ok(w.into_inner())
}

fn local(name: &str) -> String {
    name.rsplit(':').next().unwrap_or("").to_ascii_lowercase()
}

/// Writes the pending text as spans, straight into the output buffer (this is the
/// conversion's innermost loop: no per-span allocation).
fn flush(st: &mut State, w: &mut Writer<Vec<u8>>) -> std::io::Result<()> {
    if st.buf.is_empty() {
        return Ok(());
    }
    let text = std::mem::take(&mut st.buf);
    let out = w.get_mut();
    if text.trim().is_empty() {
        escape_into(out, &text);
        st.buf = text;
        st.buf.clear();
        return Ok(());
    }
    if st.para == 0 {
        st.para = 1;
    }
    for s in sentences(&text) {
        st.seg += 1;
        out.extend_from_slice(b"<span class=\"koboSpan\" id=\"kobo.");
        push_u32(out, st.para);
        out.push(b'.');
        push_u32(out, st.seg);
        out.extend_from_slice(b"\">");
        escape_into(out, s);
        out.extend_from_slice(b"</span>");
    }
    // Keep the allocation for the next text run.
    st.buf = text;
    st.buf.clear();
    Ok(())
}

fn push_u32(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Text content escaping: `&`, `<` and `>`.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut last = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[last..i]);
        out.extend_from_slice(rep);
        last = i + 1;
    }
    out.extend_from_slice(&bytes[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_sentences_in_blocks() {
        let doc = r#"<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>T. x</title><style>p{}</style></head><body><h1>Act I</h1><p>To be. Or not &amp; so? <em>That</em> is it</p></body></html>"#;
        let out = String::from_utf8(spans(doc).unwrap()).unwrap();
        assert!(out.contains(r#"<body><div id="book-columns"><div id="book-inner"><h1><span class="koboSpan" id="kobo.1.1">Act I</span></h1>"#), "{out}");
        assert!(out.contains(r#"<p><span class="koboSpan" id="kobo.2.1">To be. </span><span class="koboSpan" id="kobo.2.2">Or not &amp; so? </span><em><span class="koboSpan" id="kobo.2.3">That</span></em>"#), "{out}");
        assert!(
            out.contains("<title>T. x</title><style>p{}</style>"),
            "head untouched: {out}"
        );
        assert!(out.ends_with("</div></div></body></html>"), "{out}");
    }

    #[test]
    fn splits_sentences() {
        assert_eq!(
            sentences("A. B! \"C?\" D"),
            vec!["A. ", "B! ", "\"C?\" ", "D"]
        );
        assert_eq!(sentences("3.5 is a number."), vec!["3.5 is a number."]);
    }
}
