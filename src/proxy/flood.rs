//! Flood resistance: per-address request limits applied before anything is appended, and the
//! coalescing of unauthenticated denials into one `DenialsCounted` event per address, reason
//! and minute, so noise cannot flood the log. [`Flood`] holds both for the two listeners: the
//! rack proxy and the gateway API share one budget and one count per address.
//!
//! Both count per *network*, not per address: an IPv4 address, or an IPv6 /64 (one host's or
//! one site's usual allocation, which a client can rotate through at will). An IPv4-mapped IPv6
//! address counts as its IPv4 address.
//!
//! A client with an IPv6 /48 holds 65,536 networks, so the limiter also holds each /48 (a
//! [`site`]) to [`NETWORKS_PER_SITE`] networks' budgets together, and counting each network's
//! denials on its own would let one client write tens of thousands of records a minute. The
//! counter keeps [`MAX_COUNTED`] networks apart; past that, a newcomer is counted under its
//! coarser prefix (an IPv6 /48, then /32, an IPv4 /16), and past [`MAX_COUNTED`] +
//! [`MAX_PREFIXES`] entries, under everyone (`::/0`).
//!
//! **Invariant:** both are pure: every method takes `now`, nothing reads a clock, and the state
//! is bounded. A limiter holds at most [`MAX_TRACKED`] networks; one that is full forgets the
//! buckets that have refilled and, if none has, refuses a new network rather than forgetting a
//! throttled one. The counter holds at most [`MAX_COUNTED`] + [`MAX_PREFIXES`] entries and one
//! `::/0` entry per reason, and counts every denial in one of them, so the log gets at most that
//! many events per window however many addresses a client sends from.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Duration;

use events::event::Event;
use events::time::Timestamp;

/// How many networks the limiter remembers.
pub const MAX_TRACKED: usize = 65_536;

/// How many networks the counter counts on their own at once: beyond, a newcomer is counted
/// under its [`Counted::folded`] prefix.
pub const MAX_COUNTED: usize = 256;

/// How many more entries (prefixes, in practice) the counter opens past [`MAX_COUNTED`] before
/// a newcomer is counted under `::/0`.
pub const MAX_PREFIXES: usize = 256;

/// The network `ip` is limited and counted as: itself for IPv4 (and IPv4-mapped IPv6), its /64
/// for IPv6.
pub fn network(ip: IpAddr) -> IpAddr {
    let ip = ip.to_canonical();
    masked(ip, network_prefix(ip))
}

/// How many networks' budgets one IPv6 site has together, of requests ([`RateLimiter`]) and of
/// open connections: a client rotating through the /64s of its /48 gets this many networks'
/// worth, not 65,536 of them.
pub const NETWORKS_PER_SITE: u32 = 4;

/// The IPv6 site (/48, what one customer is usually handed) of `ip`, held to
/// [`NETWORKS_PER_SITE`] networks' budgets together; none for IPv4 (and IPv4-mapped IPv6),
/// whose every address costs its holder.
pub fn site(ip: IpAddr) -> Option<IpAddr> {
    let ip = ip.to_canonical();
    ip.is_ipv6().then(|| masked(ip, 48))
}

/// The prefix length of a [`network`] of `ip`'s family: 32 for IPv4, 64 for IPv6.
fn network_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 64 }
}

/// `ip` with the bits past its first `prefix` cleared.
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    let prefix = u32::from(prefix);
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(
            v4.to_bits() & u32::MAX.checked_shl(32 - prefix).unwrap_or(0),
        )),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(
            v6.to_bits() & u128::MAX.checked_shl(128 - prefix).unwrap_or(0),
        )),
    }
}

/// Where a denial is counted: a [`network`], the prefix a network is folded into once the
/// counter is busy, or everyone (`::/0`, prefix length 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Counted {
    addr: IpAddr,
    prefix: u8,
}

