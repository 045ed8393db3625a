//! Client quota enforcement: each request is recorded against a sensor (per quota type, per
//! sharing scope), and a request that overdraws it earns a throttle time. The broker answers at
//! once with `throttle_time_ms` set (KIP-219) and then mutes the connection: it reads nothing
//! more from it until the throttle time has passed, so a client that ignores the field is held
//! back all the same.
//!
//! ```text
//!   credit += limit x (now - last), at most limit x quota.window.num x quota.window.size
//!   request --> credit -= value --> credit < 0?  no: throttle 0
//!                                                yes: throttle = -credit / limit
//!   answer(throttle_time_ms) --> mute the connection for the throttle time
//! ```
//!
//! The sensor is Kafka's token bucket (KIP-599, which Kafka uses for controller mutations)
//! rather than the sampled rate Kafka uses for byte rates: with the sampled rate a client
//! that starts with a burst goes on in bursts, one per window span (11 s by default), and its
//! rate over any 20 s swings 40% around the limit; with the bucket a busy client runs at the
//! limit after one burst of the window's worth (see docs/decisions/0013-quotas.md).
//! Request-time and connection-rate throttles are capped at one sample window, as in Kafka.
//!
//! The limits come from the metadata image ([`QuotaIndex`]); the sensors are this broker's
//! own, so limits are per broker, as Kafka's are.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metadata_quorum::quota::{
    QuotaIndex, QuotaScope, CONSUMER_BYTE_RATE, CONTROLLER_MUTATION_RATE, PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
};

/// Sensors nobody recorded into for this long are dropped (Kafka's inactive sensor expiry).
const SENSOR_EXPIRY_MS: u64 = 3_600_000;

/// The quota types a client request is recorded against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Produce request bytes per second (`producer_byte_rate`).
    Produce,
    /// Fetch response bytes per second (`consumer_byte_rate`).
    Fetch,
    /// Time spent handling requests, in percent of one thread (`request_percentage`).
    Request,
    /// Partitions created or deleted per second (`controller_mutation_rate`, KIP-599).
    ControllerMutation,
}

impl QuotaKind {
    pub fn key(self) -> &'static str {
        match self {
            Self::Produce => PRODUCER_BYTE_RATE,
            Self::Fetch => CONSUMER_BYTE_RATE,
            Self::Request => REQUEST_PERCENTAGE,
            Self::ControllerMutation => CONTROLLER_MUTATION_RATE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Produce => "produce",
            Self::Fetch => "fetch",
            Self::Request => "request",
            Self::ControllerMutation => "controller_mutation",
        }
    }

    /// Byte rates throttle for as long as it takes; time quotas at most one window.
    fn bounded(self) -> bool {
        self == Self::Request
    }
}

/// The sampling window of every rate (Kafka's `quota.window.num`, `quota.window.size.seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaWindow {
    pub samples: u32,
    pub sample_ms: u64,
}

impl Default for QuotaWindow {
    fn default() -> Self {
        Self {
            samples: 11,
            sample_ms: 1000,
        }
    }
}

impl QuotaWindow {
    /// The most credit a sensor holds: the limit's worth of the whole window.
    fn burst(self, limit: f64) -> f64 {
        limit * f64::from(self.samples) * self.sample_ms as f64 / 1000.0
    }
}

/// A token bucket: credit accrues at the limit per second up to the window's worth; what is
/// recorded is taken from it.
#[derive(Debug, Clone, Default)]
pub struct TokenBucket {
    credit: f64,
    last_ms: u64,
    started: bool,
}

impl TokenBucket {
    /// Takes `value` (negative: gives it back) and returns the throttle that brings the
    /// credit back to zero, in ms.
    pub fn record(&mut self, w: QuotaWindow, limit: f64, value: f64, now_ms: u64) -> u64 {
        let burst = w.burst(limit);
        if !self.started {
            self.started = true;
            self.credit = burst;
        } else {
            let accrued = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0 * limit;
            self.credit = (self.credit + accrued).min(burst);
        }
        self.last_ms = self.last_ms.max(now_ms);
        self.credit = (self.credit - value).min(burst);
        if self.credit >= 0.0 {
            0
        } else {
            (-self.credit / limit * 1000.0).ceil() as u64
        }
    }
}

#[derive(Default)]
struct Sensors {
    buckets: HashMap<(QuotaKind, QuotaScope), TokenBucket>,
    connections: HashMap<IpAddr, TokenBucket>,
    swept_ms: u64,
}

/// Throttles earned, by quota type, for `/metrics`.
#[derive(Debug, Default)]
pub struct ThrottleStats {
    pub throttled: HashMap<&'static str, (u64, u64)>,
}

