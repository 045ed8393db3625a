//! Counters served at `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_opened: AtomicU64,
    pub connections_closed_on_error: AtomicU64,
    pub requests: AtomicU64,
    pub produce_records: AtomicU64,
    pub produce_bytes: AtomicU64,
    pub fetch_bytes: AtomicU64,
    pub successful_authentications: AtomicU64,
    pub successful_reauthentications: AtomicU64,
    pub failed_authentications: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters, the partition and topic gauges, and the quota throttles: (quota type,
    /// throttled requests or connections, total throttle ms).
    pub fn render(
        &self,
        partitions: usize,
        topics: usize,
        throttles: &[(&'static str, u64, u64)],
    ) -> String {
        let mut out = String::new();
        let counters = [
            (
                "strom_connections_opened_total",
                "Kafka connections accepted",
                &self.connections_opened,
            ),
            (
                "strom_connections_closed_on_error_total",
                "Kafka connections closed because of bad input",
                &self.connections_closed_on_error,
            ),
            (
                "strom_requests_total",
                "Kafka requests answered",
                &self.requests,
            ),
            (
                "strom_produce_records_total",
                "records appended",
                &self.produce_records,
            ),
            (
                "strom_produce_bytes_total",
                "record batch bytes appended",
                &self.produce_bytes,
            ),
            (
                "strom_fetch_bytes_total",
                "record batch bytes served by Fetch",
                &self.fetch_bytes,
            ),
            (
                "strom_successful_authentication_total",
                "SASL authentications that succeeded",
                &self.successful_authentications,
            ),
            (
                "strom_successful_reauthentication_total",
                "SASL re-authentications (KIP-368) that succeeded",
                &self.successful_reauthentications,
            ),
            (
                "strom_failed_authentication_total",
                "SASL authentications that failed (the connection was closed)",
                &self.failed_authentications,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP strom_partitions partition logs held\n# TYPE strom_partitions gauge\nstrom_partitions {partitions}");
        let _ = writeln!(out, "# HELP strom_topics topics in the metadata image\n# TYPE strom_topics gauge\nstrom_topics {topics}");
        let _ = writeln!(out, "# HELP strom_quota_throttled_total requests (or, for quota=\"connection\", connections) throttled for going over a client quota\n# TYPE strom_quota_throttled_total counter");
        for (quota, n, _) in throttles {
            let _ = writeln!(out, "strom_quota_throttled_total{{quota=\"{quota}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP strom_quota_throttle_time_ms_total throttle time handed out for going over a client quota\n# TYPE strom_quota_throttle_time_ms_total counter");
        for (quota, _, ms) in throttles {
            let _ = writeln!(
                out,
                "strom_quota_throttle_time_ms_total{{quota=\"{quota}\"}} {ms}"
            );
        }
        out
    }
}
