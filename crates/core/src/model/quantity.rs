//! Kubernetes resource quantities: the text as written, and an exact value for comparison.
//!
//! The text is kept in k8s-openapi's `Quantity`. Comparison needs a number, and going through
//! `f64` (as some crates do) makes `1.1Gi` vs `1181116006.4` and long decimals compare wrongly,
//! so values are parsed into an exact decimal: `mantissa × 10^exponent`.

use std::cmp::Ordering;
use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Deserializer};

/// A quantity as written in the manifest. The API server accepts a JSON number as well as a
/// string (YAML `memory: 1024`), so both deserialize; the number keeps its JSON spelling.
/// The value is parsed once, when read: several rules compare the same quantities.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityText {
    text: Quantity,
    value: Result<ParsedQuantity, QuantityError>,
}

impl QuantityText {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let value = ParsedQuantity::parse(&text);
        QuantityText {
            text: Quantity(text),
            value,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text.0
    }

    /// The value, or why the text is not a quantity.
    pub fn parse(&self) -> Result<ParsedQuantity, QuantityError> {
        self.value.clone()
    }
}

impl fmt::Display for QuantityText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextOrNumber;
        impl serde::de::Visitor<'_> for TextOrNumber {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity (a string such as \"2Gi\" or a number)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
                Ok(v)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
                Ok(v.to_string())
            }
        }
        let text = deserializer.deserialize_any(TextOrNumber)?;
        Ok(QuantityText::new(text))
    }
}

/// Why a quantity does not parse, in the words the message shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("is empty")]
    Empty,
    #[error("has no digits")]
    NoDigits,
    #[error("is not a number")]
    BadNumber,
    #[error(
        "has an unknown suffix {0:?} (use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent)"
    )]
    BadSuffix(String),
    #[error("has an exponent out of range")]
    ExponentOutOfRange,
}

/// An exact quantity value: `(-1)^negative × mantissa × 10^exponent`, normalised so that the
/// mantissa has no trailing zeros (zero is `0 × 10^0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedQuantity {
    negative: bool,
    mantissa: u128,
    exponent: i32,
}

/// u128 holds every 38-digit number; digits past that are dropped (relative error < 1e-37).
const MAX_DIGITS: usize = 38;

impl ParsedQuantity {
    pub const ZERO: ParsedQuantity = ParsedQuantity {
        negative: false,
        mantissa: 0,
        exponent: 0,
    };

