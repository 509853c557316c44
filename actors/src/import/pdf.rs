//! PDF metadata: the Info dictionary and the XMP packet, read by a small parser that follows
//! the cross-reference table (never the whole file), and page 1 rendered as the cover by
//! poppler's `pdftoppm` when it is installed.

use super::xml::{self, Element};
use super::{Extracted, ImportError, Person};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TAIL: u64 = 64 * 1024;
/// How far into a file without a usable cross-reference table we search for an object.
const SCAN_MAX: u64 = 64 << 20;
const MAX_OBJECT: usize = 1 << 20;
const MAX_XMP: u64 = 4 << 20;
/// Address space allowed to the page renderer.
const RENDER_MAX_MEMORY: libc::rlim_t = 1 << 30;

struct Pdf {
    file: File,
    len: u64,
    tail: Vec<u8>,
}

/// A parsed PDF value (only what metadata needs).
#[derive(Debug, Clone, PartialEq)]
enum Obj {
    Str(Vec<u8>),
    Name(String),
    Num(f64),
    Ref(u32, u32),
    Dict(Vec<(String, Obj)>),
    Array(Vec<Obj>),
    Other,
}

impl Obj {
    fn get(&self, key: &str) -> Option<&Obj> {
        match self {
            Obj::Dict(d) => d.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

pub fn extract(path: &Path) -> Result<Extracted, ImportError> {
    let mut x = read_metadata(path)?;
    match render_first_page(path) {
        Some(jpeg) => x.cover = Some(jpeg),
        None => x.warnings.push(
            ImportError::new(
                "no_cover",
                "page 1 could not be rendered as the cover (is poppler's pdftoppm installed?)",
            )
            .issue(),
        ),
    }
    Ok(x)
}

pub fn read_metadata(path: &Path) -> Result<Extracted, ImportError> {
    let mut file = File::open(path).map_err(ImportError::io)?;
    let len = file.metadata().map_err(ImportError::io)?.len();
    let mut head = [0u8; 5];
    if len < 5 || file.read_exact(&mut head).is_err() || &head != b"%PDF-" {
        return Err(ImportError::new(
            "not_pdf",
            "the file does not start with a PDF header",
        ));
    }
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start)).map_err(ImportError::io)?;
    let mut tail = Vec::new();
    (&mut file)
        .take(TAIL)
        .read_to_end(&mut tail)
        .map_err(ImportError::io)?;
    let mut pdf = Pdf { file, len, tail };

    let mut x = Extracted::default();
    let info = pdf
        .trailer_ref(b"/Info")
        .and_then(|r| pdf.object(r))
        .unwrap_or(Obj::Other);
    let text = |pdf: &mut Pdf, key: &str| -> Option<String> {
        let v = info.get(key)?.clone();
        let v = match v {
            Obj::Ref(n, g) => pdf.object((n, g))?,
            v => v,
        };
        match v {
            Obj::Str(b) => Some(decode_text(&b))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            _ => None,
        }
    };
    let title = text(&mut pdf, "Title");
    let author = text(&mut pdf, "Author");
    let keywords = text(&mut pdf, "Keywords");
    let subject = text(&mut pdf, "Subject");
    let xmp = pdf.xmp(&mut x.warnings).unwrap_or_default();

    if let Some(t) = title {
        x.title = t;
        x.metadata_source = "info";
    } else if let Some(t) = xmp.title.clone() {
        x.title = t;
        x.metadata_source = "xmp";
    }
    let authors: Vec<String> = match author {
        Some(a) => split_people(&a),
        None => xmp.creators.clone(),
    };
    x.authors = authors
        .into_iter()
        .map(|name| Person { name, sort: None })
        .collect();
    x.languages = xmp.languages;
    x.tags = if xmp.subjects.is_empty() {
        keywords
            .map(|k| {
                k.split([',', ';'])
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        xmp.subjects
    };
    x.description = xmp.description.or(subject);
    x.publisher = xmp.publishers.into_iter().next();
    Ok(x)
}

fn split_people(s: &str) -> Vec<String> {
    s.split(['&', ';'])
        .flat_map(|p| p.split(" and "))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// PDF text strings: UTF-16BE with a BOM, UTF-8 with a BOM, else PDFDocEncoding (close
/// enough to Latin-1 for metadata).
fn decode_text(b: &[u8]) -> String {
    if b.starts_with(&[0xFE, 0xFF]) {
        let units: Vec<u16> = b[2..]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    if let Some(rest) = b.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    b.iter().map(|&c| c as char).collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

#[derive(Default)]
struct Xmp {
    title: Option<String>,
    creators: Vec<String>,
    languages: Vec<String>,
    subjects: Vec<String>,
    description: Option<String>,
    publishers: Vec<String>,
}

impl Pdf {
    /// `/Key N G R` in the last trailer (or cross-reference stream dictionary).
    fn trailer_ref(&self, key: &[u8]) -> Option<(u32, u32)> {
        let at = rfind(&self.tail, key)? + key.len();
        let mut p = Parser {
            b: &self.tail[at..],
            i: 0,
        };
        match p.value(0)? {
            Obj::Ref(n, g) => Some((n, g)),
            _ => None,
        }
    }

    /// The byte offset of object `n` from the classic cross-reference table, else by search.
    fn offset(&mut self, n: u32, g: u32) -> Option<u64> {
        if let Some(off) = self.xref_offset(n) {
            return Some(off);
        }
        // No table (or an xref stream): look for "n g obj" in the first part of the file.
        let needle = format!("{n} {g} obj");
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < self.len.min(SCAN_MAX) {
            self.file.seek(SeekFrom::Start(pos)).ok()?;
            let got = (&mut self.file)
                .take(buf.len() as u64)
                .read(&mut buf)
                .ok()?;
            if got == 0 {
                break;
            }
            let mut from = 0;
            while let Some(i) = find(&buf[from..got], needle.as_bytes()) {
                let at = from + i;
                if at == 0 || !buf[at - 1].is_ascii_digit() {
                    return Some(pos + at as u64);
                }
                from = at + 1;
            }
            // The next window overlaps this one by the needle's length, and always moves on:
            // a window that reached the end of the file is the last.
            let end = pos + got as u64;
            if got <= needle.len() || end >= self.len.min(SCAN_MAX) {
                break;
            }
            pos = end - needle.len() as u64;
        }
        None
    }

    fn xref_offset(&mut self, n: u32) -> Option<u64> {
        let at = rfind(&self.tail, b"startxref")? + 9;
        let s = std::str::from_utf8(&self.tail[at..]).ok().or_else(|| {
            let end = self.tail[at..]
                .iter()
                .position(|c| *c == b'%')
                .map(|e| at + e)?;
            std::str::from_utf8(&self.tail[at..end]).ok()
        })?;
        let xref: u64 = s.split_whitespace().next()?.parse().ok()?;
        self.file.seek(SeekFrom::Start(xref)).ok()?;
        let mut buf = Vec::new();
        (&mut self.file).take(4 << 20).read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf);
        let mut lines = text.lines();
        if lines.next()?.trim() != "xref" {
            return None;
        }
        loop {
            let header = lines.next()?.trim();
            if header.starts_with("trailer") {
                return None;
            }
            let mut h = header.split_whitespace();
            let first: u32 = h.next()?.parse().ok()?;
            let count: u32 = h.next()?.parse().ok()?;
            if n >= first && n < first.saturating_add(count) {
                let entry = lines.nth((n - first) as usize)?;
                let mut e = entry.split_whitespace();
                let off: u64 = e.next()?.parse().ok()?;
                let _gen = e.next()?;
                return (e.next()? == "n").then_some(off);
            }
            for _ in 0..count {
                lines.next()?;
            }
        }
    }

    fn read_at(&mut self, off: u64, max: usize) -> Option<Vec<u8>> {
        self.file.seek(SeekFrom::Start(off)).ok()?;
        let mut buf = Vec::new();
        (&mut self.file)
            .take(max as u64)
            .read_to_end(&mut buf)
            .ok()?;
        Some(buf)
    }

    /// The value of object `n g`.
    fn object(&mut self, (n, g): (u32, u32)) -> Option<Obj> {
        let off = self.offset(n, g)?;
        let buf = self.read_at(off, MAX_OBJECT.min(64 * 1024))?;
        let at = find(&buf, b"obj")? + 3;
        let mut p = Parser {
            b: &buf[at..],
            i: 0,
        };
        p.value(0)
    }

    /// The catalog's `/Metadata` stream, inflated if needed, parsed as XMP.
    fn xmp(&mut self, warnings: &mut Vec<dogear_storage::JobIssue>) -> Option<Xmp> {
        let root = self.trailer_ref(b"/Root")?;
        let catalog = self.object(root)?;
        let Some(Obj::Ref(n, g)) = catalog.get("Metadata").cloned() else {
            return None;
        };
        let off = self.offset(n, g)?;
        let head = self.read_at(off, 64 * 1024)?;
        let at = find(&head, b"obj")? + 3;
        let mut p = Parser {
            b: &head[at..],
            i: 0,
        };
        let dict = p.value(0)?;
        let len = match dict.get("Length")? {
            Obj::Num(l) => *l as u64,
            Obj::Ref(a, b) => match self.object((*a, *b))? {
                Obj::Num(l) => l as u64,
                _ => return None,
            },
            _ => return None,
        };
        if len > MAX_XMP {
            return None;
        }
        let rest = &head[at + p.i..];
        let s = find(rest, b"stream")? + 6;
        let mut data_off = off + (at + p.i + s) as u64;
        let tail = &rest[s..];
        if tail.starts_with(b"\r\n") {
            data_off += 2;
        } else if tail.starts_with(b"\n") || tail.starts_with(b"\r") {
            data_off += 1;
        }
        let raw = self.read_at(data_off, len as usize)?;
        let flate = matches!(dict.get("Filter"), Some(Obj::Name(f)) if f == "FlateDecode")
            || matches!(dict.get("Filter"), Some(Obj::Array(a)) if a.first() == Some(&Obj::Name("FlateDecode".into())));
        let data = if flate {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&raw[..])
                .take(MAX_XMP)
                .read_to_end(&mut out)
                .ok()?;
            out
        } else {
            raw
        };
        let text = String::from_utf8_lossy(&data);
        let start = text.find("<x:xmpmeta").or_else(|| text.find("<rdf:RDF"))?;
        let end = text
            .rfind("</x:xmpmeta>")
            .map(|e| e + 12)
            .or_else(|| text.rfind("</rdf:RDF>").map(|e| e + 10))?;
        let parsed = xml::parse_full(text.get(start..end)?).ok()?;
        let declared = parsed.doctype.is_some()
            || text
                .get(..start)
                .is_some_and(|pre| pre.to_ascii_lowercase().contains("<!doctype"));
        if !parsed.unresolved.is_empty() && declared {
            warnings.push(dogear_storage::JobIssue {
                code: "dtd_ignored".into(),
                message: "XMP metadata was ignored: it refers to entities only a document type \
                          declaration could define, and Dogear never expands those"
                    .into(),
            });
            return None;
        }
        if declared {
            warnings.push(dogear_storage::JobIssue {
                code: "dtd_ignored".into(),
                message: "XMP metadata: its document type declaration was ignored (nothing in \
                          it was expanded or fetched)"
                    .into(),
            });
        }
        let doc = parsed.root;
        let list = |name: &str| -> Vec<String> {
            let mut found = Vec::new();
            doc.find_all(name, &mut found);
            let mut out = Vec::new();
            for f in found.iter().filter(|e| e.name.starts_with("dc:")) {
                let mut lis: Vec<&Element> = Vec::new();
                f.find_all("li", &mut lis);
                if lis.is_empty() {
                    out.push(f.text());
                } else {
                    out.extend(lis.iter().map(|l| l.text()));
                }
            }
            out.into_iter().filter(|s| !s.is_empty()).collect()
        };
        Some(Xmp {
            title: list("title").into_iter().next(),
            creators: list("creator"),
            languages: list("language"),
            subjects: list("subject"),
            description: list("description").into_iter().next(),
            publishers: list("publisher"),
        })
    }
}

/// Just enough of the PDF object syntax for dictionaries of metadata.
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c.is_ascii_whitespace() || c == 0 {
                self.i += 1;
            } else if c == b'%' {
                while let Some(&c) = self.b.get(self.i) {
                    if c == b'\n' || c == b'\r' {
                        break;
                    }
                    self.i += 1;
                }
            } else {
                break;
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<Obj> {
        if depth > 32 {
            return None;
        }
        self.skip_ws();
        let c = *self.b.get(self.i)?;
        match c {
            b'<' if self.b.get(self.i + 1) == Some(&b'<') => {
                self.i += 2;
                let mut d = Vec::new();
                loop {
                    self.skip_ws();
                    if self.b.get(self.i..self.i + 2)? == b">>" {
                        self.i += 2;
                        return Some(Obj::Dict(d));
                    }
                    let Obj::Name(k) = self.value(depth + 1)? else {
                        return None;
                    };
                    let v = self.value(depth + 1)?;
                    d.push((k, v));
                }
            }
            b'<' => {
                self.i += 1;
                let mut hex = Vec::new();
                while let Some(&c) = self.b.get(self.i) {
                    self.i += 1;
                    if c == b'>' {
                        break;
                    }
                    if c.is_ascii_hexdigit() {
                        hex.push(c);
                    }
                }
                if hex.len() % 2 == 1 {
                    hex.push(b'0');
                }
                let bytes = hex
                    .chunks(2)
                    .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
                    .collect();
                Some(Obj::Str(bytes))
            }
            b'(' => {
                self.i += 1;
                let mut out = Vec::new();
                let mut nest = 0;
                while let Some(&c) = self.b.get(self.i) {
                    self.i += 1;
                    match c {
                        b'\\' => {
                            let e = *self.b.get(self.i)?;
                            self.i += 1;
                            match e {
                                b'n' => out.push(b'\n'),
                                b'r' => out.push(b'\r'),
                                b't' => out.push(b'\t'),
                                b'b' => out.push(8),
                                b'f' => out.push(12),
                                b'\r' | b'\n' => {}
                                b'0'..=b'7' => {
                                    let mut v = (e - b'0') as u32;
                                    for _ in 0..2 {
                                        match self.b.get(self.i) {
                                            Some(&d @ b'0'..=b'7') => {
                                                v = v * 8 + (d - b'0') as u32;
                                                self.i += 1;
                                            }
                                            _ => break,
                                        }
                                    }
                                    out.push(v as u8);
                                }
                                other => out.push(other),
                            }
                        }
                        b'(' => {
                            nest += 1;
                            out.push(c);
                        }
                        b')' if nest == 0 => return Some(Obj::Str(out)),
                        b')' => {
                            nest -= 1;
                            out.push(c);
                        }
                        _ => out.push(c),
                    }
                    if out.len() > MAX_OBJECT {
                        return None;
                    }
                }
                None
            }
            b'/' => {
                self.i += 1;
                let start = self.i;
                while let Some(&c) = self.b.get(self.i) {
                    if c.is_ascii_whitespace() || b"/<>[]()%{}".contains(&c) {
                        break;
                    }
                    self.i += 1;
                }
                Some(Obj::Name(
                    String::from_utf8_lossy(&self.b[start..self.i]).into_owned(),
                ))
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                loop {
                    self.skip_ws();
                    if *self.b.get(self.i)? == b']' {
                        self.i += 1;
                        return Some(Obj::Array(a));
                    }
                    a.push(self.value(depth + 1)?);
                }
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                let start = self.i;
                while let Some(&c) = self.b.get(self.i) {
                    if c.is_ascii_digit() || b"-+.".contains(&c) {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                let n: f64 = std::str::from_utf8(&self.b[start..self.i])
                    .ok()?
                    .parse()
                    .ok()?;
                // `n g R` is a reference.
                let save = self.i;
                self.skip_ws();
                let gstart = self.i;
                while self.b.get(self.i).is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                if self.i > gstart {
                    let g: u32 = std::str::from_utf8(&self.b[gstart..self.i])
                        .ok()?
                        .parse()
                        .ok()?;
                    self.skip_ws();
                    if self.b.get(self.i) == Some(&b'R') {
                        self.i += 1;
                        return Some(Obj::Ref(n as u32, g));
                    }
                }
                self.i = save;
                Some(Obj::Num(n))
            }
            _ => {
                while let Some(&c) = self.b.get(self.i) {
                    if c.is_ascii_whitespace() || b"/<>[]()".contains(&c) {
                        break;
                    }
                    self.i += 1;
                }
                Some(Obj::Other)
            }
        }
    }
}

/// Renders page 1 to a JPEG with poppler's `pdftoppm` (at most 20 s, output on a pipe, so
/// nothing is written to disk). `None` when the tool is missing or fails.
pub fn render_first_page(path: &Path) -> Option<Vec<u8>> {
    render_page(path, 1, 1200)
}

/// Renders page `n` (1-based) to a JPEG whose longer side is `size` pixels, under the same
/// limits as the cover. `None` past the last page, or when the tool is missing or fails.
pub fn render_page(path: &Path, n: u32, size: u32) -> Option<Vec<u8>> {
    let (n, size) = (n.to_string(), size.clamp(100, 4000).to_string());
    let mut cmd = Command::new("pdftoppm");
    cmd.args([
        "-f",
        &n,
        "-l",
        &n,
        "-singlefile",
        "-jpeg",
        "-scale-to",
        &size,
    ])
    .arg(path);
    let out = run_limited(cmd, super::MAX_COVER_BYTES)?;
    out.starts_with(&[0xFF, 0xD8]).then_some(out)
}

/// The number of pages, from poppler's `pdfinfo`; `None` when the tool is missing or fails.
pub fn page_count(path: &Path) -> Option<u32> {
    let mut cmd = Command::new("pdfinfo");
    cmd.arg(path);
    let out = run_limited(cmd, 64 * 1024)?;
    String::from_utf8_lossy(&out)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
}

/// Runs a poppler tool on a file that may be hostile: at most 20 s of CPU and wall time,
/// [`RENDER_MAX_MEMORY`] of address space, `max_out` bytes of output read from a pipe.
/// The output, if the tool succeeded.
fn run_limited(mut cmd: Command, max_out: u64) -> Option<Vec<u8>> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // A hostile PDF may make the tool allocate without end or spin: cap the child's
    // address space and CPU time, whatever the file asks for.
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let mem = libc::rlimit {
                rlim_cur: RENDER_MAX_MEMORY,
                rlim_max: RENDER_MAX_MEMORY,
            };
            let cpu = libc::rlimit {
                rlim_cur: 20,
                rlim_max: 20,
            };
            libc::setrlimit(libc::RLIMIT_AS, &mem);
            libc::setrlimit(libc::RLIMIT_CPU, &cpu);
            Ok(())
        });
    }
    let mut child = cmd.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut stdout).take(max_out).read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = reader.join().ok()?;
    status?.success().then_some(out)
}
