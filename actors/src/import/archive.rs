//! A zip archive opened defensively. Every EPUB and CBZ goes through here first, so the
//! checks that keep hostile archives harmless live in one place: no entry may name a path
//! outside the archive, entries may not overlap (the trick behind non-recursive zip bombs),
//! the declared sizes must be plausible, and every read is capped whatever the headers say.

use super::ImportError;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use zip::ZipArchive;

/// Most entries an archive may have.
pub const MAX_ENTRIES: usize = 20_000;
/// Most bytes all entries may inflate to together, as declared.
pub const MAX_TOTAL: u64 = 1 << 30;
/// Most bytes one entry may inflate to.
pub const MAX_ENTRY: u64 = 256 << 20;
/// An entry this large that claims a higher compression ratio than this is a bomb.
const SUSPICIOUS_SIZE: u64 = 16 << 20;
const MAX_RATIO: u64 = 1000;

pub struct Entry {
    pub name: String,
    pub size: u64,
    pub is_dir: bool,
    /// Why this entry is not a regular file (a symbolic link, a device, ...): it is never
    /// read, copied or handed out.
    pub special: Option<&'static str>,
}

/// What an entry is, by the file type in its Unix mode (the external attributes of a zip
/// made on Unix) and its name: `None` for regular files and empty directories.
fn special_kind(mode: Option<u32>, name: &str, size: u64, csize: u64) -> Option<&'static str> {
    const S_IFMT: u32 = 0o170000;
    let kind = match mode.map(|m| m & S_IFMT) {
        None | Some(0) | Some(0o100000) => None,
        Some(0o040000) => (!name.ends_with('/')).then_some("a directory"),
        Some(0o120000) => Some("a symbolic link"),
        Some(0o020000) | Some(0o060000) => Some("a device file"),
        Some(0o010000) => Some("a FIFO"),
        Some(0o140000) => Some("a socket"),
        Some(_) => Some("not a regular file"),
    };
    kind.or_else(|| {
        (name.ends_with('/') && (size > 0 || csize > 0)).then_some("a directory holding data")
    })
}

pub struct Archive {
    zip: ZipArchive<BufReader<File>>,
    pub entries: Vec<Entry>,
}

