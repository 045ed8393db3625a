//! The worker's metrics at `GET /metrics` (OpenMetrics text, `prometheus-client`, decision
//! 0015), named as the Prometheus JMX exporter's rules name Kafka Connect's task metrics
//! (`kafka.connect:type=source-task-metrics,connector=c,task=0` → `source-record-poll-total`
//! becomes `kafka_connect_source_task_metrics_source_record_poll_total{connector, task}`).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::worker::TaskId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    connector: String,
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: String,
}

/// The worker's counters, shared by every task it runs.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    polled: Family<TaskLabels, Counter>,
    put: Family<TaskLabels, Counter>,
    errors: Family<TaskLabels, Counter>,
    restarts: Family<ConnectorLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registry: Arc::new(Registry::default()),
            polled: Family::default(),
            put: Family::default(),
            errors: Family::default(),
            restarts: Family::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "kafka_connect_source_task_metrics_source_record_poll",
            "Records source tasks produced",
            m.polled.clone(),
        );
        registry.register(
            "kafka_connect_sink_task_metrics_sink_record_send",
            "Records sink tasks put",
            m.put.clone(),
        );
        registry.register(
            "kafka_connect_task_error_metrics_total_record_errors",
            "Records that failed conversion, a transform or the task",
            m.errors.clone(),
        );
        registry.register(
            "strom_connect_task_restarts",
            "Failed tasks this worker restarted",
            m.restarts.clone(),
        );
        Self {
            registry: Arc::new(registry),
            ..m
        }
    }
}

fn task(id: &TaskId) -> TaskLabels {
    TaskLabels {
        connector: id.connector.clone(),
        task: id.task.to_string(),
    }
}

impl Metrics {
    pub fn record_polled(&self, id: &TaskId, n: u64) {
        self.polled.get_or_create(&task(id)).inc_by(n);
    }

    pub fn record_put(&self, id: &TaskId, n: u64) {
        self.put.get_or_create(&task(id)).inc_by(n);
    }

    pub fn record_error(&self, id: &TaskId) {
        self.errors.get_or_create(&task(id)).inc();
    }

    pub fn record_restart(&self, connector: &str) {
        self.restarts
            .get_or_create(&ConnectorLabels {
                connector: connector.to_string(),
            })
            .inc();
    }

    /// The exposition: the counters, then `running` (connector, tasks running here) as
    /// Kafka Connect's `connector-running-task-count`.
    pub fn render(&self, running: &[(String, usize)]) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let tasks = Family::<ConnectorLabels, Gauge>::default();
        for (connector, n) in running {
            tasks
                .get_or_create(&ConnectorLabels {
                    connector: connector.clone(),
                })
                .set(*n as i64);
        }
        let mut now = Registry::default();
        now.register(
            "kafka_connect_connect_worker_metrics_connector_running_task_count",
            "Tasks of a connector running on this worker",
            tasks,
        );
        let _ = encode(&mut out, &now);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_per_task_and_running_tasks_per_connector() {
        let m = Metrics::default();
        let t0 = TaskId {
            connector: "jdbc".into(),
            task: 0,
        };
        m.record_polled(&t0, 5);
        m.record_put(&t0, 3);
        m.record_error(&t0);
        m.record_restart("jdbc");
        let text = m.render(&[("jdbc".into(), 2)]);
        for line in [
            "kafka_connect_source_task_metrics_source_record_poll_total{connector=\"jdbc\",task=\"0\"} 5",
            "kafka_connect_sink_task_metrics_sink_record_send_total{connector=\"jdbc\",task=\"0\"} 3",
            "kafka_connect_task_error_metrics_total_record_errors_total{connector=\"jdbc\",task=\"0\"} 1",
            "strom_connect_task_restarts_total{connector=\"jdbc\"} 1",
            "kafka_connect_connect_worker_metrics_connector_running_task_count{connector=\"jdbc\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