    /// Parses the Kubernetes grammar: `[+-]` digits `[.digits]` then a suffix (`Ki`…`Ei`,
    /// `n u m "" k M G T P E`, or `e`/`E` and a signed integer).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        if text.is_empty() {
            return Err(QuantityError::Empty);
        }
        let (negative, rest) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest
            .bytes()
            .position(|b| !(b.is_ascii_digit() || b == b'.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((int, frac)) => (int, frac),
            None => (number, ""),
        };
        if frac_part.contains('.') {
            return Err(QuantityError::BadNumber);
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(QuantityError::NoDigits);
        }

        let (mut mantissa, mut exponent) = digits_to_decimal(int_part, frac_part);
        let (binary_power, decimal_exponent) = suffix_scale(suffix)?;
        exponent = exponent
            .checked_add(decimal_exponent)
            .ok_or(QuantityError::ExponentOutOfRange)?;
        if binary_power > 0 {
            let factor = 1u128 << binary_power;
            loop {
                match mantissa.checked_mul(factor) {
                    Some(product) => {
                        mantissa = product;
                        break;
                    }
                    None => {
                        mantissa /= 10;
                        exponent = exponent
                            .checked_add(1)
                            .ok_or(QuantityError::ExponentOutOfRange)?;
                    }
                }
            }
        }
        Self::normalised(negative, mantissa, exponent).ok_or(QuantityError::ExponentOutOfRange)
    }

    /// `None` when dropping the trailing zeros takes the exponent past `i32`.
    fn normalised(negative: bool, mut mantissa: u128, mut exponent: i32) -> Option<Self> {
        if mantissa == 0 {
            return Some(Self::ZERO);
        }
        // u128 division is a library call; most mantissas fit u64, where it is one instruction.
        while let Ok(small) = u64::try_from(mantissa)
            && small.is_multiple_of(10)
        {
            mantissa = u128::from(small / 10);
            exponent = exponent.checked_add(1)?;
        }
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exponent = exponent.checked_add(1)?;
        }
        Some(ParsedQuantity {
            negative,
            mantissa,
            exponent,
        })
    }

    /// A whole number of units, for CPU counts written as integers.
    pub fn from_integer(value: u64) -> Self {
        Self::normalised(false, u128::from(value), 0).expect("at most 20 trailing zeros")
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// `value × 10^exponent` (`from_scaled(250, -3)` is `250m`): how computed amounts, kept as
    /// integers of a unit (bytes, nanocores), become quantities again. `None` only when the
    /// exponent overflows.
    pub fn from_scaled(value: u128, exponent: i32) -> Option<Self> {
        Self::normalised(false, value, exponent)
    }

    /// The value as a whole number of `10^exponent` units, rounded up, as Kubernetes' own
    /// `Value()` (exponent 0) and `MilliValue()` (-3) do. `None` for a negative value or one
    /// that does not fit.
    pub fn ceil_scaled(&self, exponent: i32) -> Option<u128> {
        if self.negative {
            return None;
        }
        if self.mantissa == 0 {
            return Some(0);
        }
        let shift = i64::from(self.exponent) - i64::from(exponent);
        if shift >= 0 {
            return 10u128
                .checked_pow(u32::try_from(shift).ok()?)
                .and_then(|factor| self.mantissa.checked_mul(factor));
        }
        // Dividing by more than 10^38 leaves a non-zero mantissa below one unit: it rounds to 1.
        let Some(divisor) = u32::try_from(-shift)
            .ok()
            .and_then(|d| 10u128.checked_pow(d))
        else {
            return Some(1);
        };
        Some(self.mantissa.div_ceil(divisor))
    }

    /// Sum of two non-negative quantities (resource totals); `None` if either is negative.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        if self.negative || other.negative {
            return None;
        }
        if self.mantissa == 0 {
            return Some(other);
        }
        if other.mantissa == 0 {
            return Some(self);
        }
        let exponent = self.exponent.min(other.exponent);
        let a = scale_up(self.mantissa, self.exponent, exponent)?;
        let b = scale_up(other.mantissa, other.exponent, exponent)?;
        Self::normalised(false, a.checked_add(b)?, exponent)
    }

    /// `self − other` for non-negative values with `other <= self` (what is left of a quota);
    /// `None` otherwise, or when the two cannot be aligned.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        if self.negative || other.negative || other > self {
            return None;
        }
        if other.mantissa == 0 {
            return Some(self);
        }
        let exponent = self.exponent.min(other.exponent);
        let a = scale_up(self.mantissa, self.exponent, exponent)?;
        let b = scale_up(other.mantissa, other.exponent, exponent)?;
        Self::normalised(false, a - b, exponent)
    }

    /// Compare magnitudes (both non-negative).
    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        match (self.mantissa, other.mantissa) {
            (0, 0) => return Ordering::Equal,
            (0, _) => return Ordering::Less,
            (_, 0) => return Ordering::Greater,
            _ => {}
        }
        // The common case (`4Gi` against `128Gi`): same exponent, the mantissas decide.
        if self.exponent == other.exponent {
            return self.mantissa.cmp(&other.mantissa);
        }
        // Order of magnitude first: digits + exponent.
        let magnitude = |q: &Self| digit_count(q.mantissa) as i64 + i64::from(q.exponent);
        match magnitude(self).cmp(&magnitude(other)) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        // Same magnitude: align exponents; the scaled mantissa has at most as many digits as
        // the other one, so this cannot overflow.
        let exponent = self.exponent.min(other.exponent);
        let a = scale_up(self.mantissa, self.exponent, exponent);
        let b = scale_up(other.mantissa, other.exponent, exponent);
        match (a, b) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => Ordering::Equal,
        }
    }
}

