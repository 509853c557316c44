//! Page counts of PDF and CBZ files, to give KOReader a page number for a position written
//! as a percentage elsewhere. Counting runs a tool or opens an archive, so answers are kept
//! by the file's content hash.

use dogear_storage::Format;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// The pages of the file at `path`, for the paged formats.
pub fn count(path: &Path, format: Format) -> Option<u32> {
    match format {
        Format::Pdf => crate::import::pdf::page_count(path),
        Format::Cbz => crate::import::cbz::page_count(path),
        Format::Epub | Format::Kepub => None,
    }
}

/// Page counts and spine indexes already found, by content hash (and percent).
#[derive(Default)]
pub struct Found(Mutex<HashMap<(String, u64), Option<u32>>>);

impl Found {
    pub fn get(&self, hash: &str, key: u64) -> Option<Option<u32>> {
        self.0.lock().ok()?.get(&(hash.to_string(), key)).copied()
    }

    pub fn put(&self, hash: &str, key: u64, v: Option<u32>) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= 4096 {
                m.clear();
            }
            m.insert((hash.to_string(), key), v);
        }
    }
}
