//! Points in time on the command line (`postern audit --since/--until`): a
//! duration back from now (`90s`, `15m`, `1h`, `2d`, `1w`) or an RFC 3339
//! timestamp (`2026-03-01T09:30:00Z`, `…+02:00`, or a date, midnight UTC).

/// Unix milliseconds for `text`, relative to `now_ms` for durations.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is neither a duration back from now (30s, 15m, 1h, 2d, 1w) nor an RFC 3339 time (2026-03-01T09:30:00Z)"
        )
    };
    if let Some(unit) = text.chars().last().filter(char::is_ascii_alphabetic)
        && text[..text.len() - 1].chars().all(|c| c.is_ascii_digit())
        && text.len() > 1
    {
        let amount: i64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        let unit_ms = match unit {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        return amount
            .checked_mul(unit_ms)
            .map(|ago| now_ms - ago)
            .ok_or_else(bad);
    }
    rfc3339(text).ok_or_else(bad)
}

fn number(text: &str, digits: usize) -> Option<i64> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn rfc3339(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year = number(parts.next()?, 4)?;
    let month = number(parts.next()?, 2)?;
    let day = number(parts.next()?, 2)?;
    if parts.next().is_some() || !(1..=12).contains(&month) || day < 1 || day > days_in(year, month)
    {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    let Some(time) = time else {
        return Some(ms);
    };
    // The offset: Z, or ±HH:MM.
    let (clock, offset_ms) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = offset[1..].split_once(':')?;
        let (hours, minutes) = (number(hours, 2)?, number(minutes, 2)?);
        if hours > 23 || minutes > 59 {
            return None;
        }
        (clock, sign * (hours * 60 + minutes) * 60_000)
    };
    let (whole, fraction) = match clock.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (clock, None),
    };
    let mut hms = whole.split(':');
    let hour = number(hms.next()?, 2)?;
    let minute = number(hms.next()?, 2)?;
    let second = number(hms.next()?, 2)?;
    if hms.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    ms += ((hour * 60 + minute) * 60 + second) * 1000;
    if let Some(fraction) = fraction {
        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let millis: String = fraction.chars().chain("00".chars()).take(3).collect();
        ms += millis.parse::<i64>().ok()?;
    }
    Some(ms - offset_ms)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 1_800_000_000_000;
        let cases = [
            ("90s", Some(now - 90_000)),
            ("15m", Some(now - 900_000)),
            ("1h", Some(now - 3_600_000)),
            ("2d", Some(now - 172_800_000)),
            ("1w", Some(now - 604_800_000)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2024-02-29T12:34:56Z", Some(1_709_210_096_000)),
            ("2024-02-29T12:34:56.789Z", Some(1_709_210_096_789)),
            ("2024-02-29T12:34:56.7Z", Some(1_709_210_096_700)),
            ("2024-02-29T14:34:56+02:00", Some(1_709_210_096_000)),
            ("2024-02-29T07:04:56-05:30", Some(1_709_210_096_000)),
            ("2024-02-29", Some(1_709_164_800_000)),
            ("1969-12-31T23:59:59Z", Some(-1000)),
            ("1h30m", None),
            ("h", None),
            ("5y", None),
            ("", None),
            ("2023-02-29", None),
            ("2024-13-01T00:00:00Z", None),
            ("2024-01-01T24:00:00Z", None),
            ("2024-01-01T10:00:00", None),
            ("2024-01-01T10:00Z", None),
            ("yesterday", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_time(text, now).ok(), expected, "{text}");
        }
        assert!(parse_time("soon", now).unwrap_err().contains("RFC 3339"));
    }
}