impl PartialOrd for ParsedQuantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ParsedQuantity {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl fmt::Display for ParsedQuantity {
    /// Plain decimal notation, for messages (`1073741824`, `0.5`); scientific notation
    /// (`1e2147483647`) past 40 zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        let digits = self.mantissa.to_string();
        // Past this many zeros, scientific notation: `1e2147483647` is a valid quantity, and
        // written out in full it would be gigabytes of zeros in a one-line message.
        const PLAIN_ZEROS: usize = 40;
        let shift = self.exponent.unsigned_abs() as usize;
        if (self.exponent > 0 && shift > PLAIN_ZEROS)
            || (self.exponent < 0 && shift > digits.len() + PLAIN_ZEROS)
        {
            return write!(f, "{digits}e{}", self.exponent);
        }
        if self.exponent >= 0 {
            write!(f, "{digits}{}", "0".repeat(self.exponent as usize))
        } else {
            if shift >= digits.len() {
                write!(f, "0.{}{digits}", "0".repeat(shift - digits.len()))
            } else {
                let (int, frac) = digits.split_at(digits.len() - shift);
                write!(f, "{int}.{frac}")
            }
        }
    }
}

fn digit_count(value: u128) -> u32 {
    value.checked_ilog10().unwrap_or(0) + 1
}

/// `mantissa × 10^exponent` as a multiple of `10^to` (`to <= exponent`), if it fits.
fn scale_up(mantissa: u128, exponent: i32, to: i32) -> Option<u128> {
    let by = i64::from(exponent) - i64::from(to);
    10u128
        .checked_pow(u32::try_from(by).ok()?)
        .and_then(|factor| mantissa.checked_mul(factor))
}

/// Turns `int.frac` digits into (mantissa, exponent), keeping at most `MAX_DIGITS`
/// significant digits.
fn digits_to_decimal(int_part: &str, frac_part: &str) -> (u128, i32) {
    let mut mantissa: u128 = 0;
    let mut exponent: i32 = 0;
    let mut significant = 0usize;
    for (index, byte) in int_part.bytes().chain(frac_part.bytes()).enumerate() {
        let in_fraction = index >= int_part.len();
        let digit = u128::from(byte - b'0');
        if significant < MAX_DIGITS {
            mantissa = mantissa * 10 + digit;
            if mantissa != 0 {
                significant += 1;
            }
            if in_fraction {
                exponent -= 1;
            }
        } else if !in_fraction {
            // Integer digits past the precision still count as magnitude.
            exponent += 1;
        }
    }
    (mantissa, exponent)
}

