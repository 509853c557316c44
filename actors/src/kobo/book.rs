//! What a Kobo is given of one book: the file to download (KEPUB whenever one exists or can
//! be made), the cover key, and a fingerprint of everything the device shows, so a book is
//! announced again only when something the reader would see changed.

use dogear_storage::{Book, BookSource, Format};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KoboFormat {
    /// Served as `.kepub.epub`; Nickel's KEPUB renderer gives exact positions.
    Kepub,
    /// A plain EPUB (its KEPUB could not be made at import).
    Epub,
    /// A fixed-layout EPUB, sent as it is (`EPUB3FL`): one page per document already gives
    /// page-level positions, and a KEPUB of it displays badly.
    FixedLayout,
}

impl KoboFormat {
    pub fn path(self) -> &'static str {
        match self {
            KoboFormat::Kepub => "kepub",
            KoboFormat::Epub | KoboFormat::FixedLayout => "epub",
        }
    }
    pub fn parse(s: &str) -> Option<KoboFormat> {
        match s {
            "kepub" => Some(KoboFormat::Kepub),
            "epub" => Some(KoboFormat::Epub),
            _ => None,
        }
    }
    pub fn format(self) -> Format {
        match self {
            KoboFormat::Kepub => Format::Kepub,
            KoboFormat::Epub | KoboFormat::FixedLayout => Format::Epub,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct KoboBook {
    pub book: Book,
    pub format: KoboFormat,
    /// Bytes of the file served; the EPUB's while a KEPUB has not been made yet.
    pub size: u64,
    /// `<book id>-<cover etag>`: a new cover gets a new id, so the device fetches it.
    pub cover_image_id: Option<String>,
}

impl KoboBook {
    /// `None` for books a Kobo cannot be given: deleted, or with no EPUB (PDF and CBZ do
    /// not sync through the store protocol).
    pub fn of(book: &Book) -> Option<KoboBook> {
        if book.deleted_at.is_some() {
            return None;
        }
        let kepub = book.meta.format(Format::Kepub);
        let epub = book.meta.format(Format::Epub);
        // Calibre books get their KEPUB on first download; uploaded and folder books got
        // theirs at import, so one without a KEPUB is one the converter refused.
        let (format, size) = match (kepub, epub) {
            (_, Some(e)) if book.meta.fixed_layout => (KoboFormat::FixedLayout, e.size),
            (Some(k), _) => (KoboFormat::Kepub, k.size),
            (None, Some(e)) if book.meta.source() == BookSource::Calibre => {
                (KoboFormat::Kepub, e.size)
            }
            (None, Some(e)) => (KoboFormat::Epub, e.size),
            (None, None) => return None,
        };
        let cover_image_id = book.meta.cover.as_ref().map(|c| {
            let tag: String = c
                .etag
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect();
            format!("{}-{tag}", book.id)
        });
        Some(KoboBook {
            book: book.clone(),
            format,
            size,
            cover_image_id,
        })
    }

    /// A hash of what the device shows of this book. The size is left out on purpose: it
    /// changes when a Calibre book's KEPUB is first made, and announcing a book the device
    /// holds again makes it drop its downloaded copy.
    pub fn fingerprint(&self) -> String {
        let b = &self.book;
        let m = &b.meta;
        let shown = serde_json::json!([
            b.title,
            m.subtitle,
            b.authors,
            m.description,
            m.series,
            m.series_index,
            m.publisher,
            m.published,
            b.language,
            self.isbn(),
            self.cover_image_id,
            self.format,
        ]);
        format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(shown.to_string().as_bytes())
        )
    }

    pub fn isbn(&self) -> Option<&str> {
        self.book.identifiers.get("isbn").map(String::as_str)
    }

    /// The id in a cover URL back to the book id (the suffix only busts the device's cache).
    pub fn book_id_of_image(image_id: &str) -> Option<dogear_storage::BookId> {
        image_id.get(..36)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dogear_storage::{BookFile, BookId, BookMeta, FileLocation, LibraryId, Timestamp};

    fn book(formats: &[Format], source: BookSource) -> Book {
        let file = |format: Format| BookFile {
            format,
            size: 100 + format as u64,
            hash: "h".into(),
            location: FileLocation::Object { key: "k".into() },
            koreader: None,
        };
        Book {
            id: BookId::generate(),
            library_id: LibraryId::generate(),
            title: "T".into(),
            authors: vec!["A".into()],
            language: None,
            identifiers: Default::default(),
            added_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            deleted_at: None,
            version: 1,
            meta: BookMeta {
                formats: formats.iter().map(|f| file(*f)).collect(),
                source: Some(source),
                ..Default::default()
            },
        }
    }

    #[test]
    fn kepub_whenever_one_exists_or_can_be_made() {
        let kb = KoboBook::of(&book(&[Format::Epub, Format::Kepub], BookSource::Upload)).unwrap();
        assert_eq!(
            (kb.format, kb.size),
            (KoboFormat::Kepub, 100 + Format::Kepub as u64)
        );
        let cal = KoboBook::of(&book(&[Format::Epub], BookSource::Calibre)).unwrap();
        assert_eq!(cal.format, KoboFormat::Kepub, "made on first download");
        let refused = KoboBook::of(&book(&[Format::Epub], BookSource::Upload)).unwrap();
        assert_eq!(
            refused.format,
            KoboFormat::Epub,
            "the converter refused it at import"
        );
        assert!(KoboBook::of(&book(&[Format::Pdf, Format::Cbz], BookSource::Upload)).is_none());
        let mut gone = book(&[Format::Epub], BookSource::Upload);
        gone.deleted_at = Some(Timestamp::now());
        assert!(KoboBook::of(&gone).is_none());
    }

    #[test]
    fn the_fingerprint_follows_what_the_device_shows_not_the_size() {
        let b = book(&[Format::Epub], BookSource::Calibre);
        let before = KoboBook::of(&b).unwrap().fingerprint();
        let mut with_kepub = b.clone();
        with_kepub.meta.formats.push(BookFile {
            format: Format::Kepub,
            size: 999,
            hash: "k".into(),
            location: FileLocation::Object { key: "k".into() },
            koreader: None,
        });
        assert_eq!(KoboBook::of(&with_kepub).unwrap().fingerprint(), before);
        let mut renamed = b.clone();
        renamed.title = "U".into();
        assert_ne!(KoboBook::of(&renamed).unwrap().fingerprint(), before);
    }
}
