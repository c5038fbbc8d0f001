//! Flood resistance: per-address request limits applied before anything is appended, and the
//! coalescing of unauthenticated denials into one `DenialsCounted` event per address, reason
//! and minute, so noise cannot flood the log. [`Flood`] holds both for the two listeners: the
//! rack proxy and the gateway API share one budget and one count per address.
//!
//! **Invariant:** both are pure: every method takes `now`, nothing reads a clock, and the state
//! is bounded (at most [`MAX_TRACKED`] addresses; beyond that the oldest are forgotten, which
//! can only let an old address in early, never lose a counted denial: those are drained first).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use events::event::Event;
use events::time::Timestamp;

/// How many addresses the limiter remembers.
pub const MAX_TRACKED: usize = 65_536;
/// The coalescing window of unauthenticated denials.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A token bucket per client address: `per_minute` requests, refilled continuously.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// Unauthenticated denials waiting to be recorded as counts.
#[derive(Debug, Default)]
pub struct DenialCounter {
    open: BTreeMap<(IpAddr, &'static str), Count>,
}

#[derive(Debug, Clone, Copy)]
struct Count {
    count: u64,
    first: Timestamp,
    last: Timestamp,
}

/// The limiter and the counter of one gateway, shared by its listeners. A poisoned lock refuses
/// (no request passes the limiter) rather than guessing.
#[derive(Debug)]
pub struct Flood {
    limiter: Mutex<RateLimiter>,
    denials: Mutex<DenialCounter>,
}

// === impl RateLimiter ===

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one request from `ip`'s bucket; `false` means over the limit (answer 429).
    pub fn allow(&mut self, ip: IpAddr, now: Timestamp) -> bool {
        let cap = f64::from(self.per_minute);
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&ip) {
            // Forget full buckets first: they carry no state worth keeping.
            self.buckets.retain(|_, b| b.tokens < cap);
            if self.buckets.len() >= MAX_TRACKED {
                self.buckets.clear();
            }
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let refill = now.since(b.at).as_secs_f64() * cap / 60.0;
        b.tokens = (b.tokens + refill).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

// === impl DenialCounter ===

impl DenialCounter {
    /// Counts one unauthenticated denial.
    pub fn note(&mut self, ip: IpAddr, reason: &'static str, now: Timestamp) {
        self.open
            .entry((ip, reason))
            .and_modify(|c| {
                c.count += 1;
                c.last = now;
            })
            .or_insert(Count {
                count: 1,
                first: now,
                last: now,
            });
    }

    /// The counts whose window has closed at `now` (or all of them when `flush`), as events.
    pub fn drain(&mut self, now: Timestamp, flush: bool) -> Vec<Event> {
        let due: Vec<(IpAddr, &'static str)> = self
            .open
            .iter()
            .filter(|(_, c)| flush || now.since(c.first) >= WINDOW)
            .map(|(k, _)| *k)
            .collect();
        due.into_iter()
            .filter_map(|k| self.open.remove(&k).map(|c| (k, c)))
            .map(|((ip, reason), c)| Event::DenialsCounted {
                ip: ip.to_string(),
                reason: reason.to_owned(),
                count: c.count,
                first: c.first,
                last: c.last,
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

// === impl Flood ===

impl Flood {
    pub fn new(per_minute: u32) -> Flood {
        Flood {
            limiter: Mutex::new(RateLimiter::new(per_minute)),
            denials: Mutex::new(DenialCounter::default()),
        }
    }

    /// Takes one request from `ip`'s budget; `false` means over the limit (answer 429).
    pub fn allow(&self, ip: IpAddr, now: Timestamp) -> bool {
        self.limiter.lock().is_ok_and(|mut l| l.allow(ip, now))
    }

    /// Counts one unauthenticated (or otherwise uncounted) refusal.
    pub fn count_denial(&self, ip: IpAddr, reason: &'static str, now: Timestamp) {
        if let Ok(mut d) = self.denials.lock() {
            d.note(ip, reason, now);
        }
    }

    /// The counts whose window has closed at `now` (all of them when `flush`), as events.
    pub fn drain(&self, now: Timestamp, flush: bool) -> Vec<Event> {
        match self.denials.lock() {
            Ok(mut d) => d.drain(now, flush),
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn a_bucket_allows_its_rate_and_refills() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let mut l = RateLimiter::new(60);
        let t0 = Timestamp(1_000 * SEC);
        assert_eq!((0..60).filter(|_| l.allow(ip, t0)).count(), 60);
        assert!(!l.allow(ip, t0));
        assert!(l.allow(other, t0), "limits are per address");
        assert!(
            l.allow(ip, Timestamp(t0.0 + SEC)),
            "one request per second refills"
        );
        assert!(!l.allow(ip, Timestamp(t0.0 + SEC)));
    }

    #[test]
    fn denials_are_coalesced_per_address_reason_and_minute() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let mut d = DenialCounter::default();
        let t0 = Timestamp(5_000 * SEC);
        for i in 0..1000 {
            d.note(ip, "missing_credentials", Timestamp(t0.0 + i));
        }
        d.note(ip, "malformed_token", t0);
        assert!(d.drain(Timestamp(t0.0 + 59 * SEC), false).is_empty());
        let events = d.drain(Timestamp(t0.0 + 60 * SEC), false);
        assert_eq!(events.len(), 2);
        assert!(events.iter().any(|e| matches!(
            e,
            Event::DenialsCounted { count: 1000, reason, first, last, .. }
                if reason == "missing_credentials" && *first == t0 && last.0 == t0.0 + 999
        )));
        assert!(d.is_empty());
    }
}
