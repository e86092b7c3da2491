//! Parsing of Kubernetes resource quantities (`100m`, `1Gi`, `2.5`, `1e3`).
//!
//! The grammar is the API's (`<sign><digits>[.<digits>]<suffix>` with decimal SI suffixes
//! `n u m "" k M G T P E`, binary suffixes `Ki Mi Gi Ti Pi Ei`, or a decimal exponent
//! `e<int>` / `E<int>`). Conversions are exact (no floating point) and round away from zero
//! when the value has more precision than the unit asked for, as the reference's
//! `ScaledValue` does for the values a pod spec carries.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity in milli-units (cpu: millicores), rounded up as the reference does.
pub fn parse_milli(q: &Quantity) -> Result<i64, String> {
    to_i64(&q.0, 3)
}

/// A quantity in whole units (memory: bytes), rounded up.
pub fn parse_units(q: &Quantity) -> Result<i64, String> {
    to_i64(&q.0, 0)
}

/// A quantity in nano-units, wide enough to compare any two quantities exactly (the
/// reference rounds every parsed quantity up to nano precision).
pub(crate) fn parse_nano(q: &Quantity) -> Result<i128, String> {
    let parsed = Parsed::new(&q.0)?;
    parsed
        .scaled(9)
        .ok_or_else(|| format!("invalid quantity {:?}: value out of range", q.0))
}

fn to_i64(s: &str, shift: i64) -> Result<i64, String> {
    let parsed = Parsed::new(s)?;
    parsed
        .scaled(shift)
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| format!("invalid quantity {s:?}: value out of range"))
}

/// A parsed quantity: `(-1)^negative * digits * 10^exp10`, with binary suffixes already
/// multiplied into `digits`.
struct Parsed {
    negative: bool,
    /// Decimal digits, most significant first, no leading zeros (empty means zero).
    digits: Vec<u8>,
    exp10: i64,
}

impl Parsed {
    fn new(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid quantity {s:?}: {why}");
        let bytes = s.as_bytes();
        if bytes.is_empty() {
            return Err(bad("empty string"));
        }
        let mut pos = 0;
        let mut negative = false;
        match bytes[0] {
            b'-' => {
                negative = true;
                pos += 1;
            }
            b'+' => pos += 1,
            _ => {}
        }
        let int_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_digits = &bytes[int_start..pos];
        let mut frac_digits: &[u8] = &[];
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_digits = &bytes[frac_start..pos];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(bad("no digits"));
        }
        let suffix = &s[pos..];
        let (exp10, exp2) = interpret_suffix(suffix).ok_or_else(|| {
            bad(&format!(
                "unknown suffix {suffix:?} (want one of n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or e<exponent>)"
            ))
        })?;

        let mut digits: Vec<u8> = int_digits
            .iter()
            .chain(frac_digits)
            .map(|b| b - b'0')
            .skip_while(|d| *d == 0)
            .collect();
        for _ in 0..exp2 {
            double(&mut digits);
        }
        Ok(Self {
            negative,
            digits,
            exp10: exp10 - frac_digits.len() as i64,
        })
    }

    /// The value times `10^shift`, rounded away from zero; `None` when it does not fit.
    fn scaled(&self, shift: i64) -> Option<i128> {
        if self.digits.is_empty() {
            return Some(0);
        }
        let exp = self.exp10 + shift;
        let len = self.digits.len() as i64;
        // Integer part has len + exp digits; more than 39 cannot fit an i128.
        if len + exp > 39 {
            return None;
        }
        let (int_part, frac_nonzero) = if exp >= 0 {
            (&self.digits[..], false)
        } else {
            let keep = (len + exp).max(0) as usize;
            (
                &self.digits[..keep],
                self.digits[keep..].iter().any(|d| *d != 0),
            )
        };
        let mut value: i128 = 0;
        for d in int_part {
            value = value.checked_mul(10)?.checked_add(i128::from(*d))?;
        }
        for _ in 0..exp.max(0) {
            value = value.checked_mul(10)?;
        }
        if frac_nonzero {
            value = value.checked_add(1)?;
        }
        Some(if self.negative { -value } else { value })
    }
}

