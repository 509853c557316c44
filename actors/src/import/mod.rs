//! Getting books in: reading files safely, extracting their metadata, producing KEPUBs and
//! covers, and the supervised pipelines that run it all from uploads, watched folders and
//! Calibre libraries. Extraction is synchronous and bounded; the pipeline runs it on
//! blocking threads.

pub mod archive;
pub mod calibre;
pub mod cbz;
pub mod cover;
pub mod cpu;
pub mod epub;
pub mod folder;
pub mod hash;
pub mod kepub;
pub mod names;
pub mod pdf;
pub mod pipeline;
pub mod source;
pub mod supervise;
pub mod watch;
pub mod xml;

use dogear_storage::{Format, JobIssue};
use std::collections::BTreeMap;
use std::path::Path;

/// Why a file was refused: a stable code and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ImportError {
    pub code: &'static str,
    pub message: String,
}

impl ImportError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ImportError {
        ImportError {
            code,
            message: message.into(),
        }
    }
    pub fn io(e: std::io::Error) -> ImportError {
        ImportError::new("io", format!("the file cannot be read ({})", e.kind()))
    }
    /// Worth trying again later (the disk, not the file, was the problem).
    pub fn retryable(&self) -> bool {
        self.code == "io" || self.code == "storage"
    }
    pub fn issue(&self) -> JobIssue {
        JobIssue {
            code: self.code.to_string(),
            message: self.message.clone(),
        }
    }
}

/// One person named on a book.
#[derive(Clone, Debug, PartialEq)]
pub struct Person {
    pub name: String,
    /// As the file gives it (`file-as`); `None` when it gives none.
    pub sort: Option<String>,
}

/// Everything read from a book file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extracted {
    pub format: Option<Format>,
    pub title: String,
    pub subtitle: Option<String>,
    pub title_sort: Option<String>,
    pub authors: Vec<Person>,
    pub series: Option<String>,
    pub series_index: Option<f64>,
    pub languages: Vec<String>,
    pub identifiers: BTreeMap<String, String>,
    pub publisher: Option<String>,
    pub published: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// EPUB 3 `rendition:layout` is `pre-paginated`.
    pub fixed_layout: bool,
    /// The cover image's bytes as stored in the file (not yet decoded).
    pub cover: Option<Vec<u8>>,
    /// Where the metadata came from (`opf`, `info`, `xmp`, `ComicInfo.xml`, `filename`).
    pub metadata_source: &'static str,
    pub warnings: Vec<JobIssue>,
}

impl Extracted {
    /// Removes control characters (a NUL in a title, escape sequences in an author) from
    /// everything read from the file, so no reader of the metadata meets them.
    fn scrub(&mut self) {
        use crate::books::without_controls as plain;
        let opt = |v: &mut Option<String>| {
            if let Some(s) = v.as_mut() {
                *s = plain(s, false);
            }
        };
        self.title = plain(&self.title, false);
        opt(&mut self.subtitle);
        opt(&mut self.title_sort);
        opt(&mut self.series);
        opt(&mut self.publisher);
        opt(&mut self.published);
        if let Some(d) = self.description.as_mut() {
            *d = plain(d, true);
        }
        for p in &mut self.authors {
            p.name = plain(&p.name, false);
            opt(&mut p.sort);
        }
        self.authors.retain(|p| !p.name.trim().is_empty());
        for t in self.tags.iter_mut().chain(self.languages.iter_mut()) {
            *t = plain(t, false);
        }
        self.tags.retain(|t| !t.trim().is_empty());
        self.languages.retain(|l| !l.trim().is_empty());
        for v in self.identifiers.values_mut() {
            *v = plain(v, false);
        }
        self.identifiers.retain(|_, v| !v.trim().is_empty());
    }
}

/// Most bytes of a cover image read from a book.
pub const MAX_COVER_BYTES: u64 = 32 << 20;
/// Most bytes of an XML document (OPF, container, ComicInfo) read from a book.
pub const MAX_XML_BYTES: u64 = 4 << 20;

/// What kind of file this is, by its first bytes (the name only breaks ties).
pub fn sniff(path: &Path, filename: &str) -> Result<Format, ImportError> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path).map_err(ImportError::io)?;
    let n = f.read(&mut head).map_err(ImportError::io)?;
    let ext = filename
        .rsplit('.')
        .next()
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    if n == 0 {
        return Err(ImportError::new(
            "empty_file",
            "the file is empty (0 bytes)",
        ));
    }
    let is_zip = head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06");
    let is_pdf = head.starts_with(b"%PDF-");
    match ext.as_str() {
        "pdf" if !is_pdf => Err(ImportError::new(
            "not_pdf",
            "the file is named .pdf but does not start with a PDF header",
        )),
        "pdf" => Ok(Format::Pdf),
        "cbz" => Ok(Format::Cbz),
        "epub" | "kepub" => Ok(Format::Epub),
        _ if is_pdf => Ok(Format::Pdf),
        _ if is_zip => Ok(Format::Epub),
        _ => Err(ImportError::new(
            "unsupported_format",
            format!("{filename:?} is not an EPUB, PDF or CBZ file"),
        )),
    }
}

/// Reads a book file's metadata. Never panics and never reads unbounded amounts.
pub fn extract(path: &Path, filename: &str) -> Result<Extracted, ImportError> {
    extract_keep(path, filename).map(|(x, _)| x)
}

/// An EPUB opened once, for the stages after extraction (the KEPUB) to reuse.
pub type Opened = (archive::Archive, epub::Package);

/// [`extract`], also handing back an EPUB's opened archive.
pub fn extract_keep(
    path: &Path,
    filename: &str,
) -> Result<(Extracted, Option<Opened>), ImportError> {
    let format = sniff(path, filename)?;
    let mut opened = None;
    let mut x = match format {
        Format::Epub | Format::Kepub => {
            let (mut ar, pkg) = epub::open(path)?;
            let x = epub::extract_from(&mut ar, &pkg);
            opened = Some((ar, pkg));
            x
        }
        Format::Pdf => pdf::extract(path)?,
        Format::Cbz => cbz::extract(path)?,
    };
    x.format = Some(format);
    x.scrub();
    if x.title.trim().is_empty() {
        let (title, authors) = names::from_filename(filename);
        x.title = title;
        if x.authors.is_empty() {
            x.authors = authors
                .into_iter()
                .map(|name| Person { name, sort: None })
                .collect();
        }
        x.metadata_source = "filename";
    }
    Ok((x, opened))
}
