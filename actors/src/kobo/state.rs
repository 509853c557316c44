//! A Kobo's reading state and Dogear's one progress.
//!
//! A Kobo `PUT .../state` becomes the same [`ProgressWrite`] the REST API makes: the whole-book
//! `ProgressPercent` is `percent`, and everything else the device sent (its span, the
//! document it is in, its statistics and its own timestamp strings) travels in the locator
//! as a small JSON object, so that the device gets back exactly what it wrote (the
//! "Sync to last page read?" prompt appears whenever the timestamps it sees differ) and
//! another Kobo can jump to the same span of the same KEPUB. A `ReadyToRead` status after
//! the book was started is the reader resetting it on the device: a rewind to 0 %.

use crate::error::AppError;
use crate::progress::ProgressWrite;
use dogear_storage::{
    BookId, DeviceId, EventId, Locator, Percent, ProgressState, ReadStatus, Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::Number;

/// One entry of `ReadingStates` in a `PUT`, as the device sends it: every part optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KoboStateIn {
    pub last_modified: Option<String>,
    pub priority_timestamp: Option<String>,
    pub current_bookmark: Option<BookmarkIn>,
    pub statistics: Option<StatisticsIn>,
    pub status_info: Option<StatusInfoIn>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BookmarkIn {
    pub last_modified: Option<String>,
    pub progress_percent: Option<Number>,
    pub content_source_progress_percent: Option<Number>,
    pub location: Option<LocationIn>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocationIn {
    pub value: Option<String>,
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    pub source: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatisticsIn {
    pub last_modified: Option<String>,
    pub spent_reading_minutes: Option<i64>,
    pub remaining_time_minutes: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusInfoIn {
    pub last_modified: Option<String>,
    pub status: Option<String>,
    pub times_started_reading: Option<i64>,
    pub last_time_started_reading: Option<String>,
    pub last_time_finished: Option<String>,
}

/// What a Kobo wrote beyond the percentage, kept in the progress locator as
/// `{"kobo": {...}}`. Timestamps are the device's own strings, numbers as it sent them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KoboMark {
    /// The state's `LastModified` (also its `PriorityTimestamp`).
    pub lm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bm_lm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pct: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csp: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub st_lm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub si_lm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ltsr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ltf: Option<String>,
}

const KOBO_SPAN: &str = "KoboSpan";

#[derive(Serialize, Deserialize)]
struct MarkLocator {
    kobo: KoboMark,
}

impl KoboMark {
    pub fn from_locator(l: Option<&Locator>) -> Option<KoboMark> {
        let l = l?.as_str();
        if !l.starts_with("{\"kobo\"") {
            return None;
        }
        serde_json::from_str::<MarkLocator>(l).ok().map(|m| m.kobo)
    }

    /// Each part's time spelled out (a compact mark leaves out those equal to `lm`).
    fn expanded(mut self) -> KoboMark {
        for part in [&mut self.bm_lm, &mut self.st_lm, &mut self.si_lm] {
            if part.is_none() && !self.lm.is_empty() {
                *part = Some(self.lm.clone());
            }
        }
        if self.kind.is_none() && self.value.is_some() {
            self.kind = Some(KOBO_SPAN.into());
        }
        self
    }

    /// Leaves out what can be inferred: the locator is stored three times per write, so
    /// its bytes are the cost of a Kobo write.
    fn compact(mut self) -> KoboMark {
        let lm = self.lm.clone();
        for part in [&mut self.bm_lm, &mut self.st_lm, &mut self.si_lm] {
            if part.as_deref() == Some(lm.as_str()) {
                *part = None;
            }
        }
        if self.kind.as_deref() == Some(KOBO_SPAN) {
            self.kind = None;
        }
        self
    }

    fn to_locator(&self) -> Option<Locator> {
        let s = serde_json::to_string(&MarkLocator { kobo: self.clone() }).ok()?;
        Locator::new(s)
    }
}

/// Timestamps as Kobo's own store writes them: UTC, whole seconds, `Z`.
pub fn kobo_time(t: Timestamp) -> String {
    let s = t.to_string();
    // `YYYY-MM-DDTHH:MM:SS.mmmZ` -> drop the fraction.
    match s.split_once('.') {
        Some((whole, _)) => format!("{whole}Z"),
        None => s,
    }
}

/// Lenient: whole seconds, any fraction, `Z` or an offset, or no zone at all (taken as UTC).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    Timestamp::parse(s).or_else(|| Timestamp::parse(&format!("{s}Z")))
}

fn newer(incoming: Option<&String>, stored: Option<&String>) -> bool {
    match (
        incoming.and_then(|s| parse_time(s)),
        stored.and_then(|s| parse_time(s)),
    ) {
        (Some(a), Some(b)) => a >= b,
        (None, Some(_)) => false,
        _ => true,
    }
}

fn number_f64(n: &Number, field: &str) -> Result<f64, AppError> {
    let v = n
        .as_f64()
        .ok_or_else(|| AppError::bad(field, "must be a number"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(AppError::bad(field, "must be between 0 and 100"));
    }
    Ok(v)
}

/// The write a Kobo `PUT` stands for, merged per part onto what is stored: each part
/// (`CurrentBookmark`, `Statistics`, `StatusInfo`) replaces the stored one only if its own
/// `LastModified` is not older, so a stale replay cannot undo newer data.
pub fn to_write(
    input: &KoboStateIn,
    book: BookId,
    device: DeviceId,
    current: Option<&ProgressState>,
    now: Timestamp,
) -> Result<ProgressWrite, AppError> {
    let stored = current.and_then(|s| KoboMark::from_locator(s.locator.as_ref()));
    let mut mark = stored.map(KoboMark::expanded).unwrap_or_default();
    let top = input
        .last_modified
        .clone()
        .or_else(|| input.priority_timestamp.clone());
    let mut stamps: Vec<&String> = top.iter().collect();
    let mut percent: Option<f64> = None;
    if let Some(bm) = &input.current_bookmark
        && newer(bm.last_modified.as_ref(), mark.bm_lm.as_ref())
    {
        if let Some(p) = &bm.progress_percent {
            percent = Some(number_f64(
                p,
                "ReadingStates[0].CurrentBookmark.ProgressPercent",
            )?);
        }
        if let Some(p) = &bm.content_source_progress_percent {
            number_f64(
                p,
                "ReadingStates[0].CurrentBookmark.ContentSourceProgressPercent",
            )?;
        }
        mark.bm_lm = bm.last_modified.clone();
        mark.pct = bm.progress_percent.clone();
        mark.csp = bm.content_source_progress_percent.clone();
        let loc = bm.location.clone().unwrap_or_default();
        mark.value = loc.value;
        mark.kind = loc.kind;
        mark.source = loc.source;
        stamps.extend(bm.last_modified.iter());
    }
    if let Some(st) = &input.statistics
        && newer(st.last_modified.as_ref(), mark.st_lm.as_ref())
    {
        mark.st_lm = st.last_modified.clone();
        mark.spent = st.spent_reading_minutes;
        mark.remaining = st.remaining_time_minutes;
        stamps.extend(st.last_modified.iter());
    }
    let mut explicit_status = None;
    let was_reading = mark.status.as_deref() == Some("Reading");
    if let Some(si) = &input.status_info
        && newer(si.last_modified.as_ref(), mark.si_lm.as_ref())
    {
        if si.status.as_deref() == Some("Reading")
            && !was_reading
            && si.times_started_reading.is_none()
        {
            // Started (again): the store counts it even when the device does not.
            mark.times = Some(mark.times.unwrap_or(0) + 1);
            mark.ltsr = si.last_modified.clone().or_else(|| top.clone());
        }
        if let Some(s) = &si.status {
            explicit_status = Some(match s.as_str() {
                "ReadyToRead" => ReadStatus::Unread,
                "Reading" => ReadStatus::Reading,
                "Finished" => ReadStatus::Finished,
                _ => {
                    return Err(AppError::bad(
                        "ReadingStates[0].StatusInfo.Status",
                        "must be ReadyToRead, Reading or Finished",
                    ));
                }
            });
            mark.status = Some(s.clone());
        }
        mark.si_lm = si.last_modified.clone();
        if si.times_started_reading.is_some() {
            mark.times = si.times_started_reading;
        }
        if si.last_time_started_reading.is_some() {
            mark.ltsr = si.last_time_started_reading.clone();
        }
        if si.last_time_finished.is_some() {
            mark.ltf = si.last_time_finished.clone();
        }
        stamps.extend(si.last_modified.iter());
    }
    // The device's own time for this state: its top-level LastModified, else the newest part.
    let lm = top.clone().or_else(|| {
        stamps
            .iter()
            .filter_map(|s| parse_time(s).map(|t| (t, (*s).clone())))
            .max_by_key(|(t, _)| *t)
            .map(|(_, s)| s)
    });
    mark.lm = lm.clone().unwrap_or_else(|| kobo_time(now));
    let client_ts = parse_time(&mark.lm).unwrap_or(now);
    let started = current.is_some_and(|s| s.status != ReadStatus::Unread || s.percent.get() > 0.0);
    let (percent, status, rewind) = match explicit_status {
        Some(ReadStatus::Unread) if started => {
            // The reader reset the book on the device (Biblioteca's reading; Kobo sends
            // `ReadyToRead` only then): back to the start, on purpose.
            mark.pct = Some(Number::from(0));
            mark.csp = None;
            mark.value = None;
            mark.kind = None;
            mark.source = None;
            (0.0, ReadStatus::Unread, true)
        }
        Some(ReadStatus::Finished) => {
            // A finished Kobo reports its first document as the location: ignore it.
            (100.0, ReadStatus::Finished, false)
        }
        s => {
            let p = percent
                .or_else(|| current.map(|c| c.percent.get()))
                .unwrap_or(0.0);
            let status = s.unwrap_or(if p > 0.0 {
                ReadStatus::Reading
            } else {
                current.map_or(ReadStatus::Unread, |c| c.status)
            });
            (p, status, false)
        }
    };
    if status == ReadStatus::Reading && mark.ltsr.is_none() {
        mark.ltsr = mark.si_lm.clone().or_else(|| Some(mark.lm.clone()));
    }
    let percent =
        Percent::new(percent).ok_or_else(|| AppError::bad("ReadingStates[0]", "bad percent"))?;
    let mut mark = mark.compact();
    let mut locator = mark.to_locator();
    if locator.is_none() {
        // Only an absurdly long document path gets here: keep the position, drop the extras.
        mark.source = None;
        mark.ltsr = None;
        mark.ltf = None;
        locator = mark.to_locator();
    }
    let mut w = ProgressWrite {
        event_id: EventId(uuid::Uuid::nil()),
        book_id: book,
        device_id: device,
        percent,
        locator,
        status: Some(status),
        client_ts,
        rewind,
    };
    // The same state sent twice (two PUTs racing on wake-up) is the same event.
    let digest = crate::auth::sha256_hex(&format!("kobo|{}", w.fingerprint()));
    let bytes: [u8; 16] = std::array::from_fn(|i| {
        u8::from_str_radix(digest.get(i * 2..i * 2 + 2).unwrap_or("00"), 16).unwrap_or(0)
    });
    w.event_id = EventId(uuid::Builder::from_random_bytes(bytes).into_uuid());
    Ok(w)
}

/// `ReadingState` as the device gets it (sync items, `GET .../state`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReadingStateOut {
    /// A position from elsewhere, to be placed on a span of the device's KEPUB before it
    /// goes out (see [`super::position`]); not part of the wire shape.
    #[serde(skip)]
    pub locate_at: Option<f64>,
    pub entitlement_id: String,
    pub created: String,
    pub last_modified: String,
    pub priority_timestamp: String,
    pub status_info: StatusInfoOut,
    pub statistics: StatisticsOut,
    pub current_bookmark: BookmarkOut,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusInfoOut {
    pub last_modified: String,
    pub status: &'static str,
    pub times_started_reading: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time_started_reading: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time_finished: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatisticsOut {
    pub last_modified: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spent_reading_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_time_minutes: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BookmarkOut {
    pub last_modified: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_percent: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_source_progress_percent: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationOut>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocationOut {
    pub value: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
}

impl ReadingStateOut {
    /// Places the bookmark on a span found for [`Self::locate_at`].
    pub fn place(&mut self, at: &super::position::Located) {
        self.current_bookmark.location = Some(LocationOut {
            value: at.span.clone(),
            kind: KOBO_SPAN.into(),
            source: at.source.clone(),
        });
        self.current_bookmark.content_source_progress_percent = number(at.document_percent);
        self.locate_at = None;
    }
}

/// A whole number as an integer (`33`, not `33.0`: the device compares them as text).
fn number(v: f64) -> Option<Number> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        Some(Number::from(v as i64))
    } else {
        Number::from_f64(v)
    }
}

/// The state of `book` for `device`. Written by this device: echoed exactly as it sent it.
/// Written anywhere else: stamped with the server's time of the change, later than anything
/// the device has, so it offers to jump there.
pub fn reading_state(
    book: BookId,
    added: Timestamp,
    state: Option<&ProgressState>,
    device: DeviceId,
) -> ReadingStateOut {
    let created = kobo_time(added);
    let Some(s) = state else {
        return ReadingStateOut {
            locate_at: None,
            entitlement_id: book.to_string(),
            created: created.clone(),
            last_modified: created.clone(),
            priority_timestamp: created.clone(),
            status_info: StatusInfoOut {
                last_modified: created.clone(),
                status: "ReadyToRead",
                times_started_reading: 0,
                last_time_started_reading: None,
                last_time_finished: None,
            },
            statistics: StatisticsOut {
                last_modified: created.clone(),
                spent_reading_minutes: None,
                remaining_time_minutes: None,
            },
            current_bookmark: BookmarkOut {
                last_modified: created,
                progress_percent: None,
                content_source_progress_percent: None,
                location: None,
            },
        };
    };
    let mark = KoboMark::from_locator(s.locator.as_ref()).map(KoboMark::expanded);
    let own = s.device_id == device && mark.is_some();
    let status = match s.status {
        ReadStatus::Unread => "ReadyToRead",
        ReadStatus::Reading => "Reading",
        ReadStatus::Finished => "Finished",
    };
    let times = mark
        .as_ref()
        .and_then(|m| m.times)
        .unwrap_or(if s.status == ReadStatus::Unread { 0 } else { 1 });
    let location = mark.as_ref().and_then(|m| {
        Some(LocationOut {
            value: m.value.clone()?,
            kind: m.kind.clone().unwrap_or_else(|| KOBO_SPAN.into()),
            source: m.source.clone()?,
        })
    });
    let bookmark_pct = if s.status == ReadStatus::Unread && s.percent.get() == 0.0 && !own {
        None
    } else {
        number(s.percent.get())
    };
    if let (true, Some(m)) = (own, mark.as_ref()) {
        let at = |part: &Option<String>| part.clone().unwrap_or_else(|| m.lm.clone());
        return ReadingStateOut {
            locate_at: None,
            entitlement_id: book.to_string(),
            created,
            last_modified: m.lm.clone(),
            priority_timestamp: m.lm.clone(),
            status_info: StatusInfoOut {
                last_modified: at(&m.si_lm),
                status,
                times_started_reading: times,
                last_time_started_reading: m.ltsr.clone(),
                last_time_finished: m.ltf.clone(),
            },
            statistics: StatisticsOut {
                last_modified: at(&m.st_lm),
                spent_reading_minutes: m.spent,
                remaining_time_minutes: m.remaining,
            },
            current_bookmark: BookmarkOut {
                last_modified: at(&m.bm_lm),
                progress_percent: m.pct.clone().or(bookmark_pct),
                content_source_progress_percent: m.csp.clone(),
                location,
            },
        };
    }
    let at = kobo_time(s.updated_at);
    let p = s.percent.get();
    let locate_at = (location.is_none() && s.status == ReadStatus::Reading && p > 0.0 && p < 100.0)
        .then_some(p);
    ReadingStateOut {
        locate_at,
        entitlement_id: book.to_string(),
        created,
        last_modified: at.clone(),
        priority_timestamp: at.clone(),
        status_info: StatusInfoOut {
            last_modified: at.clone(),
            status,
            times_started_reading: times,
            last_time_started_reading: mark
                .as_ref()
                .and_then(|m| m.ltsr.clone())
                .or_else(|| (s.status != ReadStatus::Unread).then(|| at.clone())),
            last_time_finished: None,
        },
        statistics: StatisticsOut {
            last_modified: at.clone(),
            spent_reading_minutes: mark.as_ref().and_then(|m| m.spent),
            remaining_time_minutes: None,
        },
        current_bookmark: BookmarkOut {
            last_modified: at,
            progress_percent: bookmark_pct,
            // Only another Kobo's position names a span of the same KEPUB.
            content_source_progress_percent: location
                .as_ref()
                .and(mark.as_ref().and_then(|m| m.csp.clone())),
            location,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_in(json: &str) -> KoboStateIn {
        serde_json::from_str(json).unwrap()
    }

    fn applied(w: &ProgressWrite, dev: DeviceId, at: Timestamp) -> ProgressState {
        ProgressState {
            book_id: w.book_id,
            percent: w.percent,
            locator: w.locator.clone(),
            status: w.effective_status(),
            device_id: dev,
            client_ts: w.client_ts,
            updated_at: at,
            version: 1,
        }
    }

    const PUT: &str = r#"{"LastModified":"2025-11-20T21:04:55.381Z","PriorityTimestamp":"2025-11-20T21:04:55.381Z",
        "CurrentBookmark":{"LastModified":"2025-11-20T21:04:55.381Z","ProgressPercent":37,"ContentSourceProgressPercent":61.5,
        "Location":{"Source":"OEBPS/Text/chapter05.xhtml","Type":"KoboSpan","Value":"kobo.12.3"}},
        "Statistics":{"LastModified":"2025-11-20T21:04:55.381Z","RemainingTimeMinutes":213,"SpentReadingMinutes":142},
        "StatusInfo":{"LastModified":"2025-11-20T21:04:55.381Z","Status":"Reading"}}"#;

    #[test]
    fn a_put_is_echoed_to_its_device_and_news_to_others() {
        let (book, dev, other) = (
            BookId::generate(),
            DeviceId::generate(),
            DeviceId::generate(),
        );
        let now = Timestamp::parse("2025-11-21T00:00:00Z").unwrap();
        let w = to_write(&state_in(PUT), book, dev, None, now).unwrap();
        assert_eq!(w.percent.get(), 37.0);
        assert_eq!(w.status, Some(ReadStatus::Reading));
        assert!(!w.rewind);
        assert_eq!(
            w.client_ts,
            Timestamp::parse("2025-11-20T21:04:55.381Z").unwrap()
        );
        // Same body, same event: two racing PUTs are one write.
        assert_eq!(
            w.event_id,
            to_write(&state_in(PUT), book, dev, None, now)
                .unwrap()
                .event_id
        );
        let st = applied(&w, dev, now);
        let mine = serde_json::to_value(reading_state(book, now, Some(&st), dev)).unwrap();
        assert_eq!(mine["LastModified"], "2025-11-20T21:04:55.381Z");
        assert_eq!(mine["PriorityTimestamp"], "2025-11-20T21:04:55.381Z");
        assert_eq!(
            mine["CurrentBookmark"]["ProgressPercent"],
            serde_json::json!(37)
        );
        assert_eq!(mine["CurrentBookmark"]["ProgressPercent"].to_string(), "37");
        assert_eq!(
            mine["CurrentBookmark"]["ContentSourceProgressPercent"],
            61.5
        );
        assert_eq!(mine["CurrentBookmark"]["Location"]["Value"], "kobo.12.3");
        assert_eq!(mine["Statistics"]["SpentReadingMinutes"], 142);
        assert_eq!(
            mine["StatusInfo"]["LastModified"],
            "2025-11-20T21:04:55.381Z"
        );
        assert_eq!(mine["CurrentBookmark"]["Location"]["Type"], "KoboSpan");
        let stored = w.locator.as_ref().unwrap().as_str();
        assert!(stored.len() < 260, "{} bytes: {stored}", stored.len());
        let theirs = serde_json::to_value(reading_state(book, now, Some(&st), other)).unwrap();
        assert_eq!(theirs["PriorityTimestamp"], "2025-11-21T00:00:00Z");
        assert_eq!(
            theirs["CurrentBookmark"]["Location"]["Source"],
            "OEBPS/Text/chapter05.xhtml"
        );
    }

    #[test]
    fn ready_to_read_after_reading_is_a_rewind_and_finished_is_whole() {
        let (book, dev) = (BookId::generate(), DeviceId::generate());
        let now = Timestamp::now();
        let w = to_write(&state_in(PUT), book, dev, None, now).unwrap();
        let st = applied(&w, dev, now);
        let reset = state_in(
            r#"{"StatusInfo":{"LastModified":"2025-11-22T10:00:00Z","Status":"ReadyToRead"}}"#,
        );
        let r = to_write(&reset, book, dev, Some(&st), now).unwrap();
        assert!(r.rewind);
        assert_eq!(r.percent.get(), 0.0);
        assert_eq!(r.status, Some(ReadStatus::Unread));
        let fin = state_in(
            r#"{"StatusInfo":{"LastModified":"2025-11-22T10:00:00Z","Status":"Finished"},
                "CurrentBookmark":{"LastModified":"2025-11-22T10:00:00Z","ProgressPercent":3}}"#,
        );
        let f = to_write(&fin, book, dev, Some(&st), now).unwrap();
        assert_eq!(f.percent.get(), 100.0);
        assert!(!f.rewind);
        // An older bookmark replayed after a newer one changes nothing of the bookmark.
        let old = state_in(
            r#"{"CurrentBookmark":{"LastModified":"2025-01-01T00:00:00Z","ProgressPercent":5}}"#,
        );
        let o = to_write(&old, book, dev, Some(&st), now).unwrap();
        assert_eq!(o.percent.get(), 37.0);
    }

    #[test]
    fn bad_numbers_and_statuses_name_the_field() {
        let (book, dev) = (BookId::generate(), DeviceId::generate());
        let e = to_write(
            &state_in(r#"{"CurrentBookmark":{"ProgressPercent":140}}"#),
            book,
            dev,
            None,
            Timestamp::now(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ProgressPercent"), "{e}");
        let e = to_write(
            &state_in(r#"{"StatusInfo":{"Status":"Lost"}}"#),
            book,
            dev,
            None,
            Timestamp::now(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("Status"), "{e}");
    }

    #[test]
    fn times_parse_leniently_and_print_like_the_store() {
        for s in [
            "2026-08-17T17:56:53.254Z",
            "2026-08-17T17:56:53Z",
            "2026-08-17T17:56:53+00:00",
            "2026-08-17T17:56:53.0000000Z",
            "2026-08-17T17:56:53",
        ] {
            let t = parse_time(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(kobo_time(t), "2026-08-17T17:56:53Z");
        }
    }
}
