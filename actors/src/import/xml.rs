//! A small element tree over quick-xml, for the little documents an importer reads
//! (container.xml, OPF, ComicInfo.xml, XMP). Inputs are capped before they get here.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

#[derive(Debug, Default, Clone)]
pub struct Element {
    /// The qualified name as written (`dc:title`).
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

#[derive(Debug, Clone)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// The part after the colon.
pub fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

impl Element {
    pub fn local(&self) -> &str {
        local(&self.name)
    }

    /// An attribute by local name (`opf:role` and `role` both answer to "role").
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| local(k) == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn child(&self, local_name: &str) -> Option<&Element> {
        self.elements().find(|e| e.local() == local_name)
    }

    /// Every descendant (depth first) with this local name.
    pub fn find_all<'a>(&'a self, local_name: &'a str, out: &mut Vec<&'a Element>) {
        for e in self.elements() {
            if e.local() == local_name {
                out.push(e);
            }
            e.find_all(local_name, out);
        }
    }

    pub fn find<'a>(&'a self, local_name: &'a str) -> Option<&'a Element> {
        let mut v = Vec::new();
        self.find_all(local_name, &mut v);
        v.into_iter().next()
    }

    /// All text inside, trimmed, whitespace runs collapsed.
    pub fn text(&self) -> String {
        let mut s = String::new();
        self.collect_text(&mut s);
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn collect_text(&self, out: &mut String) {
        for c in &self.children {
            match c {
                Node::Text(t) => out.push_str(t),
                Node::Element(e) => e.collect_text(out),
            }
        }
    }
}

/// Why a metadata document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaError {
    /// Not well-formed XML.
    Syntax(String),
    /// Readable only by expanding entities its document type declaration declares.
    NeedsDtd(String),
}

impl std::fmt::Display for MetaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaError::Syntax(s) | MetaError::NeedsDtd(s) => f.write_str(s),
        }
    }
}

/// A parsed document and what it said that Dogear deliberately did not use.
#[derive(Debug)]
pub struct Parsed {
    pub root: Element,
    /// The document type declaration, if any (the text after `<!DOCTYPE`).
    pub doctype: Option<String>,
    /// References to entities that only a document type declaration could define. They are
    /// never expanded: their text is missing from `root`.
    pub unresolved: Vec<String>,
}

impl Parsed {
    /// The declaration has an internal subset (`[...]`), where entities are declared.
    pub fn has_internal_subset(&self) -> bool {
        self.doctype.as_deref().is_some_and(|d| d.contains('['))
    }
}

/// Parses a document a book's metadata is read from (container, package document,
/// ComicInfo.xml, XMP). These never need a document type declaration, and one is never used:
/// nothing it declares is expanded and nothing it names is fetched. If the document refers to
/// entities only the declaration could define, its content cannot be read without it: `Err`.
/// Otherwise the declaration is ignored and `warnings` says so, naming `part`.
pub fn parse_metadata(
    doc: &str,
    part: &str,
    warnings: &mut Vec<dogear_storage::JobIssue>,
) -> Result<Element, MetaError> {
    let parsed = parse_full(doc).map_err(MetaError::Syntax)?;
    // Without a declaration, an unknown entity is sloppy XML (an HTML name a tool wrote into
    // an OPF) and is left out as it always was; with one, it is what the declaration defines.
    if !parsed.unresolved.is_empty() && parsed.doctype.is_some() {
        let mut names = parsed.unresolved.clone();
        names.sort();
        names.dedup();
        names.truncate(5);
        return Err(MetaError::NeedsDtd(format!(
            "it refers to entities ({}) that only a document type declaration could define, \
             and Dogear never expands those",
            names.join(", ")
        )));
    }
    if parsed.doctype.is_some() {
        warnings.push(dogear_storage::JobIssue {
            code: "dtd_ignored".into(),
            message: format!(
                "{part}: its document type declaration was ignored (nothing in it was expanded \
                 or fetched)"
            ),
        });
    }
    Ok(parsed.root)
}

/// Parses a document; the error is a human-readable reason. A document type declaration is
/// skipped, and references to entities it would declare are left out (see [`parse_full`]).
pub fn parse(doc: &str) -> Result<Element, String> {
    parse_full(doc).map(|p| p.root)
}