/// The broker's quota sensors.
pub struct QuotaManager {
    window: QuotaWindow,
    started: Instant,
    sensors: Mutex<Sensors>,
    /// (throttled requests, throttle ms) by quota type, and throttled connections.
    stats: Mutex<ThrottleStats>,
}

impl QuotaManager {
    pub fn new(window: QuotaWindow) -> Self {
        Self {
            window,
            started: Instant::now(),
            sensors: Mutex::new(Sensors::default()),
            stats: Mutex::new(ThrottleStats::default()),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Records `value` for a request of `user` with `client_id` against the quota of `kind`,
    /// and returns the throttle it earns (zero when no quota applies or it is within it).
    /// Recording 0 reads the throttle a debt calls for.
    pub fn record(
        &self,
        quotas: &QuotaIndex,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: u64,
    ) -> Duration {
        let Some((scope, limit)) = quotas.client_quota(user, client_id, kind.key()) else {
            return Duration::ZERO;
        };
        let mut sensors = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        sensors.sweep(now_ms);
        let bucket = sensors.buckets.entry((kind, scope)).or_default();
        let mut ms = bucket.record(self.window, limit, value, now_ms);
        if kind.bounded() {
            ms = ms.min(self.window.sample_ms);
        }
        drop(sensors);
        if ms > 0 && value > 0.0 {
            self.count(kind.name(), ms);
        }
        Duration::from_millis(ms)
    }

    /// Takes back a recorded value: a throttled fetch is answered without its data, so the
    /// bytes it did not send do not count.
    pub fn unrecord(
        &self,
        quotas: &QuotaIndex,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: u64,
    ) {
        self.record(quotas, kind, user, client_id, -value, now_ms);
    }

    /// The most a fetch of this client may return: what its byte rate allows over the
    /// window (Kafka bounds fetch sizes so one answer cannot earn a throttle of minutes).
    pub fn fetch_window_bytes(
        &self,
        quotas: &QuotaIndex,
        user: &str,
        client_id: &str,
    ) -> Option<i32> {
        let (_, limit) = quotas.client_quota(user, client_id, CONSUMER_BYTE_RATE)?;
        let bytes = limit
            * f64::from(self.window.samples.saturating_sub(1).max(1))
            * self.window.sample_ms as f64
            / 1000.0;
        Some(bytes.min(f64::from(i32::MAX)).max(1.0) as i32)
    }

    /// Records a new connection from `ip`; the throttle says how long to hold it before
    /// closing it, unanswered, when the IP's connection creation rate is over its quota.
    pub fn record_connection(&self, quotas: &QuotaIndex, ip: IpAddr, now_ms: u64) -> Duration {
        let Some(limit) = quotas.ip_connection_rate(&ip) else {
            return Duration::ZERO;
        };
        let mut sensors = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        sensors.sweep(now_ms);
        let bucket = sensors.connections.entry(ip).or_default();
        let ms = bucket
            .record(self.window, limit, 1.0, now_ms)
            .min(self.window.sample_ms);
        if ms > 0 {
            // A refused connection does not count against the next ones (as in Kafka).
            bucket.record(self.window, limit, -1.0, now_ms);
        }
        drop(sensors);
        if ms > 0 {
            self.count("connection", ms);
        }
        Duration::from_millis(ms)
    }

    fn count(&self, kind: &'static str, ms: u64) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let e = stats.throttled.entry(kind).or_default();
        e.0 += 1;
        e.1 += ms;
    }

    /// (quota type, throttled requests or connections, throttle ms in total).
    pub fn throttle_stats(&self) -> Vec<(&'static str, u64, u64)> {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = [
            "produce",
            "fetch",
            "request",
            "controller_mutation",
            "connection",
        ]
        .into_iter()
        .map(|k| {
            let (n, ms) = stats.throttled.get(k).copied().unwrap_or_default();
            (k, n, ms)
        })
        .collect();
        out.sort_by_key(|(k, _, _)| *k);
        out
    }
}

impl Sensors {
    /// Drops the sensors idle for an hour, at most once a minute.
    fn sweep(&mut self, now_ms: u64) {
        if now_ms < self.swept_ms + 60_000 {
            return;
        }
        self.swept_ms = now_ms;
        let live = |r: &TokenBucket| now_ms.saturating_sub(r.last_ms) < SENSOR_EXPIRY_MS;
        self.buckets.retain(|_, r| live(r));
        self.connections.retain(|_, r| live(r));
    }
}

/// The user name quotas know a principal by: `User:alice` is `alice`.
pub fn quota_user(principal: &str) -> &str {
    principal.strip_prefix("User:").unwrap_or(principal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metadata_quorum::quota::{QuotaEntity, CONNECTION_CREATION_RATE};

    const W: QuotaWindow = QuotaWindow {
        samples: 11,
        sample_ms: 1000,
    };

    fn quotas(parts: &[(&str, Option<&str>)], key: &str, v: f64) -> QuotaIndex {
        let mut q = QuotaIndex::default();
        q.set(
            &QuotaEntity::from_parts(parts.iter().copied()).expect("entity"),
            key,
            Some(v),
        );
        q
    }

    #[test]
    fn the_bucket_starts_full_and_refills_at_the_limit() {
        let mut b = TokenBucket::default();
        // 11 s of 1,000/s: 11,000 pass at once, the next 1,000 wait a second.
        assert_eq!(b.record(W, 1000.0, 11_000.0, 0), 0);
        assert_eq!(b.record(W, 1000.0, 1_000.0, 0), 1000);
        // Half a second later half the debt is paid.
        assert_eq!(b.record(W, 1000.0, 0.0, 500), 500);
        // Giving back restores credit, never beyond the burst.
        assert_eq!(b.record(W, 1000.0, -1e9, 600), 0);
        assert_eq!(b.record(W, 1000.0, 11_001.0, 600), 1);
    }

    #[test]
    fn throttle_pays_back_what_was_overdrawn() {
        let m = QuotaManager::new(W);
        let q = quotas(&[("client-id", Some("app"))], PRODUCER_BYTE_RATE, 1000.0);
        // 21,000 bytes at once, against 1,000/s with 11 s of credit: 10 s to pay back.
        let t = m.record(&q, QuotaKind::Produce, "ANONYMOUS", "app", 21_000.0, 0);
        assert_eq!(t, Duration::from_secs(10));
        // Another client id has no quota; another quota type is not recorded.
        assert_eq!(
            m.record(&q, QuotaKind::Produce, "ANONYMOUS", "other", 1e9, 0),
            Duration::ZERO
        );
        assert_eq!(
            m.record(&q, QuotaKind::Fetch, "ANONYMOUS", "app", 1e9, 0),
            Duration::ZERO
        );
    }

    #[test]
    fn a_producer_that_obeys_the_throttles_runs_at_the_limit() {
        // A client sending 100 KB requests as fast as throttling lets it: after its first
        // burst, any 20 s see the limit's worth of bytes, within a percent.
        let m = QuotaManager::new(W);
        let limit = 1_048_576.0;
        let q = quotas(&[("user", None)], PRODUCER_BYTE_RATE, limit);
        let mut now = 0u64;
        let mut sends = Vec::new();
        while now < 75_000 {
            let t = m.record(&q, QuotaKind::Produce, "alice", "c", 100_000.0, now);
            sends.push(now);
            now += 5 + t.as_millis() as u64;
        }
        for from in (12_000..=50_000).step_by(1_000) {
            let sent = sends
                .iter()
                .filter(|t| (from..from + 20_000).contains(*t))
                .count() as f64
                * 100_000.0;
            let rate = sent / 20.0;
            assert!((rate - limit).abs() / limit < 0.01, "{rate} from {from}");
        }
    }

    #[test]
    fn request_throttles_are_capped_and_fetches_can_be_taken_back() {
        let m = QuotaManager::new(W);
        let q = quotas(&[("user", None)], REQUEST_PERCENTAGE, 1.0);
        let t = m.record(&q, QuotaKind::Request, "a", "c", 1_000.0, 0);
        assert_eq!(t, Duration::from_secs(1));
        let f = quotas(&[("user", None)], CONSUMER_BYTE_RATE, 1000.0);
        assert!(!m
            .record(&f, QuotaKind::Fetch, "a", "c", 20_000.0, 0)
            .is_zero());
        m.unrecord(&f, QuotaKind::Fetch, "a", "c", 20_000.0, 0);
        assert!(m.record(&f, QuotaKind::Fetch, "a", "c", 100.0, 1).is_zero());
        assert_eq!(m.fetch_window_bytes(&f, "a", "c"), Some(10_000));
    }

    #[test]
    fn connection_rates_are_per_address() {
        let m = QuotaManager::new(W);
        let q = quotas(&[("ip", None)], CONNECTION_CREATION_RATE, 1.0);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        let throttled = (0..20)
            .filter(|_| !m.record_connection(&q, a, 0).is_zero())
            .count();
        // The window's worth (11) get in at once, the rest wait for credit.
        assert_eq!(throttled, 9);
        assert!(m.record_connection(&q, b, 0).is_zero());
    }
}
