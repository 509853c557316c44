//! The JSON of a Kobo's reading state, both ways: a `PUT .../state` body read into the
//! domain's [`KoboReading`] (every time, number and string checked, errors naming the field),
//! and a [`ReadingView`] written out as the device expects it.

use crate::error::ApiError;
use dogear_actors::kobo::state::{
    Bookmark, KoboLocation, KoboReading, KoboStatus, ReadingView, Statistics, StatusInfo,
};
use dogear_actors::progress::parts::{DeviceTime, Stamped};
use serde::Deserialize;
use serde_json::{Number, Value, json};

/// Longest `Location.Value` accepted (a span id is `kobo.12.3`; a CFI a few hundred bytes).
const MAX_LOCATION_VALUE: usize = 512;
/// Longest `Location.Source` (a document's path in the book).
const MAX_LOCATION_SOURCE: usize = 1024;
/// Longest `Location.Type`.
const MAX_LOCATION_TYPE: usize = 64;
/// Longest time string (the longest real one, with seven fraction digits and an offset, is 33).
const MAX_TIME: usize = 64;

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

/// A field of the state, named as the device sent it; the names are built at compile time,
/// as every request goes through them and only a refused one needs them.
macro_rules! field {
    ($path:literal) => {
        concat!("ReadingStates[0].", $path)
    };
}

fn time(field: &str, s: &Option<String>) -> Result<Option<DeviceTime>, ApiError> {
    match s {
        None => Ok(None),
        Some(s) if s.len() > MAX_TIME => Err(ApiError::field(field, "is not a timestamp")),
        Some(s) => DeviceTime::parse(s).map(Some).ok_or_else(|| {
            ApiError::field(
                field,
                "is not a timestamp (expected RFC 3339, e.g. 2026-11-20T21:04:55Z)",
            )
        }),
    }
}

fn percent(field: &str, n: &Option<Number>) -> Result<Option<Number>, ApiError> {
    match n {
        None => Ok(None),
        Some(n) => match n.as_f64() {
            Some(v) if (0.0..=100.0).contains(&v) => Ok(Some(n.clone())),
            _ => Err(ApiError::field(field, "must be a number between 0 and 100")),
        },
    }
}

fn bounded(field: &str, s: &Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match s {
        Some(s) if s.len() > max => Err(ApiError::field(
            field,
            &format!("is longer than {max} bytes"),
        )),
        Some(s) if s.chars().any(char::is_control) => Err(ApiError::field(
            field,
            "must not contain control characters",
        )),
        s => Ok(s.clone()),
    }
}

fn count(field: &str, n: Option<i64>, max: i64) -> Result<Option<i64>, ApiError> {
    match n {
        Some(v) if !(0..=max).contains(&v) => Err(ApiError::field(
            field,
            &format!("must be between 0 and {max}"),
        )),
        n => Ok(n),
    }
}

/// A part's time: its own `LastModified`, else the state's.
fn part_time(
    field: &str,
    own: &Option<String>,
    state: &Option<DeviceTime>,
) -> Result<DeviceTime, ApiError> {
    time(field, own)?.or_else(|| state.clone()).ok_or_else(|| {
        ApiError::field(
            field,
            "is required when the reading state has no LastModified",
        )
    })
}

