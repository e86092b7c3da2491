//! Durations in Go's `time.ParseDuration` syntax (`20s`, `1m30s`, `500ms`, `1.5h`), the
//! syntax of the reference kubelet's duration flags and of `metav1.Duration` fields in the
//! KubeletConfiguration file.

use std::time::Duration;

use thiserror::Error;

/// Why a duration did not parse. The input is kept so the caller's message can quote it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// Not of the form `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`.
    #[error("invalid duration {0:?}")]
    Invalid(String),
    /// A number without its unit (only a bare `0` may go without one).
    #[error("missing unit in duration {0:?} (valid units: ns, us, ms, s, m, h)")]
    MissingUnit(String),
    /// A unit Go does not know (e.g. `d`).
    #[error("unknown unit {unit:?} in duration {input:?} (valid units: ns, us, ms, s, m, h)")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// Larger than Go's largest duration (about 292 years).
    #[error("duration {0:?} is out of range")]
    Overflow(String),
    /// Below zero: no kubelet setting takes a negative duration.
    #[error("duration {0:?} is negative")]
    Negative(String),
}

/// Go's limit: durations are an `int64` count of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        // Go accepts both the micro sign (U+00B5) and the Greek mu (U+03BC).
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parse a Go duration. Negative durations are rejected (`-0s` is zero, as in Go).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }

    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after_number
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after_number.len(), |(i, _)| i);
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let scale = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_string(),
            input: input.to_string(),
        })?;

        let overflow = || DurationError::Overflow(input.to_string());
        let mut whole: u128 = 0;
        for digit in int_part.bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u128::from(digit - b'0')))
                .filter(|w| *w <= MAX_NANOS)
                .ok_or_else(overflow)?;
        }
        let mut nanos = whole.checked_mul(scale).ok_or_else(overflow)?;
        // Digits past nanosecond precision cannot change the result; stop before u128 does.
        let mut fraction: u128 = 0;
        let mut denominator: u128 = 1;
        for digit in frac_part.bytes().take(20) {
            fraction = fraction * 10 + u128::from(digit - b'0');
            denominator *= 10;
        }
        nanos += fraction * scale / denominator;
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        if total > MAX_NANOS {
            return Err(overflow());
        }
        rest = after_unit;
    }

    if negative && total > 0 {
        return Err(DurationError::Negative(input.to_string()));
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(input.to_string()))?;
    // The remainder of a division by 1e9 always fits.
    let subsec = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Format a duration the way Go prints one (`1m30s`, `500ms`, `0s`), for messages and help.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (value, unit) = if nanos < 1_000 {
            (nanos as f64, "ns")
        } else if nanos < 1_000_000 {
            (nanos as f64 / 1e3, "µs")
        } else {
            (nanos as f64 / 1e6, "ms")
        };
        return format!("{value}{unit}");
    }
    let total_secs = duration.as_secs();
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let subsec = duration.subsec_nanos();
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if subsec == 0 {
        out.push_str(&format!("{secs}s"));
    } else {
        let frac = format!("{subsec:09}");
        out.push_str(&format!("{secs}.{}s", frac.trim_end_matches('0')));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("-0s", Duration::ZERO),
            ("20s", Duration::from_secs(20)),
            ("+20s", Duration::from_secs(20)),
            ("2m", Duration::from_secs(120)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("1h2m3s", Duration::from_secs(3723)),
            ("500ms", ms(500)),
            ("1.5s", ms(1500)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", ms(500)),
            ("1.s", Duration::from_secs(1)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10μs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1h1h", Duration::from_secs(7200)),
            ("0.000000001s", Duration::from_nanos(1)),
            // Go truncates below nanosecond precision.
            ("0.0000000019s", Duration::from_nanos(1)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).as_ref(), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        let cases: &[(&str, DurationError)] = &[
            ("", DurationError::Invalid(String::new())),
            ("-", DurationError::Invalid("-".into())),
            ("s", DurationError::Invalid("s".into())),
            (".s", DurationError::Invalid(".s".into())),
            ("1", DurationError::MissingUnit("1".into())),
            ("1m30", DurationError::MissingUnit("1m30".into())),
            (
                "1d",
                DurationError::UnknownUnit {
                    unit: "d".into(),
                    input: "1d".into(),
                },
            ),
            (
                "20 s",
                DurationError::UnknownUnit {
                    unit: " s".into(),
                    input: "20 s".into(),
                },
            ),
            (
                "1S",
                DurationError::UnknownUnit {
                    unit: "S".into(),
                    input: "1S".into(),
                },
            ),
            ("-1s", DurationError::Negative("-1s".into())),
            ("-1m30s", DurationError::Negative("-1m30s".into())),
            ("2562048h", DurationError::Overflow("2562048h".into())),
            (
                "99999999999999999999999s",
                DurationError::Overflow("99999999999999999999999s".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).as_ref(), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn error_messages_quote_the_input() {
        let err = parse_duration("5x").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown unit \"x\" in duration \"5x\" (valid units: ns, us, ms, s, m, h)"
        );
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_secs(20), "20s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (ms(500), "500ms"),
            (ms(1500), "1.5s"),
            (Duration::from_micros(10), "10µs"),
            (Duration::from_nanos(7), "7ns"),
        ];
        for (duration, want) in cases {
            assert_eq!(&format_duration(*duration), want);
            assert_eq!(parse_duration(want).as_ref(), Ok(duration));
        }
    }
}
