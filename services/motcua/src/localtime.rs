//! Instants as an operator reads them: local time in Vietnam (UTC+7, no
//! daylight saving).

use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339, macros};

const VIETNAM: UtcOffset = macros::offset!(+7);

fn local(t: &prost_types::Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .map(|t| t.to_offset(VIETNAM))
}

/// "2024-03-12 00:00:05" (UTC+7); "-" when absent or out of range.
pub fn display(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(local)
        .and_then(|t| {
            t.format(macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// RFC 3339 with the +07:00 offset, e.g. "2024-03-12T00:00:05+07:00".
pub fn rfc3339(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.and_then(local).and_then(|t| t.format(&Rfc3339).ok())
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
        assert_eq!(display(None), "-");
    }
}