/// The coalescing window of unauthenticated denials.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How far past a drain's time a count's first denial may be and still be an ordinary one, not
/// a sign of the clock stepped back: the drain reads the clock before it takes the counts, and
/// a denial noted between the two is a moment later.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// A token bucket per client network: `per_minute` requests, refilled continuously; and one
/// per IPv6 site, of [`NETWORKS_PER_SITE`] times that, which a request takes from too.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Buckets,
    sites: Buckets,
}

/// One limiter's buckets. A full table that a sweep could not make room in refuses newcomers
/// without sweeping again until the first of its buckets has refilled: while a flood of new
/// networks lasts, each would otherwise walk all [`MAX_TRACKED`] buckets under the limiter's
/// lock.
#[derive(Debug, Default)]
struct Buckets {
    map: HashMap<IpAddr, Bucket>,
    /// When the last sweep that freed nothing ran, and when its first bucket is full again.
    no_room: Option<(Timestamp, Timestamp)>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// Counts taken out of a [`DenialCounter`] to be recorded: [`Due::events`] to append, or
/// [`DenialCounter::restore`] when the append fails, so no count is lost.
#[derive(Debug, Default)]
pub struct Due(Vec<((Counted, &'static str), Count)>);

impl Due {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many `DenialsCounted` these are.
    pub fn summaries(&self) -> usize {
        self.0.len()
    }

    /// How many refusals they count.
    pub fn refusals(&self) -> u64 {
        self.0.iter().map(|(_, c)| c.count).sum()
    }

    /// One `DenialsCounted` per network and reason.
    pub fn events(&self) -> Vec<Event> {
        self.0
            .iter()
            .map(|((counted, reason), c)| Event::DenialsCounted {
                ip: counted.to_string(),
                reason: (*reason).to_owned(),
                count: c.count,
                first: c.first,
                last: c.last,
            })
            .collect()
    }
}

/// Unauthenticated denials waiting to be recorded as counts.
#[derive(Debug, Default)]
pub struct DenialCounter {
    open: BTreeMap<(Counted, &'static str), Count>,
}

#[derive(Debug, Clone, Copy)]
struct Count {
    count: u64,
    first: Timestamp,
    last: Timestamp,
}

/// How many connections a network may open a minute, in requests of its budget: a client
/// opens a connection for one request or more, so only one that opens connections it does not
/// use (a flood of TLS handshakes, a connect scan) ever meets this limit, and a client that
/// sends a request per connection meets the request limit's 429 first.
pub const CONNECTIONS_PER_REQUEST: u32 = 2;

/// The limiters and the counter of one gateway, shared by its listeners. A poisoned lock
/// refuses (no request or connection passes the limiter) rather than guessing.
#[derive(Debug)]
pub struct Flood {
    limiter: Mutex<RateLimiter>,
    connections: Mutex<RateLimiter>,
    denials: Mutex<DenialCounter>,
}

// === impl Counted ===

impl Counted {
    const EVERYONE: Counted = Counted {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        prefix: 0,
    };

    /// `ip`'s [`network`].
    pub fn network(ip: IpAddr) -> Counted {
        let addr = network(ip);
        Counted {
            addr,
            prefix: network_prefix(addr),
        }
    }

    /// Whether this is one network, not a prefix of many.
    fn is_network(self) -> bool {
        self.prefix == network_prefix(self.addr)
    }

    /// One step coarser: an IPv4 network's /16, an IPv6 network's /48 and a /48's /32 (one
    /// client may hold a whole /32), and anything coarser's everyone.
    pub fn folded(self) -> Counted {
        let to = match (self.addr, self.prefix) {
            (IpAddr::V4(_), p) if p > 16 => 16,
            (IpAddr::V6(_), p) if p > 48 => 48,
            (IpAddr::V6(_), p) if p > 32 => 32,
            _ => return Counted::EVERYONE,
        };
        Counted {
            addr: masked(self.addr, to),
            prefix: to,
        }
    }
}

/// A network as its address (`192.0.2.7`, `2001:db8:1:2::`), a prefix as `address/length`,
/// everyone as `::/0`.
impl std::fmt::Display for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_network() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

// === impl RateLimiter ===

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Buckets::default(),
            sites: Buckets::default(),
        }
    }

    /// Takes one request from the bucket of `ip`'s network and, for IPv6, of its site; `false`
    /// means over either limit (answer 429), and then neither is charged.
    pub fn allow(&mut self, ip: IpAddr, now: Timestamp) -> bool {
        let cap = f64::from(self.per_minute);
        let Some(network) = Self::with_one(&mut self.buckets, network(ip), cap, now) else {
            return false;
        };
        let site = match site(ip) {
            Some(site) => {
                let site_cap = cap * f64::from(NETWORKS_PER_SITE);
                let Some(bucket) = Self::with_one(&mut self.sites, site, site_cap, now) else {
                    return false;
                };
                Some(bucket)
            }
            None => None,
        };
        network.tokens -= 1.0;
        if let Some(site) = site {
            site.tokens -= 1.0;
        }
        true
    }

    /// `key`'s bucket of `cap`, refilled to `now`, if it holds a request; a new key gets a full
    /// bucket if the table has room. Holds at most [`MAX_TRACKED`] buckets: a full table
    /// forgets the buckets that have refilled (they carry no state worth keeping) and, if none
    /// has, refuses the newcomer rather than forgiving every throttled one.
    fn with_one(table: &mut Buckets, key: IpAddr, cap: f64, now: Timestamp) -> Option<&mut Bucket> {
        let buckets = &mut table.map;
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&key) {
            // Nothing can have refilled before then (a clock stepped back sweeps again).
            if table
                .no_room
                .is_some_and(|(swept, until)| swept <= now && now < until)
            {
                return None;
            }
            let mut first_full: Option<Timestamp> = None;
            buckets.retain(|_, b| {
                let level = b.tokens + now.since(b.at).as_secs_f64() * cap / 60.0;
                let keep = level < cap;
                if keep {
                    let full = now.plus(Duration::from_secs_f64((cap - level) * 60.0 / cap));
                    first_full = Some(first_full.map_or(full, |f| f.min(full)));
                }
                keep
            });
            if buckets.len() >= MAX_TRACKED {
                table.no_room = first_full.map(|until| (now, until));
                return None;
            }
            table.no_room = None;
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let refill = now.since(b.at).as_secs_f64() * cap / 60.0;
        b.tokens = (b.tokens + refill).min(cap);
        b.at = now;
        (b.tokens >= 1.0).then_some(b)
    }
}

// === impl DenialCounter ===

impl DenialCounter {
    /// Counts one unauthenticated denial, under its network, or a coarser [`Counted`] once
    /// many are counting. Denials noted on several threads may come a little out of their
    /// clocks' order: `first` and `last` are the earliest and the latest, whatever the order.
    pub fn note(&mut self, ip: IpAddr, reason: &'static str, now: Timestamp) {
        let counted = self.place(Counted::network(ip), reason);
        self.open
            .entry((counted, reason))
            .and_modify(|c| {
                c.count += 1;
                c.first = Timestamp(c.first.0.min(now.0));
                c.last = Timestamp(c.last.0.max(now.0));
            })
            .or_insert(Count {
                count: 1,
                first: now,
                last: now,
            });
    }

    /// Where a denial of `counted` is counted: there if it is counting already or there is
    /// room, otherwise one step coarser, until everyone (`::/0`), which always has room.
    fn place(&self, mut counted: Counted, reason: &'static str) -> Counted {
        while counted != Counted::EVERYONE {
            // A prefix that folds again gets half the prefixes' room, so a client filling
            // /48s leaves room for the /32 it folds into, and for other clients' /32s.
            let room = if counted.is_network() {
                MAX_COUNTED
            } else if counted.folded() == Counted::EVERYONE {
                MAX_COUNTED + MAX_PREFIXES
            } else {
                MAX_COUNTED + MAX_PREFIXES / 2
            };
            if self.open.len() < room || self.open.contains_key(&(counted, reason)) {
                return counted;
            }
            counted = counted.folded();
        }
        counted
    }

    /// The counts whose window has closed at `now` (or all of them when `flush`), taken out.
    /// A window also closes when the clock has gone back past its first denial (by more than
    /// [`CLOCK_SLACK`]): otherwise a clock stepped back an hour would hold the counts an hour.
    pub fn drain(&mut self, now: Timestamp, flush: bool) -> Due {
        let due: Vec<(Counted, &'static str)> = self
            .open
            .iter()
            .filter(|(_, c)| {
                flush || now.plus(CLOCK_SLACK) < c.first || now.since(c.first) >= WINDOW
            })
            .map(|(k, _)| *k)
            .collect();
        Due(due
            .into_iter()
            .filter_map(|k| self.open.remove(&k).map(|c| (k, c)))
            .collect())
    }

    /// Puts back counts whose record could not be appended, merged with what came since.
    pub fn restore(&mut self, due: Due) {
        for ((counted, reason), c) in due.0 {
            // Bounded as `note` is: newcomers beyond the limit are counted coarser.
            let counted = self.place(counted, reason);
            self.open
                .entry((counted, reason))
                .and_modify(|o| {
                    o.count += c.count;
                    o.first = Timestamp(o.first.0.min(c.first.0));
                    o.last = Timestamp(o.last.0.max(c.last.0));
                })
                .or_insert(c);
        }
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
            connections: Mutex::new(RateLimiter::new(
                per_minute.saturating_mul(CONNECTIONS_PER_REQUEST),
            )),
            denials: Mutex::new(DenialCounter::default()),
        }
    }

    /// Takes one request from `ip`'s budget; `false` means over the limit (answer 429), and
    /// the refusal is counted (`rate_limited`): a flood shows in the log by its size, in one
    /// summary a minute, without a record per request.
    pub fn allow(&self, ip: IpAddr, now: Timestamp) -> bool {
        let allowed = self.limiter.lock().is_ok_and(|mut l| l.allow(ip, now));
        if !allowed {
            self.count_denial(ip, "rate_limited", now);
        }
        allowed
    }

    /// Takes one new connection from `ip`'s budget ([`CONNECTIONS_PER_REQUEST`] times its
    /// requests'); `false` means close it before reading a byte or starting a TLS handshake,
    /// which the listener counts. Without it, a client could open connections without end and
    /// spend the gateway's handshakes (a key exchange and a signature each) leaving no trace,
    /// since the request limit sees only whole request heads.
    pub fn admit_connection(&self, ip: IpAddr, now: Timestamp) -> bool {
        self.connections.lock().is_ok_and(|mut l| l.allow(ip, now))
    }

    /// Counts one unauthenticated (or otherwise uncounted) refusal.
    pub fn count_denial(&self, ip: IpAddr, reason: &'static str, now: Timestamp) {
        if let Ok(mut d) = self.denials.lock() {
            d.note(ip, reason, now);
        }
    }

    /// The counts whose window has closed at `now` (all of them when `flush`), taken out.
    pub fn drain(&self, now: Timestamp, flush: bool) -> Due {
        match self.denials.lock() {
            Ok(mut d) => d.drain(now, flush),
            Err(_) => Due::default(),
        }
    }

    /// Puts back counts whose record could not be appended.
    pub fn restore(&self, due: Due) {
        if let Ok(mut d) = self.denials.lock() {
            d.restore(due);
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
    fn ipv6_counts_per_64_and_a_full_table_forgives_no_one() {
        let mut l = RateLimiter::new(2);
        let t0 = Timestamp(1_000 * SEC);
        // Rotating through one /64 gets no new budget.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(l.allow(a, t0) && l.allow(b, t0));
        assert!(!l.allow("2001:db8:1:2::77".parse().unwrap(), t0));
        assert!(
            l.allow("2001:db8:1:3::1".parse().unwrap(), t0),
            "another /64"
        );
        // An IPv4-mapped address is its IPv4 address.
        let v4: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(l.allow(v4, t0) && l.allow("::ffff:192.0.2.9".parse().unwrap(), t0));
        assert!(!l.allow(v4, t0));
        // A table full of throttled networks refuses newcomers and keeps the throttled.
        let mut full = RateLimiter::new(1);
        for i in 0..MAX_TRACKED as u32 {
            assert!(full.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        assert!(!full.allow("198.51.100.1".parse().unwrap(), t0));
        assert!(
            !full.allow(IpAddr::from(0u32.to_be_bytes()), t0),
            "still throttled"
        );
        // Once they have refilled, they are forgotten and a newcomer gets in.
        let later = Timestamp(t0.0 + 61 * SEC);
        assert!(full.allow("198.51.100.1".parse().unwrap(), later));
    }

    /// A full table that could not make room refuses newcomers without looking again until
    /// its first bucket has refilled, and admits one from that moment, not later; a clock
    /// stepped back looks again.
    #[test]
    fn a_full_table_admits_a_newcomer_once_its_first_bucket_refills() {
        let mut full = RateLimiter::new(1);
        let t0 = Timestamp(1_000 * SEC);
        assert!(full.allow(IpAddr::from(0u32.to_be_bytes()), Timestamp(t0.0 - 30 * SEC)));
        for i in 1..MAX_TRACKED as u32 {
            assert!(full.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        let newcomer: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(!full.allow(newcomer, t0));
        assert!(!full.allow(newcomer, Timestamp(t0.0 + 29 * SEC)));
        assert!(
            full.allow(newcomer, Timestamp(t0.0 + 30 * SEC)),
            "the first bucket to refill makes room"
        );
        // Full again, until t0 + 60 s; a clock stepped back past the sweep looks again.
        let second: IpAddr = "198.51.100.2".parse().unwrap();
        assert!(!full.allow(second, Timestamp(t0.0 + 31 * SEC)));
        assert!(!full.allow(second, Timestamp(t0.0 - 40 * SEC)));
        assert!(full.allow(second, Timestamp(t0.0 + 60 * SEC)));
    }

    /// A client rotating through the /64s of its /48 gets [`NETWORKS_PER_SITE`] networks'
    /// worth of requests, however many /64s it uses; another /48, and IPv4 addresses, have
    /// budgets of their own; a request refused for its site does not charge its network.
    #[test]
    fn an_ipv6_site_has_a_few_networks_worth_together() {
        let per_minute = 10;
        let mut l = RateLimiter::new(per_minute);
        let t0 = Timestamp(1_000 * SEC);
        let in_site = |n: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, n, 0, 0, 0, 1));
        let allowed = (0..1000u16)
            .flat_map(|n| std::iter::repeat_n(n, 3))
            .filter(|n| l.allow(in_site(*n), t0))
            .count();
        assert_eq!(allowed, (per_minute * NETWORKS_PER_SITE) as usize);
        assert!(l.allow("2001:db8:2::1".parse().unwrap(), t0), "another /48");
        let v4 = (0..100u8)
            .filter(|i| l.allow(IpAddr::from([192, 0, 2, *i]), t0))
            .count();
        assert_eq!(v4, 100, "IPv4 addresses have no site");
        // A /64 refused for its site kept its own budget: once the site refills a little
        // (6 s: 4 requests), a fresh /64 still has all of its own.
        let fresh = in_site(5000);
        let later = Timestamp(t0.0 + 6 * SEC);
        assert_eq!((0..10).filter(|_| l.allow(fresh, later)).count(), 4);
        assert!(l.buckets.map[&network(fresh)].tokens >= 5.0);
    }

    fn counted(events: &[Event]) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for e in events {
            if let Event::DenialsCounted { ip, count, .. } = e {
                *out.entry(ip.clone()).or_default() += count;
            }
        }
        out
    }

    /// One `missing_credentials` denial from each of 65,536 IPv6 addresses: `base` with each
    /// number below 65,536 shifted left by `shift`, and a host part of 1.
    fn note_65536_v6(d: &mut DenialCounter, base: u128, shift: u32, now: Timestamp) {
        for i in 0..65_536_u128 {
            let ip = IpAddr::V6(Ipv6Addr::from_bits(base | (i << shift) | 1));
            d.note(ip, "missing_credentials", now);
        }
    }

    /// A client rotating through the /64s of its /48 gets [`MAX_COUNTED`] records, then one
    /// for the /48; many /48s (or IPv4 /16s) then fold into `::/0`. Every denial is counted.
    #[test]
    fn a_busy_counter_folds_networks_into_prefixes_then_everyone() {
        let mut d = DenialCounter::default();
        let t0 = Timestamp(5_000 * SEC);
        note_65536_v6(&mut d, 0x2001_0db8_0001_u128 << 80, 64, t0);
        let events = d.drain(t0, true).events();
        let by = counted(&events);
        assert_eq!(events.len(), MAX_COUNTED + 1);
        assert_eq!(by.get("2001:db8:1::"), Some(&1), "the first /64 on its own");
        assert_eq!(
            by.get("2001:db8:1::/48"),
            Some(&(65_536 - MAX_COUNTED as u64))
        );
        assert_eq!(by.values().sum::<u64>(), 65_536);
        // Networks from many /16s: each newcomer past MAX_COUNTED opens its /16, until those
        // are full too; the rest are counted under `::/0`, and an open /16 keeps counting its own.
        let spread = MAX_COUNTED + MAX_PREFIXES + 100;
        for i in 0..spread as u32 {
            d.note(
                IpAddr::from((i << 16 | 9).to_be_bytes()),
                "rate_limited",
                t0,
            );
        }
        d.note("0.255.0.1".parse().unwrap(), "rate_limited", t0);
        let events = d.drain(t0, true).events();
        let by = counted(&events);
        assert_eq!(events.len(), MAX_COUNTED + MAX_PREFIXES + 1);
        assert_eq!(by.get("0.0.0.9"), Some(&1));
        assert_eq!(by.get("1.0.0.0/16"), Some(&1));
        assert_eq!(
            by.get("0.255.0.0/16"),
            None,
            "the 256th network is counted on its own"
        );
        assert_eq!(by.get("0.255.0.9"), Some(&1));
        assert_eq!(by.get("::/0"), Some(&101));
        assert_eq!(by.values().sum::<u64>(), spread as u64 + 1);
        // A client with a whole IPv6 /32: its networks, half the prefixes' room in /48s, then
        // its /32; another client's /48 finds no room then, and is counted under its own /32.
        let mut d = DenialCounter::default();
        note_65536_v6(&mut d, 0x2001_0db8_u128 << 96, 80, t0);
        d.note("2001:db9:1::1".parse().unwrap(), "missing_credentials", t0);
        let events = d.drain(t0, true).events();
        let by = counted(&events);
        assert_eq!(events.len(), MAX_COUNTED + MAX_PREFIXES / 2 + 2);
        assert_eq!(by.get("2001:db8::"), Some(&1));
        assert_eq!(by.get("2001:db8:100::/48"), Some(&1));
        assert_eq!(
            by.get("2001:db8::/32"),
            Some(&(65_536 - (MAX_COUNTED + MAX_PREFIXES / 2) as u64))
        );
        assert_eq!(by.get("2001:db9::/32"), Some(&1));
        assert_eq!(by.get("::/0"), None);
        assert_eq!(by.values().sum::<u64>(), 65_537);
        // A prefix already counting takes its networks' denials, however busy the counter is.
        let mut d = DenialCounter::default();
        for i in 0..(MAX_COUNTED + MAX_PREFIXES) as u32 {
            d.note(
                IpAddr::from((i << 16 | 9).to_be_bytes()),
                "rate_limited",
                t0,
            );
        }
        d.note(
            IpAddr::from(((MAX_COUNTED as u32 + 3) << 16 | 77).to_be_bytes()),
            "rate_limited",
            t0,
        );
        let by = counted(&d.drain(t0, true).events());
        assert_eq!(by.get("1.3.0.0/16"), Some(&2));
        assert_eq!(by.get("::/0"), None);
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
        let events = d.drain(Timestamp(t0.0 + 60 * SEC), false).events();
        assert_eq!(events.len(), 2);
        assert!(events.iter().any(|e| matches!(
            e,
            Event::DenialsCounted { count: 1000, reason, first, last, .. }
                if reason == "missing_credentials" && *first == t0 && last.0 == t0.0 + 999
        )));
        assert!(d.is_empty());

        // A clock stepped back past a window's first denial closes it at once.
        d.note(ip, "missing_credentials", t0);
        assert!(d.drain(t0, false).is_empty());
        // A denial noted a moment after the drain read its clock (on another thread) is no
        // clock stepped back: its window stays open.
        assert!(d.drain(Timestamp(t0.0 - SEC / 2), false).is_empty());
        assert_eq!(
            d.drain(Timestamp(t0.0 - 3_600 * SEC), false).events().len(),
            1
        );
        assert!(d.is_empty());
    }

    /// Threads note denials in their clocks' order only roughly: the summary still runs from
    /// the earliest to the latest.
    #[test]
    fn a_summary_spans_its_earliest_to_its_latest_denial_in_any_order() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let mut d = DenialCounter::default();
        let t0 = Timestamp(5_000 * SEC);
        for t in [t0.0 + 5, t0.0, t0.0 + 9, t0.0 + 2] {
            d.note(ip, "missing_credentials", Timestamp(t));
        }
        let events = d.drain(t0, true).events();
        assert!(
            matches!(
                events.as_slice(),
                [Event::DenialsCounted { count: 4, first, last, .. }]
                    if *first == t0 && last.0 == t0.0 + 9
            ),
            "{events:?}"
        );
    }

    #[test]
    fn counts_whose_record_failed_are_put_back_and_merged() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let mut d = DenialCounter::default();
        let t0 = Timestamp(5_000 * SEC);
        for i in 0..3 {
            d.note(ip, "missing_credentials", Timestamp(t0.0 + i));
        }
        let failed = d.drain(t0, true);
        assert!(d.is_empty());
        // Two more come while the append fails; then the failed ones are put back.
        d.note(ip, "missing_credentials", Timestamp(t0.0 + 10));
        d.note(ip, "missing_credentials", Timestamp(t0.0 + 11));
        d.restore(failed);
        let events = d.drain(t0, true).events();
        assert!(
            matches!(
                events.as_slice(),
                [Event::DenialsCounted { count: 5, first, last, .. }]
                    if *first == t0 && last.0 == t0.0 + 11
            ),
            "{events:?}"
        );
        // Put back into a full counter, a newcomer is counted under `::/0`, as `note` does.
        d.note(ip, "missing_credentials", t0);
        let failed = d.drain(t0, true);
        for i in 0..(MAX_COUNTED + MAX_PREFIXES) as u32 {
            d.note(
                IpAddr::from((i << 16).to_be_bytes()),
                "missing_credentials",
                t0,
            );
        }
        d.restore(failed);
        let events = d.drain(t0, true).events();
        assert_eq!(events.len(), MAX_COUNTED + MAX_PREFIXES + 1);
        assert!(events.iter().any(|e| matches!(
            e,
            Event::DenialsCounted { ip, count: 1, .. } if ip == "::/0"
        )));
    }
}