impl Archive {
    pub fn open(path: &Path) -> Result<Archive, ImportError> {
        let file = File::open(path).map_err(ImportError::io)?;
        let mut zip = ZipArchive::new(BufReader::new(file)).map_err(|e| {
            ImportError::new(
                "corrupt_archive",
                format!("the file is not a readable zip archive ({e})"),
            )
        })?;
        if zip.len() > MAX_ENTRIES {
            return Err(ImportError::new(
                "zip_bomb",
                format!(
                    "the archive has {} entries; at most {MAX_ENTRIES} are accepted",
                    zip.len()
                ),
            ));
        }
        let mut entries = Vec::with_capacity(zip.len());
        let mut spans = Vec::with_capacity(zip.len());
        let mut total: u64 = 0;
        for i in 0..zip.len() {
            let f = zip.by_index_raw(i).map_err(|e| {
                ImportError::new(
                    "corrupt_archive",
                    format!("zip entry {i} is unreadable ({e})"),
                )
            })?;
            let name = f
                .name()
                .map_err(|_| {
                    ImportError::new(
                        "corrupt_archive",
                        format!("zip entry {i} has an undecodable name"),
                    )
                })?
                .to_string();
            if f.enclosed_name().is_none()
                || name.contains('\\')
                || name.split('/').any(|c| c == "..")
            {
                return Err(ImportError::new(
                    "unsafe_path",
                    format!("the archive has an entry with an unsafe path: {name:?}"),
                ));
            }
            let (size, csize) = (f.size(), f.compressed_size());
            if size > MAX_ENTRY || (size > SUSPICIOUS_SIZE && size / csize.max(1) > MAX_RATIO) {
                return Err(ImportError::new(
                    "zip_bomb",
                    format!("entry {name:?} claims to inflate to {size} bytes from {csize}"),
                ));
            }
            total = total.saturating_add(size);
            if let Some(start) = f.data_start() {
                spans.push((f.header_start(), start.saturating_add(csize), i));
            }
            let special = special_kind(f.unix_mode(), &name, size, csize);
            entries.push(Entry {
                is_dir: f.is_dir() && special.is_none(),
                name,
                size,
                special,
            });
        }
        if total > MAX_TOTAL {
            return Err(ImportError::new(
                "zip_bomb",
                format!(
                    "the archive would inflate to {total} bytes; at most {MAX_TOTAL} are accepted"
                ),
            ));
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(ImportError::new(
                    "zip_bomb",
                    "the archive's entries overlap (a zip bomb)".to_string(),
                ));
            }
        }
        Ok(Archive { zip, entries })
    }

    pub fn has(&self, name: &str) -> bool {
        self.zip.index_for_name(name).is_some()
    }

    /// `unsafe_path` if entry `idx` is not a regular file: nothing of it is ever read.
    fn regular(&self, idx: usize) -> Result<(), ImportError> {
        match self.entries.get(idx) {
            Some(Entry {
                name,
                special: Some(kind),
                ..
            }) => Err(ImportError::new(
                "unsafe_path",
                format!("entry {name:?} is {kind}, not a regular file"),
            )),
            _ => Ok(()),
        }
    }

    /// A warning naming the entries that are not regular files (left out of everything
    /// Dogear makes from the book), if there are any.
    pub fn dropped_warning(&self) -> Option<dogear_storage::JobIssue> {
        let dropped: Vec<String> = self
            .entries
            .iter()
            .filter_map(|e| e.special.map(|k| format!("{:?} ({k})", e.name)))
            .collect();
        if dropped.is_empty() {
            return None;
        }
        let shown = dropped
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = dropped.len().saturating_sub(5);
        Some(dogear_storage::JobIssue {
            code: "entry_dropped".into(),
            message: format!(
                "{} zip entr{} not a regular file and left out of everything made from the \
                 book: {shown}{}",
                dropped.len(),
                if dropped.len() == 1 {
                    "y is"
                } else {
                    "ies are"
                },
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        })
    }

    /// Reads one entry whole, refusing more than `max` inflated bytes.
    pub fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>, ImportError> {
        let idx = self.zip.index_for_name(name).ok_or_else(|| {
            ImportError::new(
                "missing_entry",
                format!("the archive has no entry {name:?}"),
            )
        })?;
        self.read_index(idx, max)
    }

    pub fn read_index(&mut self, idx: usize, max: u64) -> Result<Vec<u8>, ImportError> {
        let mut out = Vec::new();
        self.read_index_into(idx, max, &mut out)?;
        Ok(out)
    }

    /// Reads one entry into `out` (cleared first), so a caller reading many entries reuses
    /// one buffer.
    pub fn read_index_into(
        &mut self,
        idx: usize,
        max: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), ImportError> {
        out.clear();
        self.regular(idx)?;
        let f = self.zip.by_index(idx).map_err(|e| {
            ImportError::new(
                "corrupt_archive",
                format!("zip entry {idx} cannot be read ({e})"),
            )
        })?;
        let name = || {
            self.entries
                .get(idx)
                .map(|e| e.name.clone())
                .unwrap_or_default()
        };
        out.reserve(f.size().min(max) as usize);
        f.take(max + 1).read_to_end(out).map_err(|e| {
            ImportError::new(
                "corrupt_archive",
                format!("entry {:?} is corrupt ({e})", name()),
            )
        })?;
        if out.len() as u64 > max {
            return Err(ImportError::new(
                "too_large",
                format!("entry {:?} inflates to more than {max} bytes", name()),
            ));
        }
        Ok(())
    }

    /// Copies one entry's compressed bytes unchanged into `w` (for rewriting an archive).
    pub fn copy_raw<W: std::io::Write + std::io::Seek>(
        &mut self,
        idx: usize,
        w: &mut zip::ZipWriter<W>,
    ) -> Result<(), ImportError> {
        self.regular(idx)?;
        let f = self.zip.by_index_raw(idx).map_err(|e| {
            ImportError::new(
                "corrupt_archive",
                format!("zip entry {idx} cannot be read ({e})"),
            )
        })?;
        w.raw_copy_file(f)
            .map_err(|e| ImportError::new("io", format!("cannot write an archive ({e})")))
    }
}