/// The suffix as (power of two, power of ten).
fn suffix_scale(suffix: &str) -> Result<(u32, i32), QuantityError> {
    let scale = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .filter(|rest| {
                    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                })
                .ok_or_else(|| QuantityError::BadSuffix(suffix.to_string()))?;
            let value: i32 = exponent
                .parse()
                .map_err(|_| QuantityError::ExponentOutOfRange)?;
            (0, value)
        }
    };
    Ok(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> ParsedQuantity {
        ParsedQuantity::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_every_suffix_exactly() {
        assert_eq!(q("2Gi").to_string(), "2147483648");
        assert_eq!(q("500m").to_string(), "0.5");
        assert_eq!(q("1.5").to_string(), "1.5");
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1E3"), q("1k"));
        assert_eq!(q("1E").to_string(), "1000000000000000000");
        assert_eq!(q("1Ei").to_string(), "1152921504606846976");
        assert_eq!(q("100n").to_string(), "0.0000001");
        assert_eq!(q("3u"), q("0.000003"));
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("5."), q("5"));
        assert_eq!(q("+1"), q("1"));
        assert_eq!(q("0Gi"), ParsedQuantity::ZERO);
        assert_eq!(q("1.5e-3"), q("1500u"));
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in [
            "", "Gi", "2GB", "2 Gi", "1.2.3", "abc", "1K", "1e", "1e+", "2gi", "0x10", "-",
        ] {
            assert!(
                ParsedQuantity::parse(bad).is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn compares_exactly_across_suffixes() {
        assert!(q("1Gi") > q("1G"));
        assert!(q("1024Mi") == q("1Gi"));
        assert!(q("1.1Gi") > q("1181116006"));
        assert!(q("1.1Gi") < q("1181116007"));
        assert!(q("1.1Gi") == q("1181116006.4"));
        assert!(q("999m") < q("1"));
        assert!(q("-1") < q("0"));
        assert!(q("-2") < q("-1"));
        assert!(q("0.000000000000000000001") > ParsedQuantity::ZERO);
        assert!(q("123456789012345678901234567890") > q("123456789012345678901234567889"));
    }

    #[test]
    fn normalises_alike_on_both_sides_of_u64() {
        // 1e20 and 1e30 have mantissas past u64 before their trailing zeros are dropped.
        assert_eq!(q("100000000000000000000"), q("1e20"));
        assert_eq!(q("1000000000000000000000000000000"), q("1e30"));
        assert_eq!(q("18446744073709551620"), q("1844674407370955162e1"));
        assert_eq!(q("1Ei").to_string(), "1152921504606846976");
        assert!(q("18446744073709551616") > q("18446744073709551615"));
        assert!(q("99999999999999999999") < q("1e20"));
        assert!(q("1e20") < q("100000000000000000001"));
    }

    #[test]
    fn extreme_exponents_neither_overflow_nor_print_gigabytes() {
        // 10e2147483647 is 1e2147483648: past i32, so out of range rather than an overflow.
        assert_eq!(
            ParsedQuantity::parse("10e2147483647"),
            Err(QuantityError::ExponentOutOfRange)
        );
        let huge = q("1e2147483647");
        let tiny = q("1e-2147483648");
        assert!(huge > q("8Ei") && tiny < q("1n") && tiny > ParsedQuantity::ZERO);
        assert_eq!(huge.to_string(), "1e2147483647");
        assert_eq!(tiny.to_string(), "1e-2147483648");
        assert_eq!(q("-15e100").to_string(), "-15e100");
        assert_eq!(huge.checked_add(tiny), None);
        assert_eq!(huge.checked_add(huge), Some(q("2e2147483647")));
    }

    #[test]
    fn adds_non_negative_values() {
        assert_eq!(q("1Gi").checked_add(q("512Mi")), Some(q("1.5Gi")));
        assert_eq!(q("500m").checked_add(q("1")), Some(q("1.5")));
        assert_eq!(q("-1").checked_add(q("1")), None);
    }

    #[test]
    fn subtracts_what_is_no_larger() {
        assert_eq!(q("8Gi").checked_sub(q("7.5Gi")), Some(q("512Mi")));
        assert_eq!(q("2").checked_sub(q("250m")), Some(q("1750m")));
        assert_eq!(q("1Gi").checked_sub(q("1Gi")), Some(ParsedQuantity::ZERO));
        assert_eq!(q("1Gi").checked_sub(q("0")), Some(q("1Gi")));
        assert_eq!(q("1").checked_sub(q("2")), None);
        assert_eq!(q("-1").checked_sub(q("-2")), None);
    }

    #[test]
    fn scaled_values_round_up_as_kubernetes_does() {
        assert_eq!(q("2Gi").ceil_scaled(0), Some(2_147_483_648));
        assert_eq!(q("100.5").ceil_scaled(0), Some(101));
        assert_eq!(q("500m").ceil_scaled(0), Some(1));
        assert_eq!(q("500m").ceil_scaled(-3), Some(500));
        assert_eq!(q("1").ceil_scaled(-9), Some(1_000_000_000));
        assert_eq!(q("1n").ceil_scaled(3), Some(1));
        assert_eq!(q("1e-2147483648").ceil_scaled(0), Some(1));
        assert_eq!(q("0").ceil_scaled(0), Some(0));
        assert_eq!(q("-1").ceil_scaled(0), None);
        assert_eq!(q("1e100").ceil_scaled(0), None);
        assert_eq!(
            ParsedQuantity::from_scaled(333_333_334, -9),
            Some(q("333333334n"))
        );
        assert_eq!(
            ParsedQuantity::from_scaled(0, -9),
            Some(ParsedQuantity::ZERO)
        );
    }

    #[test]
    fn numbers_deserialize_as_quantities() {
        let text: QuantityText = serde_json::from_str("1024").unwrap();
        assert_eq!(text.as_str(), "1024");
        let text: QuantityText = serde_json::from_str("1.5").unwrap();
        assert_eq!(text.parse().unwrap(), q("1.5"));
        assert!(serde_json::from_str::<QuantityText>("true").is_err());
    }
}
