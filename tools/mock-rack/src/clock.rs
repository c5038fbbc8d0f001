//! Deterministic time and ids: Go-style RFC 3339 timestamps, Convox-style `R…`/`B…` ids and pod
//! names, all derived from counters.
//!
//! Invariant: nothing here reads the system clock or a random source, so the same requests always
//! produce byte-identical responses (the workspace forbids `SystemTime::now` outside the gateway's
//! `Clock`, and tests compare bodies byte for byte).

use serde::{Serialize, Serializer};

/// 2026-01-01T00:00:00Z, the mock rack's "boot time"; tick `n` is `n` seconds later.
const EPOCH_UNIX: i64 = 1_767_225_600;

/// A Go `time.Time` as the rack serializes it: RFC 3339 with nanoseconds when non-zero, `Z` zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Time {
    /// Go's zero time, serialized as `0001-01-01T00:00:00Z` (spec §5).
    Zero,
    /// Seconds since the Unix epoch plus nanoseconds.
    At { secs: i64, nanos: u32 },
}

/// Hands out increasing ticks and per-kind ids.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    tick: i64,
    releases: u64,
    builds: u64,
    pods: u64,
}

// === impl Time ===

impl Time {
    /// Parses the SDK's "sortable" time layout `20060102.150405.000000000` (spec §1.3).
    pub(crate) fn parse_sortable(s: &str) -> Option<Time> {
        let b = s.as_bytes();
        if b.len() != 25 || b.get(8) != Some(&b'.') || b.get(15) != Some(&b'.') {
            return None;
        }
        let num = |from: usize, to: usize| -> Option<i64> {
            let part = s.get(from..to)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let (year, month, day) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
        let (hour, min, sec) = (num(9, 11)?, num(11, 13)?, num(13, 15)?);
        let nanos = u32::try_from(num(16, 25)?).ok()?;
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || min > 59
            || sec > 59
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(Time::At {
            secs: days * 86_400 + hour * 3_600 + min * 60 + sec,
            nanos,
        })
    }

    /// Formats like Go's `time.RFC3339Nano` in UTC (what `encoding/json` emits).
    pub(crate) fn rfc3339(&self) -> String {
        let (secs, nanos) = match *self {
            Time::Zero => return "0001-01-01T00:00:00Z".to_owned(),
            Time::At { secs, nanos } => (secs, nanos),
        };
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let mut out = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3_600,
            rem % 3_600 / 60,
            rem % 60
        );
        if nanos > 0 {
            let frac = format!("{nanos:09}");
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        out.push('Z');
        out
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

// === impl Clock ===

impl Clock {
    /// The next instant: one second after the previous one.
    pub(crate) fn now(&mut self) -> Time {
        self.tick += 1;
        Time::At {
            secs: EPOCH_UNIX + self.tick,
            nanos: 0,
        }
    }

    /// The next release id: `R` and nine capital letters (ten characters), like `structs.NewRelease`.
    pub(crate) fn release_id(&mut self) -> String {
        let n = self.releases;
        self.releases += 1;
        letters('R', n, 9, b'A')
    }

    /// The next build id: `B` and nine capital letters (ten characters), like `structs.NewBuild`.
    pub(crate) fn build_id(&mut self) -> String {
        let n = self.builds;
        self.builds += 1;
        letters('B', n, 9, b'A')
    }

    /// The next five-letter pod suffix, like Kubernetes' `generateName`.
    pub(crate) fn pod_suffix(&mut self) -> String {
        self.pods += 1;
        letters_only(self.pods, 5, b'a')
    }
}

/// `prefix` followed by `n` written in base 26 with `width` digits from `zero`.
fn letters(prefix: char, n: u64, width: usize, zero: u8) -> String {
    let mut out = String::with_capacity(width + 1);
    out.push(prefix);
    out.push_str(&letters_only(n, width, zero));
    out
}

fn letters_only(mut n: u64, width: usize, zero: u8) -> String {
    let mut digits = vec![zero; width];
    for slot in digits.iter_mut().rev() {
        // The remainder is below 26, so the cast cannot truncate.
        *slot = zero + (n % 26) as u8;
        n /= 26;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Howard Hinnant's `days_from_civil`: (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tick_is_one_second_after_the_epoch() {
        let mut clock = Clock::default();
        assert_eq!(clock.now().rfc3339(), "2026-01-01T00:00:01Z");
        assert_eq!(Time::Zero.rfc3339(), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn ids_count_in_base_26() {
        let mut clock = Clock::default();
        assert_eq!(clock.release_id(), "RAAAAAAAAA");
        assert_eq!(clock.release_id(), "RAAAAAAAAB");
        assert_eq!(clock.build_id(), "BAAAAAAAAA");
        assert_eq!(letters('R', 26, 9, b'A'), "RAAAAAAABA");
        assert_eq!(clock.pod_suffix(), "aaaab");
    }

    #[test]
    fn sortable_times_round_trip_through_rfc3339() {
        let t = Time::parse_sortable("20240229.235958.120000000").unwrap();
        assert_eq!(t.rfc3339(), "2024-02-29T23:59:58.12Z");
        assert_eq!(
            Time::parse_sortable("19700101.000000.000000000").unwrap(),
            Time::At { secs: 0, nanos: 0 }
        );
        assert!(Time::parse_sortable("2024-02-29").is_none());
        assert!(Time::parse_sortable("20241329.000000.000000000").is_none());
    }
}
