//! A Kobo's reading state and Dogear's one progress.
//!
//! A Kobo `PUT .../state` becomes the same [`ProgressWrite`] the REST API makes: the whole-book
//! `ProgressPercent` is `percent`, and everything else the device sent (its span, the
//! document it is in, its statistics and its own timestamp strings) travels in the locator
//! as a small JSON object, so that the device gets back exactly what it wrote (the
//! "Sync to last page read?" prompt appears whenever the timestamps it sees differ) and
//! another Kobo can jump to the same span of the same KEPUB. A `ReadyToRead` status after
//! the book was started is the reader resetting it on the device: a rewind to 0 %.
//!
//! The wire shapes (Kobo's JSON) live in the gateway; this module takes a [`KoboReading`]
//! the gateway has already parsed and checked, merges each part with
//! [`crate::progress::parts`], and gives back a [`ReadingView`] the gateway writes out.

use crate::error::AppError;
use crate::progress::ProgressWrite;
use crate::progress::parts::{DeviceTime, Stamped};
use dogear_storage::{
    BookId, DeviceId, EventId, Locator, Percent, ProgressState, ReadStatus, Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::Number;

/// What a Kobo said about one book, as the gateway parsed and checked it: every part
/// optional, each stamped with the device's time for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KoboReading {
    /// The state's own time (`LastModified`, else `PriorityTimestamp`).
    pub at: Option<DeviceTime>,
    pub bookmark: Option<Stamped<Bookmark>>,
    pub statistics: Option<Stamped<Statistics>>,
    pub status: Option<Stamped<StatusInfo>>,
}

impl KoboReading {
    /// Every device time in it, clamped to `now` when more than `skew_secs` ahead: a Kobo
    /// whose clock says 9999 must not make every later write stale. `true` if one was.
    pub fn clamp_times(&mut self, now: Timestamp, skew_secs: i64) -> bool {
        let mut clamped = false;
        let mut fix = |t: &mut DeviceTime| {
            let (c, was) = t.clone().clamped(now, skew_secs, kobo_time);
            *t = c;
            clamped |= was;
        };
        if let Some(t) = self.at.as_mut() {
            fix(t);
        }
        if let Some(p) = self.bookmark.as_mut() {
            fix(&mut p.at);
        }
        if let Some(p) = self.statistics.as_mut() {
            fix(&mut p.at);
        }
        if let Some(p) = self.status.as_mut() {
            fix(&mut p.at);
        }
        clamped
    }
}

/// Where the reader is: whole-book and in-document percents as the device wrote them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bookmark {
    pub percent: Option<Number>,
    pub source_percent: Option<Number>,
    pub location: Option<KoboLocation>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KoboLocation {
    pub value: Option<String>,
    pub kind: Option<String>,
    pub source: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    pub spent_minutes: Option<i64>,
    pub remaining_minutes: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub status: Option<KoboStatus>,
    pub times_started: Option<i64>,
    /// Times as the device wrote them (echoed, never compared).
    pub last_started: Option<String>,
    pub last_finished: Option<String>,
}

/// A Kobo's reading status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KoboStatus {
    ReadyToRead,
    Reading,
    Finished,
}

impl KoboStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KoboStatus::ReadyToRead => "ReadyToRead",
            KoboStatus::Reading => "Reading",
            KoboStatus::Finished => "Finished",
        }
    }
    pub fn parse(s: &str) -> Option<KoboStatus> {
        match s {
            "ReadyToRead" => Some(KoboStatus::ReadyToRead),
            "Reading" => Some(KoboStatus::Reading),
            "Finished" => Some(KoboStatus::Finished),
            _ => None,
        }
    }
    fn of(s: ReadStatus) -> KoboStatus {
        match s {
            ReadStatus::Unread => KoboStatus::ReadyToRead,
            ReadStatus::Reading => KoboStatus::Reading,
            ReadStatus::Finished => KoboStatus::Finished,
        }
    }
}

/// What happened to one part a device sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartOutcome {
    /// Taken (or the same as what is stored: a replay).
    Applied,
    /// What is stored is newer; this part changed nothing.
    Stale,
}

/// The outcome of each part that was sent (`None`: not sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartOutcomes {
    pub bookmark: Option<PartOutcome>,
    pub statistics: Option<PartOutcome>,
    pub status: Option<PartOutcome>,
}

