//! The worker's counters, rendered in Prometheus' text format at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use parking_lot::Mutex;

#[derive(Default, Clone, Copy)]
struct Counts {
    source_polled: u64,
    sink_put: u64,
    errors: u64,
    task_restarts: u64,
}

/// Per-connector counters, shared by every task of the worker.
#[derive(Clone, Default)]
pub struct Metrics {
    by_connector: Arc<Mutex<BTreeMap<String, Counts>>>,
}

impl Metrics {
    fn with(&self, connector: &str, f: impl FnOnce(&mut Counts)) {
        f(self
            .by_connector
            .lock()
            .entry(connector.to_string())
            .or_default());
    }

    pub fn record_polled(&self, connector: &str, n: u64) {
        self.with(connector, |c| c.source_polled += n);
    }

    pub fn record_put(&self, connector: &str, n: u64) {
        self.with(connector, |c| c.sink_put += n);
    }

    pub fn record_error(&self, connector: &str) {
        self.with(connector, |c| c.errors += 1);
    }

    pub fn record_restart(&self, connector: &str) {
        self.with(connector, |c| c.task_restarts += 1);
    }

    /// Prometheus text exposition; `running` is (connector, running tasks here).
    pub fn render(&self, running: &[(String, usize)]) -> String {
        let all = self.by_connector.lock().clone();
        let mut out = String::new();
        let mut family = |name: &str, help: &str, get: &dyn Fn(&Counts) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (c, counts) in &all {
                let _ = writeln!(out, "{name}{{connector=\"{c}\"}} {}", get(counts));
            }
        };
        family(
            "strom_connect_source_records_total",
            "Records source tasks produced.",
            &|c| c.source_polled,
        );
        family(
            "strom_connect_sink_records_total",
            "Records sink tasks put.",
            &|c| c.sink_put,
        );
        family(
            "strom_connect_record_errors_total",
            "Records that failed conversion or a transform.",
            &|c| c.errors,
        );
        family(
            "strom_connect_task_restarts_total",
            "Failed tasks restarted by this worker.",
            &|c| c.task_restarts,
        );
        let _ = writeln!(out, "# HELP strom_connect_running_tasks Tasks running on this worker.\n# TYPE strom_connect_running_tasks gauge");
        for (c, n) in running {
            let _ = writeln!(out, "strom_connect_running_tasks{{connector=\"{c}\"}} {n}");
        }
        out
    }
}