/// Decimal and binary exponents of a suffix, `None` if it is not a valid suffix.
fn interpret_suffix(suffix: &str) -> Option<(i64, u32)> {
    let decimal = match suffix {
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "" => Some(0),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(e) = decimal {
        return Some((e, 0));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(b) = binary {
        return Some((0, b));
    }
    let rest = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))?;
    let unsigned = rest
        .strip_prefix('-')
        .or_else(|| rest.strip_prefix('+'))
        .unwrap_or(rest);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The reference limits the exponent to an int32.
    let exp: i32 = rest.parse().ok()?;
    Some((i64::from(exp), 0))
}

/// Multiply a big-endian decimal digit vector by two in place.
fn double(digits: &mut Vec<u8>) {
    let mut carry = 0u8;
    for d in digits.iter_mut().rev() {
        let v = *d * 2 + carry;
        *d = v % 10;
        carry = v / 10;
    }
    if carry > 0 {
        digits.insert(0, carry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn milli_values() {
        let cases = [
            ("100m", 100),
            ("0.1", 100),
            ("1", 1000),
            ("2.5", 2500),
            ("+2", 2000),
            ("-2", -2000),
            ("1k", 1_000_000),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("1e-3", 1),
            ("1.5e-3", 2),
            ("1n", 1),
            ("1u", 1),
            ("1000u", 1),
            ("1001u", 2),
            ("0.0001", 1),
            ("-0.0001", -1),
            ("0", 0),
            ("0m", 0),
            ("000.000", 0),
            (".5", 500),
            ("5.", 5000),
            ("1Ki", 1_024_000),
            ("0.5Ki", 512_000),
            ("1e+2", 100_000),
        ];
        for (input, want) in cases {
            assert_eq!(parse_milli(&q(input)), Ok(want), "{input}");
        }
    }

    #[test]
    fn unit_values() {
        let cases = [
            ("1Gi", 1_073_741_824),
            ("128Mi", 134_217_728),
            ("1.5Gi", 1_610_612_736),
            ("1G", 1_000_000_000),
            ("1M", 1_000_000),
            ("1T", 1_000_000_000_000),
            ("1P", 1_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("1Ei", 1_152_921_504_606_846_976),
            ("1Ti", 1_099_511_627_776),
            ("1Pi", 1_125_899_906_842_624),
            ("100m", 1),
            ("1500m", 2),
            ("0.1Ki", 103),
            ("1", 1),
            ("12e6", 12_000_000),
            ("1e1000000000", -1),
        ];
        for (input, want) in cases {
            if want < 0 {
                assert!(parse_units(&q(input)).is_err(), "{input} should overflow");
            } else {
                assert_eq!(parse_units(&q(input)), Ok(want), "{input}");
            }
        }
    }

    #[test]
    fn precision_beyond_sixty_four_bits_rounds_exactly() {
        // 7.999...9 Ei with 30 nines is just below 8Ei = 2^63: must round up to 2^63,
        // which overflows, rather than be truncated to something that fits.
        assert!(parse_units(&q("7.999999999999999999999999999999Ei")).is_err());
        assert_eq!(
            parse_units(&q("0.000000000000000000000000000001")),
            Ok(1),
            "any fraction rounds up"
        );
        assert_eq!(parse_units(&q("1e-1000000000")), Ok(1));
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(parse_units(&q("8Ei")).is_err());
        assert!(parse_units(&q("9223372036854775807")).is_ok());
        assert!(parse_units(&q("9223372036854775808")).is_err());
        assert!(parse_milli(&q("9223372036854776")).is_err());
    }

    #[test]
    fn bad_strings_are_named() {
        for input in [
            "",
            "abc",
            "1x",
            "1KI",
            "1ki",
            "1 Gi",
            "Gi",
            "1e",
            "1e3.5",
            "1.2.3",
            "--1",
            "1e99999999999",
            "-",
            ".",
            "1Gib",
            "1K",
        ] {
            let err = parse_milli(&q(input)).expect_err(input);
            assert!(err.contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn nano_compares_exactly() {
        assert_eq!(parse_nano(&q("1")), parse_nano(&q("1000m")));
        assert_eq!(parse_nano(&q("1Gi")), parse_nano(&q("1073741824")));
        assert_ne!(parse_nano(&q("1G")), parse_nano(&q("1Gi")));
        assert_eq!(parse_nano(&q("0.5n")), Ok(1));
    }
}
