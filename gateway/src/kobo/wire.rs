//! Kobo's JSON shapes, field for field as the store (and the servers devices are known to
//! accept) send them: entitlements, metadata, reading states, tags, the sync token.

use super::state::reading_state;
use base64::Engine;
use dogear_actors::kobo::state::kobo_time;
use dogear_actors::kobo::{KoboBook, KoboFormat, KoboItem};
use dogear_storage::{BookId, DeviceId, Shelf, ShelfId, Timestamp};
use serde_json::{Value, json};

/// Kobo's placeholder category, as every known server sends it.
const CATEGORY: &str = "00000000-0000-0000-0000-000000000001";

/// `<base>/kobo/<token>`: the prefix of every URL handed to this device.
pub struct Urls {
    pub base: String,
    pub token: String,
}

impl Urls {
    pub fn prefix(&self) -> String {
        format!("{}/kobo/{}", self.base, self.token)
    }
    pub fn download(&self, book: BookId, f: KoboFormat) -> String {
        format!("{}/download/{book}/{}", self.prefix(), f.path())
    }
}

/// ISO 639-1 when the book names its language in 639-2 (Kobo shows two letters).
pub fn language(lang: Option<&str>) -> String {
    let l = lang.unwrap_or("en").trim().to_ascii_lowercase();
    let primary = l.split(['-', '_']).next().unwrap_or("en");
    let two = match primary {
        "eng" => "en",
        "fre" | "fra" => "fr",
        "ger" | "deu" => "de",
        "spa" => "es",
        "ita" => "it",
        "por" => "pt",
        "dut" | "nld" => "nl",
        "rus" => "ru",
        "jpn" => "ja",
        "chi" | "zho" => "zh",
        "pol" => "pl",
        "swe" => "sv",
        "dan" => "da",
        "nor" | "nob" => "no",
        "fin" => "fi",
        "tur" => "tr",
        "gre" | "ell" => "el",
        "lat" => "la",
        p if p.len() == 2 => p,
        _ => "en",
    };
    two.to_string()
}