/// The write a `PUT` stands for, and what became of each part.
#[derive(Clone, Debug, PartialEq)]
pub struct KoboWrite {
    pub write: ProgressWrite,
    /// The fingerprint that tells a retry from a reused id: that of the state before its id
    /// was derived from it, so that the same state always has the same id and fingerprint.
    pub body: String,
    pub parts: PartOutcomes,
    /// The state's time as stored and answered (the device's own, unless it was clamped).
    pub at: String,
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

#[derive(Deserialize)]
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
        #[derive(Serialize)]
        struct Wrapped<'a> {
            kobo: &'a KoboMark,
        }
        let s = serde_json::to_string(&Wrapped { kobo: self }).ok()?;
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

/// A stored time string read back (it was checked when it was written).
fn stored_time(s: &Option<String>, fallback: &str) -> Option<DeviceTime> {
    DeviceTime::parse(s.as_deref().unwrap_or(fallback))
}

impl KoboMark {
    fn bookmark(&self) -> Option<Stamped<Bookmark>> {
        Some(Stamped {
            at: stored_time(&self.bm_lm, &self.lm)?,
            value: Bookmark {
                percent: self.pct.clone(),
                source_percent: self.csp.clone(),
                location: (self.value.is_some() || self.kind.is_some() || self.source.is_some())
                    .then(|| KoboLocation {
                        value: self.value.clone(),
                        kind: self.kind.clone(),
                        source: self.source.clone(),
                    }),
            },
        })
    }
    fn statistics(&self) -> Option<Stamped<Statistics>> {
        Some(Stamped {
            at: stored_time(&self.st_lm, &self.lm)?,
            value: Statistics {
                spent_minutes: self.spent,
                remaining_minutes: self.remaining,
            },
        })
    }
    fn status_info(&self) -> Option<Stamped<StatusInfo>> {
        Some(Stamped {
            at: stored_time(&self.si_lm, &self.lm)?,
            value: StatusInfo {
                status: self.status.as_deref().and_then(KoboStatus::parse),
                times_started: self.times,
                last_started: self.ltsr.clone(),
                last_finished: self.ltf.clone(),
            },
        })
    }
}

/// A part's outcome: applied if it wins over the stored one or is the same (a replay).
fn outcome<T: Serialize + PartialEq>(
    incoming: &Stamped<T>,
    stored: Option<&Stamped<T>>,
) -> PartOutcome {
    if incoming.wins_over(stored)
        || stored.is_some_and(|s| s.at.at == incoming.at.at && s.value == incoming.value)
    {
        PartOutcome::Applied
    } else {
        PartOutcome::Stale
    }
}

