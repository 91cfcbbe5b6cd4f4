//! Vectorised treatments on Arrow arrays: keyed pseudonyms and masks. NULL stays NULL.
//!
//! These are plain functions over arrays, applied by the engine inside its scan. They are
//! never registered as SQL functions: a caller who could call them by name could hash a
//! guess and re-identify.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
    StringBuilder,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int32Type, Int64Type};
use chrono::Datelike;

use super::domain::{PSEUDONYM_LEN, PseudonymDomain};

/// Why a treatment could not be applied (a type the policy check should have refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("treatment `{treatment}` does not apply to {data_type} columns")]
    Unsupported {
        treatment: &'static str,
        data_type: String,
    },
    #[error("a batch of {rows} rows is too large for one string column of pseudonyms")]
    TooLarge { rows: usize },
    #[error("internal error building the pseudonym column: {reason}")]
    Internal { reason: String },
}

fn unsupported(treatment: &'static str, data_type: &DataType) -> KernelError {
    KernelError::Unsupported {
        treatment,
        data_type: data_type.to_string(),
    }
}

/// Calls `f` with the bytes of each value (strings as is, integers in decimal), or `None`.
fn for_each_value(
    array: &dyn Array,
    treatment: &'static str,
    mut f: impl FnMut(Option<&[u8]>),
) -> Result<(), KernelError> {
    let mut digits = [0u8; 20];
    match array.data_type() {
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .for_each(|v| f(v.map(str::as_bytes))),
        DataType::LargeUtf8 => array
            .as_string::<i64>()
            .iter()
            .for_each(|v| f(v.map(str::as_bytes))),
        DataType::Utf8View => array
            .as_string_view()
            .iter()
            .for_each(|v| f(v.map(str::as_bytes))),
        DataType::Int32 => array
            .as_primitive::<Int32Type>()
            .iter()
            .for_each(|v| f(v.map(|n| decimal(i64::from(n), &mut digits)))),
        DataType::Int64 => array
            .as_primitive::<Int64Type>()
            .iter()
            .for_each(|v| f(v.map(|n| decimal(n, &mut digits)))),
        other => return Err(unsupported(treatment, other)),
    }
    Ok(())
}

/// Keyed pseudonyms of every value (22-character strings). NULL stays NULL.
///
/// Every pseudonym has the same width, so the output is one contiguous values buffer with
/// offsets `k * 22` (a NULL takes no byte) and the input's null buffer: no per-value
/// allocation, no builder.
pub fn pseudonymise(domain: &PseudonymDomain, array: &dyn Array) -> Result<ArrayRef, KernelError> {
    let nulls = array.nulls().filter(|n| n.null_count() > 0).cloned();
    let mut fill = FixedWidth::new(array.len(), nulls)?;
    let mut batch = domain.batch(std::mem::take(&mut fill.values));
    for_each_value(array, "pseudonymise", |value| {
        if let Some(bytes) = value {
            batch.push(bytes);
        }
    })?;
    fill.values = batch.finish();
    fill.finish()
}

/// The output of a fixed-width string kernel: `len` slots, the valid ones pushed in order.
struct FixedWidth {
    len: usize,
    nulls: Option<NullBuffer>,
    values: Vec<[u8; PSEUDONYM_LEN]>,
}

impl FixedWidth {
    fn new(len: usize, nulls: Option<NullBuffer>) -> Result<Self, KernelError> {
        let valid = len - nulls.as_ref().map_or(0, NullBuffer::null_count);
        // Offsets are i32: refuse (rather than wrap) a batch of more than 2 GiB of pseudonyms.
        if valid
            .checked_mul(PSEUDONYM_LEN)
            .is_none_or(|bytes| i32::try_from(bytes).is_err())
        {
            return Err(KernelError::TooLarge { rows: len });
        }
        Ok(Self {
            len,
            nulls,
            values: Vec::with_capacity(valid),
        })
    }

    fn finish(self) -> Result<ArrayRef, KernelError> {
        let nulls = self.nulls;
        let width = PSEUDONYM_LEN as i32;
        let mut offsets = Vec::with_capacity(self.len + 1);
        offsets.push(0i32);
        let mut end = 0i32;
        match &nulls {
            None => offsets.extend((1..=self.len as i32).map(|k| k * width)),
            Some(nulls) => {
                for valid in nulls.iter() {
                    if valid {
                        end += width;
                    }
                    offsets.push(end);
                }
            }
        }
        let values = Buffer::from_vec(self.values.into_flattened());
        // Offsets are 0, then non-decreasing multiples of 22 within `values` (checked in `new`).
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let array =
            StringArray::try_new(offsets, values, nulls).map_err(|e| KernelError::Internal {
                reason: e.to_string(),
            })?;
        Ok(Arc::new(array))
    }
}

