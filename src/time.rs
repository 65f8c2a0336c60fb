//! The one owner of time formats: parsing the ISO-8601 strings clients send
//! and rendering RFC 3339 UTC with milliseconds, as every response does.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};

use crate::model::Millis;

/// Now, in milliseconds since the epoch.
pub fn now_millis() -> Millis {
    Utc::now().timestamp_millis()
}

/// Parses an ISO-8601 timestamp: `2022-12-01T17:40:04.055Z`,
/// `2021-01-21T19:20:30+05:00`, `+0500` offsets, a space instead of `T`, and a
/// bare date (midnight UTC). A date-time without a zone is taken as UTC.
pub fn parse_iso8601(s: &str) -> Option<Millis> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_millis());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&t).timestamp_millis());
        }
    }
    if s.len() == 10 {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Some(
                Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?)
                    .timestamp_millis(),
            );
        }
    }
    None
}

/// Renders as RFC 3339 UTC with milliseconds: `2026-11-24T05:14:36.000Z`.
///
/// ```
/// use cohortd::time::{format_millis, parse_iso8601};
/// let t = parse_iso8601("2021-01-21T19:20:30+05:00").unwrap();
/// assert_eq!(format_millis(t), "2021-01-21T14:20:30.000Z");
/// ```
pub fn format_millis(ms: Millis) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => String::from("1970-01-01T00:00:00.000Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_forms_the_spec_names() {
        assert_eq!(
            parse_iso8601("2022-12-01T17:40:04.055Z"),
            Some(1_669_916_404_055)
        );
        assert_eq!(
            parse_iso8601("2021-01-21T19:20:30+05:00"),
            parse_iso8601("2021-01-21T14:20:30Z")
        );
        assert_eq!(
            parse_iso8601("2021-01-21T19:20:30+0500"),
            parse_iso8601("2021-01-21T14:20:30Z")
        );
        assert_eq!(
            parse_iso8601("2021-01-21"),
            parse_iso8601("2021-01-21T00:00:00Z")
        );
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "2021-13-01T00:00:00Z",
            "12345",
            "2021-01-21T25:00:00Z",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_utc_with_milliseconds() {
        assert_eq!(format_millis(1_669_916_404_055), "2022-12-01T17:40:04.055Z");
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
    }
}