/// A book's publication date as a Kobo timestamp, from `YYYY`, `YYYY-MM` or `YYYY-MM-DD...`.
fn publication_date(published: Option<&str>) -> Option<String> {
    let p = published?.trim();
    let date = p.get(..10).unwrap_or(p);
    let mut parts = date.split('-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let d: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(format!("{y:04}-{m:02}-{d:02}T00:00:00Z"))
}

pub fn metadata(kb: &KoboBook, urls: &Urls) -> Value {
    let b = &kb.book;
    let m = &b.meta;
    let id = b.id.to_string();
    let downloads = match kb.format {
        KoboFormat::Kepub => vec![json!({
            "Format": "KEPUB", "Size": kb.size, "Url": urls.download(b.id, KoboFormat::Kepub),
            "Platform": "Generic", "DrmType": "None",
        })],
        KoboFormat::FixedLayout => vec![json!({
            "Format": "EPUB3FL", "Size": kb.size, "Url": urls.download(b.id, KoboFormat::FixedLayout),
            "Platform": "Generic", "DrmType": "None",
        })],
        // Old firmware looks for `EPUB`, newer for `EPUB3`: the same file under both.
        KoboFormat::Epub => ["EPUB3", "EPUB"]
            .iter()
            .map(|f| {
                json!({
                    "Format": f, "Size": kb.size, "Url": urls.download(b.id, KoboFormat::Epub),
                    "Platform": "Generic", "DrmType": "None",
                })
            })
            .collect(),
    };
    let mut v = json!({
        "Categories": [CATEGORY],
        "CoverImageId": kb.cover_image_id.clone().unwrap_or_else(|| id.clone()),
        "CrossRevisionId": id,
        "CurrentDisplayPrice": {"CurrencyCode": "USD", "TotalAmount": 0},
        "CurrentLoveDisplayPrice": {"TotalAmount": 0},
        // An empty description would not replace an old one on the device.
        "Description": m.description.clone().filter(|d| !d.trim().is_empty()).unwrap_or_else(|| " ".into()),
        "DownloadUrls": downloads,
        "EntitlementId": id,
        "ExternalIds": [],
        "Genre": CATEGORY,
        "IsEligibleForKoboLove": false,
        "IsInternetArchive": false,
        "IsPreOrder": false,
        "IsSocialEnabled": true,
        "Language": language(b.language.as_deref()),
        "PhoneticPronunciations": {},
        "Publisher": {"Imprint": "", "Name": m.publisher},
        "RevisionId": id,
        "Title": b.title,
        "WorkId": id,
        "ContributorRoles": b.authors.iter().map(|a| json!({"Name": a})).collect::<Vec<_>>(),
        "Contributors": b.authors,
    });
    if let Some(p) = publication_date(m.published.as_deref()) {
        v["PublicationDate"] = json!(p);
    }
    if let Some(s) = &m.subtitle {
        v["SubTitle"] = json!(s);
    }
    if let Some(isbn) = kb.isbn() {
        v["Isbn"] = json!(isbn);
    }
    if let Some(series) = &m.series {
        let n = m.series_index.unwrap_or(1.0);
        let digest = xxhash_rust::xxh3::xxh3_128(series.to_lowercase().as_bytes());
        v["Series"] = json!({
            "Name": series,
            "Number": if n.fract() == 0.0 { json!(n as i64) } else { json!(n) },
            "NumberFloat": n,
            "Id": uuid::Uuid::from_u128(digest).to_string(),
        });
    }
    v
}

fn entitlement(id: BookId, added: Timestamp, modified: Timestamp, removed: bool) -> Value {
    json!({
        "Accessibility": "Full",
        // Stable: a "now" here makes an unchanged book look new on every replay.
        "ActivePeriod": {"From": kobo_time(added)},
        "Created": kobo_time(added),
        "CrossRevisionId": id.to_string(),
        "Id": id.to_string(),
        "IsRemoved": removed,
        // A book gone from the server cannot come back from the device's archive either.
        "IsHiddenFromArchive": removed,
        "IsLocked": false,
        "LastModified": kobo_time(modified),
        "OriginCategory": "Imported",
        "RevisionId": id.to_string(),
        "Status": "Active",
    })
}

fn stub_metadata(id: BookId) -> Value {
    let id = id.to_string();
    json!({
        "Categories": [CATEGORY], "CoverImageId": id, "CrossRevisionId": id,
        "CurrentDisplayPrice": {"CurrencyCode": "USD", "TotalAmount": 0},
        "CurrentLoveDisplayPrice": {"TotalAmount": 0}, "Description": " ", "DownloadUrls": [],
        "EntitlementId": id, "ExternalIds": [], "Genre": CATEGORY, "IsEligibleForKoboLove": false,
        "IsInternetArchive": false, "IsPreOrder": false, "IsSocialEnabled": true, "Language": "en",
        "PhoneticPronunciations": {}, "Publisher": {"Imprint": "", "Name": null}, "RevisionId": id,
        "Title": id, "WorkId": id, "ContributorRoles": [], "Contributors": [],
    })
}

fn tag(shelf: &Shelf) -> Value {
    json!({
        "Created": kobo_time(shelf.created_at),
        "Id": shelf.id.to_string(),
        "Items": shelf.books.iter().map(|b| json!({
            "RevisionId": b.to_string(), "Type": "ProductRevisionTagItem",
        })).collect::<Vec<_>>(),
        "LastModified": kobo_time(shelf.updated_at),
        "Name": shelf.name,
        "Type": "UserTag",
    })
}

fn deleted_tag(id: ShelfId, at: Timestamp) -> Value {
    json!({"Tag": {"Id": id.to_string(), "LastModified": kobo_time(at)}})
}

/// The entries of one sync page, in order.
pub fn items(items: &[KoboItem], urls: &Urls) -> Vec<Value> {
    let mut out = Vec::with_capacity(items.len() + 4);
    for item in items {
        match item {
            KoboItem::NewEntitlement {
                book,
                state,
                metadata_changed,
            } => {
                let b = &book.book;
                let meta = metadata(book, urls);
                out.push(json!({"NewEntitlement": {
                    "BookEntitlement": entitlement(b.id, b.added_at, b.updated_at, false),
                    "BookMetadata": meta.clone(),
                    "ReadingState": reading_state(state),
                }}));
                if *metadata_changed {
                    out.push(json!({ "ChangedProductMetadata": meta }));
                }
            }
            KoboItem::Removed { book, added, at } => {
                out.push(json!({"ChangedEntitlement": {
                    "BookEntitlement": entitlement(*book, *added, *at, true),
                    "BookMetadata": stub_metadata(*book),
                }}));
            }
            KoboItem::ChangedReadingState(s) => {
                out.push(json!({"ChangedReadingState": {"ReadingState": reading_state(s)}}));
            }
            KoboItem::Tag { shelf, new } => {
                let key = if *new { "NewTag" } else { "ChangedTag" };
                out.push(json!({ key: {"Tag": tag(shelf)} }));
            }
            KoboItem::DeletedTag { id, at } => {
                out.push(json!({ "DeletedTag": deleted_tag(*id, *at) }));
            }
        }
    }
    out
}

/// `dg1:` and base64url of `{"d": device, "g": generation}`: small, no `.` (so it is never
/// taken for a Kobo store token), and naming the device, so another device's or a restored
/// backup's token is recognised as not this device's.
pub fn sync_token(device: DeviceId, generation: u64) -> String {
    let body = json!({"d": device.0.simple().to_string(), "g": generation});
    format!(
        "dg1:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string())
    )
}

/// Whether a token the device sent is one this server gave this device.
pub fn is_own_token(token: Option<&str>, device: DeviceId) -> bool {
    let Some(b64) = token.and_then(|t| t.trim().strip_prefix("dg1:")) else {
        return false;
    };
    let Ok(raw) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim_end_matches('='))
    else {
        return false;
    };
    serde_json::from_slice::<Value>(&raw)
        .ok()
        .and_then(|v| v["d"].as_str().map(|d| d == device.0.simple().to_string()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_belong_to_one_device() {
        let (a, b) = (DeviceId::generate(), DeviceId::generate());
        let t = sync_token(a, 3);
        assert!(t.len() < 120 && !t.contains('.'));
        assert!(is_own_token(Some(&t), a));
        assert!(!is_own_token(Some(&t), b));
        assert!(!is_own_token(None, a));
        assert!(!is_own_token(Some("eyJ0eXAiOjF9.eyJJbnRlcm5hbCI6MX0"), a));
        assert!(!is_own_token(Some("dg1:!!!"), a));
    }

    #[test]
    fn languages_and_dates() {
        assert_eq!(language(Some("eng")), "en");
        assert_eq!(language(Some("fr-CA")), "fr");
        assert_eq!(language(None), "en");
        assert_eq!(
            publication_date(Some("2019")).unwrap(),
            "2019-01-01T00:00:00Z"
        );
        assert_eq!(
            publication_date(Some("1623-11-15T00:00:00+00:00")).unwrap(),
            "1623-11-15T00:00:00Z"
        );
        assert_eq!(publication_date(Some("someday")), None);
    }
}