/// `n` in decimal, as `write!("{n}")` would print it, into `buf` (20 bytes fit `i64::MIN`).
fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut rest = n.unsigned_abs();
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        start -= 1;
        buf[start] = b'-';
    }
    &buf[start..]
}

/// Text shown instead of a redacted value.
pub const REDACTED: &str = "***";

/// Every non-NULL value becomes `***`.
pub fn redact(array: &dyn Array) -> ArrayRef {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * REDACTED.len());
    for i in 0..array.len() {
        if array.is_null(i) {
            out.append_null();
        } else {
            out.append_value(REDACTED);
        }
    }
    Arc::new(out.finish())
}

/// `***` followed by the last `keep_last` characters; values no longer than `keep_last` are
/// fully masked (a short value must not be revealed whole). The length is not revealed.
pub fn partial(array: &dyn Array, keep_last: u8) -> Result<ArrayRef, KernelError> {
    let keep = usize::from(keep_last);
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * (REDACTED.len() + keep));
    let mut text = String::new();
    for_each_value(array, "partial", |value| match value {
        None => out.append_null(),
        Some(bytes) => {
            let s = std::str::from_utf8(bytes).unwrap_or_default();
            let count = s.chars().count();
            if count <= keep {
                out.append_value(REDACTED);
            } else {
                text.clear();
                text.push_str(REDACTED);
                let start = s
                    .char_indices()
                    .nth(count - keep)
                    .map_or(s.len(), |(i, _)| i);
                text.push_str(&s[start..]);
                out.append_value(&text);
            }
        }
    })?;
    Ok(Arc::new(out.finish()))
}

/// Dates generalised to the first day of their year (`month = false`) or month.
pub fn generalise_date(array: &dyn Array, month: bool) -> Result<ArrayRef, KernelError> {
    let DataType::Date32 = array.data_type() else {
        return Err(unsupported(
            if month { "month" } else { "year" },
            array.data_type(),
        ));
    };
    let out: Date32Array = array
        .as_primitive::<Date32Type>()
        .iter()
        .map(|v| {
            v.and_then(|days| {
                let date = Date32Type::to_naive_date_opt(days)?;
                let first = if month {
                    chrono::NaiveDate::from_ymd_opt(date.year(), date.month(), 1)
                } else {
                    chrono::NaiveDate::from_ymd_opt(date.year(), 1, 1)
                }?;
                Some(Date32Type::from_naive_date(first))
            })
        })
        .collect();
    Ok(Arc::new(out))
}

/// The département of a French postcode: `75001` → `75`, Corsica `20000`–`20199` → `2A` and
/// `20200`–`20699` → `2B`, overseas `971xx`–`976xx` → `971`…`976`, `98xxx` → `98`. Anything
/// that is not a 5-digit postcode becomes NULL (never passed through).
pub fn departement_of_postcode(code: &str) -> Option<&'static str> {
    let bytes = code.as_bytes();
    if bytes.len() != 5 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number: u32 = code.parse().ok()?;
    let prefix2 = number / 1000;
    Some(match prefix2 {
        0 => return None,
        20 => match number {
            20000..=20199 => "2A",
            20200..=20699 => "2B",
            _ => return None,
        },
        97 => match number / 100 {
            971 => "971",
            972 => "972",
            973 => "973",
            974 => "974",
            975 => "975",
            976 => "976",
            977 => "977",
            978 => "978",
            _ => return None,
        },
        98 => "98",
        n => DEPARTEMENTS.get(n as usize).copied().flatten()?,
    })
}

/// Two-digit département codes 01–95 (index = number).
const DEPARTEMENTS: [Option<&str>; 96] = {
    const CODES: [&str; 96] = [
        "00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14",
        "15", "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29",
        "30", "31", "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44",
        "45", "46", "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59",
        "60", "61", "62", "63", "64", "65", "66", "67", "68", "69", "70", "71", "72", "73", "74",
        "75", "76", "77", "78", "79", "80", "81", "82", "83", "84", "85", "86", "87", "88", "89",
        "90", "91", "92", "93", "94", "95",
    ];
    let mut out = [None; 96];
    let mut i = 1;
    while i < 96 {
        out[i] = Some(CODES[i]);
        i += 1;
    }
    out
};