/// The write a Kobo `PUT` stands for, merged per part onto what is stored: each part
/// (`CurrentBookmark`, `Statistics`, `StatusInfo`) replaces the stored one only if it wins
/// by [`Stamped`]'s rule, so a stale replay cannot undo newer data.
pub fn to_write(
    input: &KoboReading,
    book: BookId,
    device: DeviceId,
    current: Option<&ProgressState>,
    now: Timestamp,
) -> Result<KoboWrite, AppError> {
    let stored = current
        .and_then(|s| KoboMark::from_locator(s.locator.as_ref()))
        .map(KoboMark::expanded)
        .unwrap_or_default();
    let mut mark = stored.clone();
    let mut parts = PartOutcomes::default();
    let mut stamps: Vec<&DeviceTime> = input.at.iter().collect();
    let mut percent: Option<f64> = None;
    if let Some(bm) = &input.bookmark {
        let o = outcome(bm, stored.bookmark().as_ref());
        parts.bookmark = Some(o);
        if o == PartOutcome::Applied {
            percent = bm.value.percent.as_ref().and_then(Number::as_f64);
            mark.bm_lm = Some(bm.at.raw.clone());
            mark.pct = bm.value.percent.clone();
            mark.csp = bm.value.source_percent.clone();
            let loc = bm.value.location.clone().unwrap_or_default();
            mark.value = loc.value;
            mark.kind = loc.kind;
            mark.source = loc.source;
            stamps.push(&bm.at);
        }
    }
    if let Some(st) = &input.statistics {
        let o = outcome(st, stored.statistics().as_ref());
        parts.statistics = Some(o);
        if o == PartOutcome::Applied {
            mark.st_lm = Some(st.at.raw.clone());
            mark.spent = st.value.spent_minutes;
            mark.remaining = st.value.remaining_minutes;
            stamps.push(&st.at);
        }
    }
    let mut explicit_status = None;
    let was_reading = mark.status.as_deref() == Some("Reading");
    if let Some(si) = &input.status {
        let o = outcome(si, stored.status_info().as_ref());
        parts.status = Some(o);
        if o == PartOutcome::Applied {
            let v = &si.value;
            if v.status == Some(KoboStatus::Reading) && !was_reading && v.times_started.is_none() {
                // Started (again): the store counts it even when the device does not.
                mark.times = Some(mark.times.unwrap_or(0) + 1);
                mark.ltsr = Some(si.at.raw.clone());
            }
            if let Some(s) = v.status {
                explicit_status = Some(match s {
                    KoboStatus::ReadyToRead => ReadStatus::Unread,
                    KoboStatus::Reading => ReadStatus::Reading,
                    KoboStatus::Finished => ReadStatus::Finished,
                });
                mark.status = Some(s.as_str().to_string());
            }
            mark.si_lm = Some(si.at.raw.clone());
            if v.times_started.is_some() {
                mark.times = v.times_started;
            }
            if v.last_started.is_some() {
                mark.ltsr = v.last_started.clone();
            }
            if v.last_finished.is_some() {
                mark.ltf = v.last_finished.clone();
            }
            stamps.push(&si.at);
        }
    }
    // The device's own time for this state: its top-level LastModified, else the newest part.
    let lm = input
        .at
        .clone()
        .or_else(|| stamps.iter().max_by_key(|t| t.at).map(|t| (*t).clone()))
        .unwrap_or_else(|| DeviceTime::server(now, kobo_time));
    mark.lm = lm.raw.clone();
    let client_ts = lm.at;
    let started = current.is_some_and(|s| s.status != ReadStatus::Unread || s.percent.get() > 0.0);
    let (percent, status, rewind) = match explicit_status {
        Some(ReadStatus::Unread) if started => {
            // The reader reset the book on the device (Kobo sends `ReadyToRead` only then):
            // back to the start, on purpose.
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
    let percent = Percent::new(percent).ok_or_else(|| {
        AppError::bad(
            "ReadingStates[0].CurrentBookmark.ProgressPercent",
            "must be between 0 and 100",
        )
    })?;
    // The gateway bounds every string, so this always fits; if it ever did not, the write is
    // refused rather than stored without its position.
    let locator = mark.compact().to_locator().ok_or_else(|| {
        AppError::bad(
            "ReadingStates[0].CurrentBookmark.Location",
            "is too long to store",
        )
    })?;
    let mut w = ProgressWrite {
        event_id: EventId(uuid::Uuid::nil()),
        book_id: book,
        device_id: device,
        percent,
        locator: Some(locator),
        status: Some(status),
        client_ts,
        rewind,
    };
    // The same state sent twice (two PUTs racing on wake-up) is the same event. The id is
    // time-ordered (a UUIDv7 of the device's time, the rest from the state's digest), so a
    // device's successive events sit together in the store's event-id index. The digest is
    // also the event's body fingerprint: one hash a PUT instead of two.
    let body = w.fingerprint();
    let bytes: [u8; 10] = std::array::from_fn(|i| {
        u8::from_str_radix(body.get(i * 2..i * 2 + 2).unwrap_or("00"), 16).unwrap_or(0)
    });
    let ms = u64::try_from(client_ts.millis()).unwrap_or(0);
    w.event_id = EventId(uuid::Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid());
    Ok(KoboWrite {
        write: w,
        body,
        parts,
        at: lm.raw,
    })
}

/// `ReadingState` as the device gets it (sync items, `GET .../state`); the gateway writes
/// it out in Kobo's JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadingView {
    /// A position from elsewhere, to be placed on a span of the device's KEPUB before it
    /// goes out (see [`super::position`]).
    pub locate_at: Option<f64>,
    pub entitlement_id: String,
    pub created: String,
    pub last_modified: String,
    pub priority_timestamp: String,
    pub status_info: StatusView,
    pub statistics: StatisticsView,
    pub current_bookmark: BookmarkView,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub last_modified: String,
    pub status: KoboStatus,
    pub times_started_reading: i64,
    pub last_time_started_reading: Option<String>,
    pub last_time_finished: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatisticsView {
    pub last_modified: String,
    pub spent_reading_minutes: Option<i64>,
    pub remaining_time_minutes: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BookmarkView {
    pub last_modified: String,
    pub progress_percent: Option<Number>,
    pub content_source_progress_percent: Option<Number>,
    pub location: Option<LocationView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocationView {
    pub value: String,
    pub kind: String,
    pub source: String,
}

impl ReadingView {
    /// Places the bookmark on a span found for [`Self::locate_at`].
    pub fn place(&mut self, at: &super::position::Located) {
        self.current_bookmark.location = Some(LocationView {
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
) -> ReadingView {
    let created = kobo_time(added);
    let Some(s) = state else {
        return ReadingView {
            locate_at: None,
            entitlement_id: book.to_string(),
            created: created.clone(),
            last_modified: created.clone(),
            priority_timestamp: created.clone(),
            status_info: StatusView {
                last_modified: created.clone(),
                status: KoboStatus::ReadyToRead,
                times_started_reading: 0,
                last_time_started_reading: None,
                last_time_finished: None,
            },
            statistics: StatisticsView {
                last_modified: created.clone(),
                spent_reading_minutes: None,
                remaining_time_minutes: None,
            },
            current_bookmark: BookmarkView {
                last_modified: created,
                progress_percent: None,
                content_source_progress_percent: None,
                location: None,
            },
        };
    };
    let mark = KoboMark::from_locator(s.locator.as_ref()).map(KoboMark::expanded);
    let own = s.device_id == device && mark.is_some();
    let status = KoboStatus::of(s.status);
    let times = mark
        .as_ref()
        .and_then(|m| m.times)
        .unwrap_or(if s.status == ReadStatus::Unread { 0 } else { 1 });
    let location = mark.as_ref().and_then(|m| {
        Some(LocationView {
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
        return ReadingView {
            locate_at: None,
            entitlement_id: book.to_string(),
            created,
            last_modified: m.lm.clone(),
            priority_timestamp: m.lm.clone(),
            status_info: StatusView {
                last_modified: at(&m.si_lm),
                status,
                times_started_reading: times,
                last_time_started_reading: m.ltsr.clone(),
                last_time_finished: m.ltf.clone(),
            },
            statistics: StatisticsView {
                last_modified: at(&m.st_lm),
                spent_reading_minutes: m.spent,
                remaining_time_minutes: m.remaining,
            },
            current_bookmark: BookmarkView {
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
    ReadingView {
        locate_at,
        entitlement_id: book.to_string(),
        created,
        last_modified: at.clone(),
        priority_timestamp: at.clone(),
        status_info: StatusView {
            last_modified: at.clone(),
            status,
            times_started_reading: times,
            last_time_started_reading: mark
                .as_ref()
                .and_then(|m| m.ltsr.clone())
                .or_else(|| (s.status != ReadStatus::Unread).then(|| at.clone())),
            last_time_finished: None,
        },
        statistics: StatisticsView {
            last_modified: at.clone(),
            spent_reading_minutes: mark.as_ref().and_then(|m| m.spent),
            remaining_time_minutes: None,
        },
        current_bookmark: BookmarkView {
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

    fn t(s: &str) -> DeviceTime {
        DeviceTime::parse(s).unwrap()
    }

    const AT: &str = "2025-11-20T21:04:55.381Z";

    fn put() -> KoboReading {
        KoboReading {
            at: Some(t(AT)),
            bookmark: Some(Stamped {
                at: t(AT),
                value: Bookmark {
                    percent: Some(Number::from(37)),
                    source_percent: Number::from_f64(61.5),
                    location: Some(KoboLocation {
                        value: Some("kobo.12.3".into()),
                        kind: Some("KoboSpan".into()),
                        source: Some("OEBPS/Text/chapter05.xhtml".into()),
                    }),
                },
            }),
            statistics: Some(Stamped {
                at: t(AT),
                value: Statistics {
                    spent_minutes: Some(142),
                    remaining_minutes: Some(213),
                },
            }),
            status: Some(Stamped {
                at: t(AT),
                value: StatusInfo {
                    status: Some(KoboStatus::Reading),
                    ..Default::default()
                },
            }),
        }
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

    #[test]
    fn a_put_is_echoed_to_its_device_and_news_to_others() {
        let (book, dev, other) = (
            BookId::generate(),
            DeviceId::generate(),
            DeviceId::generate(),
        );
        let now = Timestamp::parse("2025-11-21T00:00:00Z").unwrap();
        let k = to_write(&put(), book, dev, None, now).unwrap();
        let w = &k.write;
        assert_eq!(w.percent.get(), 37.0);
        assert_eq!(w.status, Some(ReadStatus::Reading));
        assert!(!w.rewind);
        assert_eq!(w.client_ts, Timestamp::parse(AT).unwrap());
        assert_eq!(k.at, AT);
        assert_eq!(k.parts.bookmark, Some(PartOutcome::Applied));
        // Same body, same event: two racing PUTs are one write.
        assert_eq!(
            w.event_id,
            to_write(&put(), book, dev, None, now)
                .unwrap()
                .write
                .event_id
        );
        // Ids follow the device's time, whatever the digest: a later state sorts after.
        assert_eq!(w.event_id.0.get_version_num(), 7);
        let mut later = put();
        later.at = Some(t("2025-11-21T00:00:01Z"));
        let next = to_write(&later, book, dev, None, now).unwrap().write;
        assert!(next.event_id > w.event_id && next.client_ts > w.client_ts);
        let st = applied(w, dev, now);
        let mine = reading_state(book, now, Some(&st), dev);
        assert_eq!(mine.last_modified, AT);
        assert_eq!(mine.priority_timestamp, AT);
        let pct = mine.current_bookmark.progress_percent.clone().unwrap();
        assert_eq!(pct.to_string(), "37", "whole numbers stay integers");
        assert_eq!(
            mine.current_bookmark.content_source_progress_percent,
            Number::from_f64(61.5)
        );
        let loc = mine.current_bookmark.location.clone().unwrap();
        assert_eq!(
            (loc.value.as_str(), loc.kind.as_str()),
            ("kobo.12.3", "KoboSpan")
        );
        assert_eq!(mine.statistics.spent_reading_minutes, Some(142));
        assert_eq!(mine.status_info.last_modified, AT);
        let stored = w.locator.as_ref().unwrap().as_str();
        assert!(stored.len() < 260, "{} bytes: {stored}", stored.len());
        let theirs = reading_state(book, now, Some(&st), other);
        assert_eq!(theirs.priority_timestamp, "2025-11-21T00:00:00Z");
        assert_eq!(
            theirs.current_bookmark.location.unwrap().source,
            "OEBPS/Text/chapter05.xhtml"
        );
    }

    #[test]
    fn ready_to_read_after_reading_is_a_rewind_and_finished_is_whole() {
        let (book, dev) = (BookId::generate(), DeviceId::generate());
        let now = Timestamp::now();
        let w = to_write(&put(), book, dev, None, now).unwrap().write;
        let st = applied(&w, dev, now);
        let status = |s: KoboStatus, at: &str| KoboReading {
            status: Some(Stamped {
                at: t(at),
                value: StatusInfo {
                    status: Some(s),
                    ..Default::default()
                },
            }),
            ..Default::default()
        };
        let r = to_write(
            &status(KoboStatus::ReadyToRead, "2025-11-22T10:00:00Z"),
            book,
            dev,
            Some(&st),
            now,
        )
        .unwrap()
        .write;
        assert!(r.rewind);
        assert_eq!(r.percent.get(), 0.0);
        assert_eq!(r.status, Some(ReadStatus::Unread));
        let f = to_write(
            &status(KoboStatus::Finished, "2025-11-22T10:00:00Z"),
            book,
            dev,
            Some(&st),
            now,
        )
        .unwrap()
        .write;
        assert_eq!(f.percent.get(), 100.0);
        assert!(!f.rewind);
        // An older bookmark replayed after a newer one changes nothing, and says so.
        let old = KoboReading {
            bookmark: Some(Stamped {
                at: t("2025-01-01T00:00:00Z"),
                value: Bookmark {
                    percent: Some(Number::from(5)),
                    ..Default::default()
                },
            }),
            ..Default::default()
        };
        let o = to_write(&old, book, dev, Some(&st), now).unwrap();
        assert_eq!(o.write.percent.get(), 37.0);
        assert_eq!(o.parts.bookmark, Some(PartOutcome::Stale));
        // The same PUT again is a replay: applied (idempotent), the same event.
        let again = to_write(&put(), book, dev, Some(&st), now).unwrap();
        assert_eq!(again.parts.bookmark, Some(PartOutcome::Applied));
        assert_eq!(again.write.event_id, w.event_id);
    }

    #[test]
    fn times_print_like_the_store() {
        for s in [
            "2026-08-17T17:56:53.254Z",
            "2026-08-17T17:56:53Z",
            "2026-08-17T17:56:53+00:00",
            "2026-08-17T17:56:53.0000000Z",
            "2026-08-17T17:56:53",
        ] {
            let d = DeviceTime::parse(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(kobo_time(d.at), "2026-08-17T17:56:53Z");
        }
    }
}
