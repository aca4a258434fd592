//! UTC timestamps as they appear in every file and JSON output: RFC 3339 strings.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A point in time, always normalised to UTC and written as RFC 3339.
///
/// A newtype rather than `OffsetDateTime` itself so the state file's schema says
/// "string, date-time" and so callers pass the clock in (`Timestamp::now()` is only
/// called at the edges: the CLI and the runner).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Timestamp(#[cfg_attr(feature = "ts", ts(type = "string"))] OffsetDateTime);

impl Timestamp {
    /// The current time. Only the program's edges call this; the engine takes `now`.
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    /// Parses an RFC 3339 string such as `2025-07-20T08:14:03Z`.
    pub fn parse(text: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(text, &Rfc3339).map(Self::from)
    }

    /// A file's modification time, say; `None` when before 1970 or out of range.
    pub(crate) fn from_system_time(t: std::time::SystemTime) -> Option<Self> {
        let since = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        OffsetDateTime::UNIX_EPOCH
            .checked_add(time::Duration::try_from(since).ok()?)
            .map(Self)
    }

    /// Seconds since the Unix epoch (for ages and sorting).
    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// This timestamp moved by a signed number of seconds.
    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0 + time::Duration::seconds(seconds))
    }

    /// Compact form for file and id names: `20261122T024031Z`.
    pub fn compact(self) -> String {
        let t = self.0;
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// For people: to the second, in the local time zone (`TZ`, else the system's),
    /// with its offset, always 25 characters: `2026-01-01 14:30:05 +0530`. Files and
    /// JSON keep RFC 3339 UTC.
    pub(crate) fn local_display(self) -> String {
        let format = time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
        );
        let local = self.0.to_offset(local_offset_at(self.0.unix_timestamp()));
        local.format(&format).unwrap_or_else(|_| self.to_string())
    }

    /// Whole seconds from `self` until `later` (negative if `later` is earlier).
    pub(crate) fn seconds_until(self, later: Timestamp) -> i64 {
        (later.0 - self.0).whole_seconds()
    }
}

/// The local time zone's offset at a moment, from the C library (`localtime_r`, which
/// reads `TZ` and the system's zone files). `time`'s own local offset refuses to work
/// once a process has threads; UTC when the C library cannot say.
fn local_offset_at(unix: i64) -> UtcOffset {
    let secs: libc::time_t = unix;
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid
    // for the call, and localtime_r is the re-entrant variant.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let filled = unsafe { libc::localtime_r(&secs, &mut tm) };
    if filled.is_null() {
        return UtcOffset::UTC;
    }
    i32::try_from(tm.tm_gmtoff)
        .ok()
        .and_then(|s| UtcOffset::from_whole_seconds(s).ok())
        .unwrap_or(UtcOffset::UTC)
}

impl From<OffsetDateTime> for Timestamp {
    fn from(value: OffsetDateTime) -> Self {
        Self(value.to_offset(UtcOffset::UTC))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Formatting a UTC OffsetDateTime as RFC 3339 only fails for years outside
        // 0..=9999, which `Timestamp` never holds (parse and now() both stay inside).
        match self.0.format(&Rfc3339) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{}", self.0.unix_timestamp()),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not an RFC 3339 timestamp: {e}"))
        })
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "An RFC 3339 timestamp in UTC."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_normalises_to_utc() {
        let t = Timestamp::parse("2025-07-20T10:14:03+02:00").unwrap();
        assert_eq!(t.to_string(), "2025-07-20T08:14:03Z");
        assert_eq!(t.compact(), "20250720T081403Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2025-07-20T08:14:03Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn rejects_a_non_timestamp_with_the_text_in_the_message() {
        let err = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(
            err.to_string().contains("`yesterday` is not an RFC 3339"),
            "{err}"
        );
    }
}