/// Postcodes generalised to their département (see [`departement_of_postcode`]).
pub fn postcode_departement(array: &dyn Array) -> Result<ArrayRef, KernelError> {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 3);
    for_each_value(array, "departement", |value| {
        match value
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(departement_of_postcode)
        {
            Some(d) => out.append_value(d),
            None => out.append_null(),
        }
    })?;
    Ok(Arc::new(out.finish()))
}

/// Numbers rounded to the nearest multiple of `base` (halves away from zero); type kept.
pub fn round_to(array: &dyn Array, base: f64) -> Result<ArrayRef, KernelError> {
    let round = |x: f64| (x / base).round() * base;
    Ok(match array.data_type() {
        DataType::Float64 => Arc::new(
            array
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.map(round))
                .collect::<Float64Array>(),
        ),
        DataType::Int64 => Arc::new(
            array
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(|x| round(x as f64) as i64))
                .collect::<Int64Array>(),
        ),
        DataType::Int32 => Arc::new(
            array
                .as_primitive::<Int32Type>()
                .iter()
                .map(|v| v.map(|x| round(f64::from(x)) as i32))
                .collect::<Int32Array>(),
        ),
        other => return Err(unsupported("round", other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pseudonym::MasterKey;
    use arrow::array::{LargeStringArray, StringViewArray};
    use proptest::prelude::*;

    fn strings(values: &[Option<&str>]) -> StringArray {
        values.iter().copied().collect()
    }

    #[test]
    fn pseudonyms_keep_nulls_and_match_the_scalar_function() {
        let domain =
            PseudonymDomain::derive(&MasterKey::from_bytes([1; 32]), "projet-diabete", 1).unwrap();
        let input = strings(&[Some("1840375056123"), None, Some("2840375056123")]);
        let out = pseudonymise(&domain, &input).unwrap();
        let out = out.as_string::<i32>();
        assert_eq!(out.value(0), domain.pseudonymise("1840375056123"));
        assert!(out.is_null(1));
        assert_ne!(out.value(0), out.value(2));
        let ints = Int64Array::from(vec![Some(42), None]);
        let out = pseudonymise(&domain, &ints).unwrap();
        assert_eq!(out.as_string::<i32>().value(0), domain.pseudonymise("42"));
        assert!(pseudonymise(&domain, &Float64Array::from(vec![1.0])).is_err());
    }

    #[test]
    fn pseudonym_columns_are_fixed_width_for_every_input_type_and_keep_nulls() {
        let domain =
            PseudonymDomain::derive(&MasterKey::from_bytes([1; 32]), "projet-diabete", 1).unwrap();
        let values = [Some("1840375056123"), None, Some(" 2a004 "), None, Some("")];
        let expected: Vec<Option<String>> = values
            .iter()
            .map(|v| v.map(|s| domain.pseudonymise(s)))
            .collect();
        let check = |input: &dyn Array, expected: &[Option<String>]| {
            let out = pseudonymise(&domain, input).unwrap();
            let out = out.as_string::<i32>();
            assert_eq!(out.len(), expected.len());
            for (i, want) in expected.iter().enumerate() {
                match want {
                    Some(p) => assert_eq!(out.value(i), p, "{i}"),
                    None => assert!(out.is_null(i), "{i}"),
                }
            }
            let nulls = expected.iter().filter(|v| v.is_none()).count();
            assert_eq!(out.null_count(), nulls);
            assert_eq!(
                out.value_data().len(),
                (expected.len() - nulls) * PSEUDONYM_LEN
            );
        };
        check(&strings(&values), &expected);
        check(
            &values.iter().copied().collect::<LargeStringArray>(),
            &expected,
        );
        check(
            &values.iter().copied().collect::<StringViewArray>(),
            &expected,
        );
        // Slices keep their own nulls.
        check(&strings(&values).slice(1, 3), &expected[1..4]);
        check(
            &strings(&[Some("1"), Some("2")]),
            &[
                Some(domain.pseudonymise("1")),
                Some(domain.pseudonymise("2")),
            ],
        );
        check(&strings(&[]), &[]);
        check(&strings(&[None, None]), &[None, None]);
        let ints = [Some(i64::MIN), None, Some(-7), Some(0), Some(i64::MAX)];
        let expected: Vec<Option<String>> = ints
            .iter()
            .map(|v| v.map(|n| domain.pseudonymise(&n.to_string())))
            .collect();
        check(&Int64Array::from(ints.to_vec()), &expected);
        let ints = [Some(i32::MIN), None, Some(42), Some(i32::MAX)];
        let expected: Vec<Option<String>> = ints
            .iter()
            .map(|v| v.map(|n| domain.pseudonymise(&n.to_string())))
            .collect();
        check(&Int32Array::from(ints.to_vec()), &expected);
    }

    #[test]
    fn decimal_prints_like_display() {
        let mut buf = [0u8; 20];
        for n in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            1_840_375_056_123,
            i64::MIN,
            i64::MAX,
            i64::MIN + 1,
        ] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn postcodes_map_to_departements_including_corsica_and_overseas() {
        for (code, dep) in [
            ("75001", Some("75")),
            ("01000", Some("01")),
            ("20000", Some("2A")),
            ("20167", Some("2A")),
            ("20200", Some("2B")),
            ("20600", Some("2B")),
            ("97400", Some("974")),
            ("97133", Some("971")),
            ("97600", Some("976")),
            ("98000", Some("98")),
            ("00100", None),
            ("7500", None),
            ("75OO1", None),
            ("20900", None),
            ("97900", None),
        ] {
            assert_eq!(departement_of_postcode(code), dep, "{code}");
        }
    }

    proptest! {
        #[test]
        fn partial_never_reveals_more_than_the_last_characters(s in "\\PC{0,30}", keep in 1u8..8) {
            let out = partial(&strings(&[Some(&s)]), keep).unwrap();
            let masked = out.as_string::<i32>().value(0).to_string();
            prop_assert!(masked.starts_with(REDACTED));
            let shown = &masked[REDACTED.len()..];
            prop_assert!(shown.chars().count() <= usize::from(keep));
            prop_assert!(s.ends_with(shown));
            if s.chars().count() <= usize::from(keep) {
                prop_assert_eq!(shown, "");
            }
        }

        #[test]
        fn generalised_dates_are_the_first_day_and_idempotent(days in -20_000i32..40_000, month in any::<bool>()) {
            let input = Date32Array::from(vec![Some(days), None]);
            let once = generalise_date(&input, month).unwrap();
            let twice = generalise_date(once.as_ref(), month).unwrap();
            let once = once.as_primitive::<Date32Type>();
            prop_assert_eq!(once, twice.as_primitive::<Date32Type>());
            prop_assert!(once.is_null(1));
            let (orig, general) = (Date32Type::to_naive_date_opt(days).unwrap(), Date32Type::to_naive_date_opt(once.value(0)).unwrap());
            prop_assert_eq!(orig.year(), general.year());
            prop_assert!(general <= orig);
            prop_assert_eq!(general.day(), 1);
            if month { prop_assert_eq!(orig.month(), general.month()) } else { prop_assert_eq!(general.month(), 1) }
        }

        #[test]
        fn rounding_lands_on_a_multiple_within_half_a_base(x in -1.0e9f64..1.0e9, base in prop::sample::select(vec![1.0, 10.0, 100.0, 1000.0, 0.5])) {
            let out = round_to(&Float64Array::from(vec![Some(x), None]), base).unwrap();
            let r = out.as_primitive::<Float64Type>().value(0);
            prop_assert!((r - x).abs() <= base / 2.0 + 1e-6);
            prop_assert!(((r / base) - (r / base).round()).abs() < 1e-9);
            prop_assert!(out.is_null(1));
        }

        #[test]
        fn departement_is_a_prefix_or_corsica_or_null(code in "[0-9]{5}") {
            match departement_of_postcode(&code) {
                Some("2A") | Some("2B") => prop_assert!(code.starts_with("20")),
                Some(d) => prop_assert!(code.starts_with(d)),
                None => {}
            }
        }

        #[test]
        fn redaction_keeps_only_presence(values in prop::collection::vec(prop::option::of("\\PC{0,12}"), 0..20)) {
            let input: StringArray = values.iter().map(|v| v.as_deref()).collect();
            let out = redact(&input);
            let out = out.as_string::<i32>();
            for (i, v) in values.iter().enumerate() {
                prop_assert_eq!(out.is_null(i), v.is_none());
                if v.is_some() { prop_assert_eq!(out.value(i), REDACTED); }
            }
        }
    }
}
