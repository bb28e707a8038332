//! RFC 3339 timestamps at millisecond precision (`2025-10-07T10:30:00.000Z`):
//! written, and read back strictly (UTC, at most three fractional digits).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats `t` as RFC 3339 UTC with exactly three fractional digits and a `Z`.
/// Sub-millisecond digits are cut off, never rounded, so a value stored at
/// millisecond precision always prints the same.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339_millis(&mut out, t);
    out
}

/// Like [`rfc3339_millis`], appending to `out`.
pub fn write_rfc3339_millis(out: &mut String, t: SystemTime) {
    // Times before 1970 cannot come from this system's clock or its database default,
    // but keep them exact anyway by flooring towards minus infinity.
    let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_millis()),
        Err(e) => {
            let d = e.duration();
            let whole = d.as_secs() as i64 + i64::from(d.subsec_nanos() > 0);
            let rest = Duration::from_secs(whole as u64) - d;
            (-whole, rest.subsec_millis())
        }
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
}

/// Reads `YYYY-MM-DDTHH:MM:SS` with an optional fraction of one to three
/// digits and a `Z`: an RFC 3339 time in UTC that millisecond precision keeps
/// exactly. Anything else is None: another offset, a lower-case `t` or `z`, a
/// space for the `T`, more fractional digits, a leap second, a day the month
/// does not have.
pub fn parse_rfc3339_utc(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let digits = |from: usize, to: usize| -> Option<u64> {
        let part = b.get(from..to)?;
        part.iter().try_fold(0u64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let (hour, minute, second) = (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?);
    let millis = match b.get(19..)? {
        b"Z" => 0,
        [b'.', fraction @ .., b'Z'] if (1..=3).contains(&fraction.len()) => {
            let n = digits(20, 20 + fraction.len())?;
            n * 10u64.pow(3 - fraction.len() as u32)
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    let secs = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64;
    let since_epoch = Duration::from_secs(secs.unsigned_abs());
    let whole = if secs >= 0 {
        UNIX_EPOCH.checked_add(since_epoch)?
    } else {
        UNIX_EPOCH.checked_sub(since_epoch)?
    };
    whole.checked_add(Duration::from_millis(millis))
}

/// A proleptic Gregorian (year, month, day) to days since 1970-01-01 (Howard
/// Hinnant's `days_from_civil`, the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> String {
        rfc3339_millis(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_759_833_000, 0), "2025-10-07T10:30:00.000Z");
        assert_eq!(at(951_782_400, 999_999_999), "2000-02-29T00:00:00.999Z");
        assert_eq!(at(4_107_542_399, 5_000_000), "2100-02-28T23:59:59.005Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn truncates_below_a_millisecond() {
        assert_eq!(at(1, 1_999_999), "1970-01-01T00:00:01.001Z");
    }

    #[test]
    fn parses_what_it_writes_and_nothing_looser() {
        for secs in [0, 951_782_400, 1_759_833_000, 4_107_542_399, 253_402_300_799] {
            for millis in [0, 5, 999] {
                let t = UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis);
                assert_eq!(parse_rfc3339_utc(&rfc3339_millis(t)), Some(t), "{secs}.{millis}");
            }
        }
        for (sent, read) in [
            ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00.000Z"),
            ("2030-01-01T00:00:00.5Z", "2030-01-01T00:00:00.500Z"),
            ("2028-02-29T23:59:59.25Z", "2028-02-29T23:59:59.250Z"),
            ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(
                parse_rfc3339_utc(sent).map(rfc3339_millis).as_deref(),
                Some(read),
                "{sent}"
            );
        }
        for bad in [
            "",
            "2030-01-01",
            "2030-01-01T00:00:00",
            "2030-01-01T00:00:00+00:00",
            "2030-01-01T00:00:00+01:00",
            "2030-01-01t00:00:00Z",
            "2030-01-01T00:00:00z",
            "2030-01-01 00:00:00Z",
            "2030-01-01T00:00:00.Z",
            "2030-01-01T00:00:00.1234Z",
            "2030-01-01T00:00:60Z",
            "2030-01-01T24:00:00Z",
            "2030-01-01T00:60:00Z",
            "2030-13-01T00:00:00Z",
            "2030-00-01T00:00:00Z",
            "2030-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2030-04-31T00:00:00Z",
            "2030-01-00T00:00:00Z",
            "+2030-01-01T00:00:00Z",
            "2030-1-01T00:00:00Z",
            "2030-01-01T00:00:00Z ",
            " 2030-01-01T00:00:00Z",
            "2030-01-01T00:00:0xZ",
            "２030-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn handles_times_before_the_epoch() {
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_millis(1)),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_secs(86_400)),
            "1969-12-31T00:00:00.000Z"
        );
    }
}