/// Parses a document and reports its document type declaration and the entity references
/// that could not be resolved without it.
pub fn parse_full(doc: &str) -> Result<Parsed, String> {
    let mut doctype = None;
    let mut unresolved = Vec::new();
    let mut reader = Reader::from_str(doc);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.error_position()))?;
        match ev {
            Event::Start(s) => {
                stack.push(start(&s)?);
                if stack.len() > 256 {
                    return Err("elements nested too deeply".into());
                }
            }
            Event::Empty(s) => {
                let e = start(&s)?;
                if let Some(top) = stack.last_mut() {
                    top.children.push(Node::Element(e));
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("unbalanced end tag")?;
                let top = stack.last_mut().ok_or("unbalanced end tag")?;
                top.children.push(Node::Element(done));
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.children
                        .push(Node::Text(t.xml10_content().into_owned()));
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.children
                        .push(Node::Text(t.xml10_content().into_owned()));
                }
            }
            Event::GeneralRef(r) => {
                let text = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = r.xml10_content();
                        match entity(&name) {
                            Some(t) => t.to_string(),
                            None => {
                                if unresolved.len() < 64 {
                                    unresolved.push(name.into_owned());
                                }
                                String::new()
                            }
                        }
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.children.push(Node::Text(text));
                }
            }
            Event::DocType(d) if doctype.is_none() => {
                doctype = Some(d.into_inner().trim().to_string());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(format!(
            "unclosed element <{}>",
            stack.last().map(|e| e.name.as_str()).unwrap_or("")
        ));
    }
    let root = stack.pop().unwrap_or_default();
    let root = root
        .elements()
        .next()
        .cloned()
        .ok_or_else(|| "no root element".to_string())?;
    Ok(Parsed {
        root,
        doctype,
        unresolved,
    })
}

fn start(s: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let mut attrs = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let v = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?;
        attrs.push((a.key.as_ref().to_string(), v.into_owned()));
    }
    Ok(Element {
        name: s.name().as_ref().to_string(),
        attrs,
        children: Vec::new(),
    })
}

/// XML's predefined entities and the HTML ones books commonly use without declaring them.
pub fn entity(name: &str) -> Option<&'static str> {
    quick_xml::escape::resolve_predefined_entity(name).or(match name {
        "nbsp" => Some("\u{a0}"),
        "mdash" => Some("\u{2014}"),
        "ndash" => Some("\u{2013}"),
        "hellip" => Some("\u{2026}"),
        "lsquo" => Some("\u{2018}"),
        "rsquo" => Some("\u{2019}"),
        "ldquo" => Some("\u{201c}"),
        "rdquo" => Some("\u{201d}"),
        "copy" => Some("\u{a9}"),
        "shy" => Some("\u{ad}"),
        "eacute" => Some("\u{e9}"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_never_used_and_never_silent() {
        let mut w = Vec::new();
        // Sloppy but undeclared: an HTML name in an OPF is left out, as before.
        let e = parse_metadata("<t>K&auml;se &amp; Brot</t>", "x.opf", &mut w).unwrap();
        assert_eq!(e.text(), "Kse & Brot");
        assert!(w.is_empty());
        // Declared and used: the text needs the declaration, so the document is refused.
        let doc = "<!DOCTYPE t [<!ENTITY a \"Hamlet\">]><t>&a;</t>";
        assert!(matches!(
            parse_metadata(doc, "x.opf", &mut w),
            Err(MetaError::NeedsDtd(_))
        ));
        // Declared, unused: read, with a warning naming the part.
        let doc = "<!DOCTYPE t [<!ENTITY a \"Hamlet\">]><t>plain</t>";
        let e = parse_metadata(doc, "EPUB/content.opf", &mut w).unwrap();
        assert_eq!(e.text(), "plain");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].code, "dtd_ignored");
        assert!(w[0].message.starts_with("EPUB/content.opf"));
        // An external declaration is never fetched, whatever it names.
        let doc = "<!DOCTYPE t SYSTEM \"http://127.0.0.1:9/x.dtd\"><t>&x;</t>";
        assert!(parse_metadata(doc, "x", &mut w).is_err());
    }
}
