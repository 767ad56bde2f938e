//! Instants as an operator reads them: local time in Vietnam, as the
//! `calendar` crate defines it (UTC+7, no daylight saving).

use calendar::LocalDateTime;

fn local(t: &prost_types::Timestamp) -> Option<LocalDateTime> {
    let micros = t
        .seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(t.nanos / 1_000))?;
    // Years past 9999 are no instant an office records.
    let local = LocalDateTime::from_instant(micros);
    (0..=9999).contains(&local.date.year()).then_some(local)
}

/// "2024-03-12 00:00:05" (UTC+7); "-" when absent or out of range.
pub fn display(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(local).map_or_else(
        || "-".to_owned(),
        |t| format!("{} {:02}:{:02}:{:02}", t.date, t.hour, t.minute, t.second),
    )
}

/// RFC 3339 with the +07:00 offset, e.g. "2024-03-12T00:00:05+07:00".
pub fn rfc3339(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.and_then(local).map(|t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_read_in_vietnam_time() {
        // 2024-03-11T17:00:00Z is midnight of the 12th in Vietnam.
        let t = prost_types::Timestamp {
            seconds: 1_710_176_400,
            nanos: 0,
        };
        assert_eq!(display(Some(&t)), "2024-03-12 00:00:00");
        assert_eq!(
            rfc3339(Some(&t)).as_deref(),
            Some("2024-03-12T00:00:00+07:00")
        );
        let later = prost_types::Timestamp {
            nanos: 500_000_000,
            ..t
        };
        assert_eq!(
            rfc3339(Some(&later)).as_deref(),
            Some("2024-03-12T00:00:00.5+07:00")
        );
        assert_eq!(display(None), "-");
    }
}
