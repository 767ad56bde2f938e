//! Numbers as Vietnamese offices write them: "." between thousands
//! (`12.429`) and a decimal comma (`16,39%`).

/// A count with "." between thousands: 12429 → `12.429`.
pub fn integer(n: u64) -> String {
    group(&n.to_string())
}

/// A percentage (not a fraction) with two decimals and a decimal comma:
/// 16.3930 → `16,39%`, 1234.5 → `1.234,50%`.
pub fn percent(percentage: f64) -> String {
    if !percentage.is_finite() {
        return format!("{percentage}%");
    }
    let fixed = format!("{:.2}", percentage.abs());
    let (whole, fraction) = fixed.split_once('.').unwrap_or((fixed.as_str(), "00"));
    // "-0,00%" is not a figure anyone writes.
    let sign = if percentage < 0.0 && fixed.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        "-"
    } else {
        ""
    };
    format!("{sign}{},{fraction}%", group(whole))
}

fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_by_dots() {
        assert_eq!(integer(12429), "12.429");
        assert_eq!(integer(8955), "8.955");
        assert_eq!(integer(999), "999");
        assert_eq!(integer(1000), "1.000");
        assert_eq!(integer(0), "0");
        assert_eq!(integer(1_234_567), "1.234.567");
    }

    #[test]
    fn percentages_have_a_decimal_comma() {
        assert_eq!(percent(16.3930), "16,39%");
        assert_eq!(percent(1468.0 / 8955.0 * 100.0), "16,39%");
        assert_eq!(percent(15.02), "15,02%");
        assert_eq!(percent(1.2068), "1,21%");
        assert_eq!(percent(0.0), "0,00%");
        assert_eq!(percent(100.0), "100,00%");
        assert_eq!(percent(1234.5), "1.234,50%");
        assert_eq!(percent(-0.001), "0,00%");
        assert_eq!(percent(-2.5), "-2,50%");
    }
}
