//! Proleptic Gregorian calendar of the demo generator: dates are days since 1970-01-01, as in
//! Arrow `Date32`.
//!
//! Pure integer arithmetic on synthetic dates: it must never read the system clock or time zone
//! (generated dates depend on the seed alone), and it never reads data or touches the network.

pub(super) const fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

pub(super) fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u32;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe as i32 + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

/// Completed years between two dates.
pub(super) fn age_at(birth: i32, day: i32) -> u32 {
    let (by, bm, bd) = civil_from_days(birth);
    let (y, m, d) = civil_from_days(day);
    let years = y - by - i32::from((m, d) < (bm, bd));
    years.max(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::data::stays::{STAY_END, STAY_START};

    #[test]
    fn calendar_round_trips() {
        for days in [-40_000, -1, 0, 1, 10_957, STAY_START, STAY_END, 19_782] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
            assert_eq!((date - epoch).num_days(), i64::from(days));
        }
        assert_eq!(
            age_at(days_from_civil(2000, 6, 15), days_from_civil(2024, 6, 14)),
            23
        );
        assert_eq!(
            age_at(days_from_civil(2000, 6, 15), days_from_civil(2024, 6, 15)),
            24
        );
    }
}