/// Reads and checks a `PUT` body's state. Nothing is half-taken: any bad field refuses the
/// whole state with a `400` naming it.
pub fn parse(input: &KoboStateIn) -> Result<KoboReading, ApiError> {
    let at = match time(field!("LastModified"), &input.last_modified)? {
        Some(t) => Some(t),
        None => time(field!("PriorityTimestamp"), &input.priority_timestamp)?,
    };
    let bookmark = match &input.current_bookmark {
        None => None,
        Some(b) => {
            let location = match &b.location {
                None => None,
                Some(l) => Some(KoboLocation {
                    value: bounded(
                        field!("CurrentBookmark.Location.Value"),
                        &l.value,
                        MAX_LOCATION_VALUE,
                    )?,
                    kind: bounded(
                        field!("CurrentBookmark.Location.Type"),
                        &l.kind,
                        MAX_LOCATION_TYPE,
                    )?,
                    source: bounded(
                        field!("CurrentBookmark.Location.Source"),
                        &l.source,
                        MAX_LOCATION_SOURCE,
                    )?,
                }),
            };
            Some(Stamped {
                at: part_time(
                    field!("CurrentBookmark.LastModified"),
                    &b.last_modified,
                    &at,
                )?,
                value: Bookmark {
                    percent: percent(
                        field!("CurrentBookmark.ProgressPercent"),
                        &b.progress_percent,
                    )?,
                    source_percent: percent(
                        field!("CurrentBookmark.ContentSourceProgressPercent"),
                        &b.content_source_progress_percent,
                    )?,
                    location,
                },
            })
        }
    };
    let statistics = match &input.statistics {
        None => None,
        Some(s) => Some(Stamped {
            at: part_time(field!("Statistics.LastModified"), &s.last_modified, &at)?,
            value: Statistics {
                spent_minutes: count(
                    field!("Statistics.SpentReadingMinutes"),
                    s.spent_reading_minutes,
                    100_000_000,
                )?,
                remaining_minutes: count(
                    field!("Statistics.RemainingTimeMinutes"),
                    s.remaining_time_minutes,
                    100_000_000,
                )?,
            },
        }),
    };
    let status = match &input.status_info {
        None => None,
        Some(s) => {
            let status = match s.status.as_deref() {
                None => None,
                Some(v) => Some(KoboStatus::parse(v).ok_or_else(|| {
                    ApiError::field(
                        field!("StatusInfo.Status"),
                        "must be ReadyToRead, Reading or Finished",
                    )
                })?),
            };
            // Echoed, never compared, but they must be times all the same.
            let last_started = &s.last_time_started_reading;
            time(field!("StatusInfo.LastTimeStartedReading"), last_started)?;
            time(field!("StatusInfo.LastTimeFinished"), &s.last_time_finished)?;
            Some(Stamped {
                at: part_time(field!("StatusInfo.LastModified"), &s.last_modified, &at)?,
                value: StatusInfo {
                    status,
                    times_started: count(
                        field!("StatusInfo.TimesStartedReading"),
                        s.times_started_reading,
                        1_000_000,
                    )?,
                    last_started: last_started.clone(),
                    last_finished: s.last_time_finished.clone(),
                },
            })
        }
    };
    Ok(KoboReading {
        at,
        bookmark,
        statistics,
        status,
    })
}

