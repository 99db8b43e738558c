//! Time: every timestamp is stored as milliseconds since the Unix epoch (UTC) and rendered
//! as RFC 3339 with milliseconds (`2026-11-27T17:43:40.123Z`). One format everywhere.

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC rendering of `ms` (civil-from-days, H. Hinnant's algorithm). Every post,
/// comment and author in a response carries a few, so years 0-9999 are written digit by
/// digit (`format!` with padding cost ~20× more); others keep `format!`'s rendering.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z");
    }
    // Every value is in range here (0 <= y <= 9999, the others by construction), so each
    // digit is `b'0' + (0..=9)`.
    let digit = |v: i64| char::from(b'0' + (v % 10) as u8);
    let mut out = String::with_capacity(24);
    for (v, width, sep) in [
        (y, 4, '-'),
        (m, 2, '-'),
        (d, 2, 'T'),
        (hh, 2, ':'),
        (mm, 2, ':'),
        (ss, 2, '.'),
        (millis, 3, 'Z'),
    ] {
        for place in (0..width).rev() {
            out.push(digit(v / 10_i64.pow(place)));
        }
        out.push(sep);
    }
    out
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an ISO-8601 / RFC 3339 instant into ms since the epoch: `YYYY-MM-DD`, optionally
/// followed by `T` (or a space, the reference's SQLite format) and `HH:MM[:SS[.fff]]`,
/// optionally followed by `Z` or `±HH:MM` (no offset = UTC). `None` if it is not one.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let (y, mo, d) = (dp.next()?, dp.next()?, dp.next()?);
    if dp.next().is_some() || y.len() != 4 || mo.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, mo, d) = (digits(y)?, digits(mo)?, digits(d)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    let Some(rest) = rest else {
        return Some(ms);
    };
    let (time, offset_ms) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, off) = (&rest[..i], &rest[i + 1..]);
        let (oh, om) = off.split_once(':').unwrap_or((off, "00"));
        if oh.len() != 2 || om.len() != 2 {
            return None;
        }
        let (oh, om) = (digits(oh)?, digits(om)?);
        if oh > 23 || om > 59 {
            return None;
        }
        let sign = if rest.as_bytes()[i] == b'+' { 1 } else { -1 };
        (t, sign * (oh * 3_600_000 + om * 60_000))
    } else {
        (rest, 0)
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut tp = hms.split(':');
    let (h, mi) = (tp.next()?, tp.next()?);
    let sec = tp.next().unwrap_or("00");
    if tp.next().is_some() || h.len() != 2 || mi.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (h, mi, sec) = (digits(h)?, digits(mi)?, digits(sec)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let frac_ms = if frac.is_empty() {
        if time.ends_with('.') {
            return None;
        }
        0
    } else {
        digits(frac)?;
        let mut f: String = frac.chars().take(3).collect();
        while f.len() < 3 {
            f.push('0');
        }
        digits(&f)?
    };
    ms += h * 3_600_000 + mi * 60_000 + sec * 1000 + frac_ms;
    Some(ms - offset_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iso8601() {
        for ms in [0, 1_795_797_811_094, 951_782_400_000, -86_400_000] {
            assert_eq!(parse_iso8601(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_iso8601("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_iso8601("1970-01-01 00:00:01"), Some(1000));
        assert_eq!(parse_iso8601("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_iso8601("1970-01-01T00:00:00.5-00:30"),
            Some(1_800_500)
        );
        for bad in [
            "",
            "abc",
            "2026-13-01",
            "2026-02-30",
            "2026-01-01T25:00",
            "12345",
            "2026-01-01T",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn renders_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_797_811_094), "2026-11-27T16:43:31.094Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        // Outside years 0-9999, `format!`'s rendering.
        assert_eq!(rfc3339(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-62_167_219_200_001), "-001-12-31T23:59:59.999Z");
    }

    proptest::proptest! {
        /// The digit-by-digit rendering is `format!`'s, and parses back to the instant.
        #[test]
        fn renders_as_format_would(ms in -62_167_219_200_000i64..253_402_300_800_000) {
            let s = rfc3339(ms);
            let secs = ms.div_euclid(1000);
            let sod = secs.rem_euclid(86_400);
            let date = &s[..10];
            let expected = format!(
                "{date}T{:02}:{:02}:{:02}.{:03}Z",
                sod / 3600,
                (sod % 3600) / 60,
                sod % 60,
                ms.rem_euclid(1000)
            );
            proptest::prop_assert_eq!(&s, &expected);
            proptest::prop_assert_eq!(parse_iso8601(&s), Some(ms));
        }
    }
}