/// `ReadingState` as the device reads it.
pub fn reading_state(s: &ReadingView) -> Value {
    let mut status = json!({
        "LastModified": s.status_info.last_modified,
        "Status": s.status_info.status.as_str(),
        "TimesStartedReading": s.status_info.times_started_reading,
    });
    if let Some(t) = &s.status_info.last_time_started_reading {
        status["LastTimeStartedReading"] = json!(t);
    }
    if let Some(t) = &s.status_info.last_time_finished {
        status["LastTimeFinished"] = json!(t);
    }
    let mut statistics = json!({"LastModified": s.statistics.last_modified});
    if let Some(m) = s.statistics.spent_reading_minutes {
        statistics["SpentReadingMinutes"] = json!(m);
    }
    if let Some(m) = s.statistics.remaining_time_minutes {
        statistics["RemainingTimeMinutes"] = json!(m);
    }
    let b = &s.current_bookmark;
    let mut bookmark = json!({"LastModified": b.last_modified});
    if let Some(p) = &b.progress_percent {
        bookmark["ProgressPercent"] = Value::Number(p.clone());
    }
    if let Some(p) = &b.content_source_progress_percent {
        bookmark["ContentSourceProgressPercent"] = Value::Number(p.clone());
    }
    if let Some(l) = &b.location {
        bookmark["Location"] = json!({"Value": l.value, "Type": l.kind, "Source": l.source});
    }
    json!({
        "EntitlementId": s.entitlement_id,
        "Created": s.created,
        "LastModified": s.last_modified,
        "PriorityTimestamp": s.priority_timestamp,
        "StatusInfo": status,
        "Statistics": statistics,
        "CurrentBookmark": bookmark,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dogear_actors::kobo::state::{reading_state as view, to_write};
    use dogear_storage::{BookId, DeviceId, ProgressState, Timestamp};

    fn state_in(json: &str) -> KoboStateIn {
        serde_json::from_str(json).unwrap()
    }

    const PUT: &str = r#"{"LastModified":"2025-11-20T21:04:55.381Z","PriorityTimestamp":"2025-11-20T21:04:55.381Z",
        "CurrentBookmark":{"LastModified":"2025-11-20T21:04:55.381Z","ProgressPercent":37,"ContentSourceProgressPercent":61.5,
        "Location":{"Source":"OEBPS/Text/chapter05.xhtml","Type":"KoboSpan","Value":"kobo.12.3"}},
        "Statistics":{"LastModified":"2025-11-20T21:04:55.381Z","RemainingTimeMinutes":213,"SpentReadingMinutes":142},
        "StatusInfo":{"LastModified":"2025-11-20T21:04:55.381Z","Status":"Reading"}}"#;

    #[test]
    fn a_put_round_trips_to_the_same_json() {
        let (book, dev) = (BookId::generate(), DeviceId::generate());
        let now = Timestamp::parse("2025-11-21T00:00:00Z").unwrap();
        let k = to_write(&parse(&state_in(PUT)).unwrap(), book, dev, None, now).unwrap();
        let w = k.write;
        let st = ProgressState {
            book_id: book,
            percent: w.percent,
            locator: w.locator.clone(),
            status: w.effective_status(),
            device_id: dev,
            client_ts: w.client_ts,
            updated_at: now,
            version: 1,
        };
        let mine = reading_state(&view(book, now, Some(&st), dev));
        assert_eq!(mine["LastModified"], "2025-11-20T21:04:55.381Z");
        assert_eq!(mine["PriorityTimestamp"], "2025-11-20T21:04:55.381Z");
        assert_eq!(mine["CurrentBookmark"]["ProgressPercent"].to_string(), "37");
        assert_eq!(
            mine["CurrentBookmark"]["ContentSourceProgressPercent"],
            61.5
        );
        assert_eq!(mine["CurrentBookmark"]["Location"]["Value"], "kobo.12.3");
        assert_eq!(mine["CurrentBookmark"]["Location"]["Type"], "KoboSpan");
        assert_eq!(mine["Statistics"]["SpentReadingMinutes"], 142);
        assert_eq!(mine["StatusInfo"]["Status"], "Reading");
        assert_eq!(
            mine["StatusInfo"]["LastModified"],
            "2025-11-20T21:04:55.381Z"
        );
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        for (body, field) in [
            (
                r#"{"LastModified":"garbage"}"#,
                "ReadingStates[0].LastModified",
            ),
            (
                r#"{"CurrentBookmark":{"LastModified":"2025-13-45T99:00:00Z","ProgressPercent":1}}"#,
                "ReadingStates[0].CurrentBookmark.LastModified",
            ),
            (
                r#"{"LastModified":"2025-11-20T21:04:55Z","CurrentBookmark":{"ProgressPercent":140}}"#,
                "ReadingStates[0].CurrentBookmark.ProgressPercent",
            ),
            (
                r#"{"LastModified":"2025-11-20T21:04:55Z","StatusInfo":{"Status":"Lost"}}"#,
                "ReadingStates[0].StatusInfo.Status",
            ),
            (
                r#"{"CurrentBookmark":{"ProgressPercent":5}}"#,
                "ReadingStates[0].CurrentBookmark.LastModified",
            ),
            (
                r#"{"LastModified":"2025-11-20T21:04:55Z","Statistics":{"SpentReadingMinutes":-4}}"#,
                "ReadingStates[0].Statistics.SpentReadingMinutes",
            ),
            (
                r#"{"LastModified":"2025-11-20T21:04:55Z","StatusInfo":{"LastTimeFinished":"yesterday"}}"#,
                "ReadingStates[0].StatusInfo.LastTimeFinished",
            ),
        ] {
            let e = parse(&state_in(body)).unwrap_err();
            assert!(e.message.starts_with(field), "{body}: {}", e.message);
        }
        let long = format!(
            r#"{{"LastModified":"2025-11-20T21:04:55Z","CurrentBookmark":{{"ProgressPercent":5,"Location":{{"Value":"{}"}}}}}}"#,
            "k".repeat(5000)
        );
        let e = parse(&state_in(&long)).unwrap_err();
        assert!(
            e.message
                .starts_with("ReadingStates[0].CurrentBookmark.Location.Value"),
            "{}",
            e.message
        );
    }

    #[test]
    fn lenient_times_are_read() {
        for t in [
            "2026-08-17T17:56:53.254Z",
            "2026-08-17T17:56:53Z",
            "2026-08-17T17:56:53+00:00",
            "2026-08-17T17:56:53.0000000Z",
            "2026-08-17T17:56:53",
        ] {
            let body = format!(r#"{{"LastModified":"{t}"}}"#);
            let r = parse(&state_in(&body)).unwrap_or_else(|e| panic!("{t}: {}", e.message));
            assert_eq!(r.at.unwrap().raw, t, "kept as written");
        }
    }
}
