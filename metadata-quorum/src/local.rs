//! A single-node controller: the metadata log on local disk, the image in memory, changes
//! published to subscribers. It stands where the Raft quorum will stand.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::info;
use uuid::Uuid;

use crate::controller::{
    self, ControllerResult, CreatedTopic, DeletedTopic, NewTopic, TopicDefaults, TopicRef,
};
use crate::{Endpoint, LoggedRecord, MetadataError, MetadataImage, MetadataLog, MetadataRecord};

struct State {
    log: MetadataLog,
    image: Arc<MetadataImage>,
}

pub struct LocalController {
    state: Mutex<State>,
    images: watch::Sender<Arc<MetadataImage>>,
    defaults: TopicDefaults,
}

impl LocalController {
    /// Opens the log under `path`, replays it, names the cluster if the log is new, and
    /// registers this node as a broker with `endpoints`.
    pub fn open(
        path: &Path,
        broker_id: i32,
        endpoints: Vec<Endpoint>,
        defaults: TopicDefaults,
    ) -> Result<Self, MetadataError> {
        let log = MetadataLog::open(path)?;
        let mut image = MetadataImage::default();
        let mut from = 0;
        loop {
            let chunk = log.read(from, 4096)?;
            if chunk.is_empty() {
                break;
            }
            from = chunk.last().map_or(from, |r| r.offset + 1);
            image = image.replay(chunk.iter().map(|r| &r.record))?;
        }
        info!(
            offset = image.offset,
            topics = image.topics().count(),
            "metadata log replayed"
        );
        let image = Arc::new(image);
        let (images, _) = watch::channel(image.clone());
        let controller = Self {
            state: Mutex::new(State { log, image }),
            images,
            defaults,
        };
        if controller.image().cluster_id.is_empty() {
            let cluster_id = Uuid::new_v4().simple().to_string();
            info!(%cluster_id, "new cluster");
            controller.commit(ControllerResult {
                records: vec![MetadataRecord::InitCluster { cluster_id }],
                response: (),
            })?;
        }
        controller.commit(controller::register_broker(
            broker_id,
            Uuid::new_v4(),
            endpoints,
            None,
        ))?;
        Ok(controller)
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    /// A receiver that sees every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.subscribe()
    }

    /// Creates topics (or only validates them with `validate_only`).
    pub fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<Vec<Result<CreatedTopic, MetadataError>>, MetadataError> {
        let mut state = self.state.lock();
        let result = controller::create_topics(&state.image, topics, self.defaults, Uuid::new_v4);
        if validate_only {
            return Ok(result.response);
        }
        self.commit_locked(&mut state, result)
    }

    pub fn delete_topics(
        &self,
        topics: &[TopicRef],
    ) -> Result<Vec<Result<DeletedTopic, MetadataError>>, MetadataError> {
        let mut state = self.state.lock();
        let result = controller::delete_topics(&state.image, topics);
        self.commit_locked(&mut state, result)
    }

    /// Up to `limit` logged records from `from` on.
    pub fn events(&self, from: u64, limit: usize) -> Result<Vec<LoggedRecord>, MetadataError> {
        self.state.lock().log.read(from, limit)
    }

    fn commit<T>(&self, result: ControllerResult<T>) -> Result<T, MetadataError> {
        let mut state = self.state.lock();
        self.commit_locked(&mut state, result)
    }

    /// Validates the records against the image, makes them durable, then publishes the image.
    fn commit_locked<T>(
        &self,
        state: &mut State,
        result: ControllerResult<T>,
    ) -> Result<T, MetadataError> {
        if result.records.is_empty() {
            return Ok(result.response);
        }
        let next = Arc::new(state.image.replay(&result.records)?);
        let logged = state.log.append(&result.records)?;
        for r in &logged {
            info!(
                offset = r.offset,
                kind = r.record.kind(),
                "metadata record committed"
            );
        }
        state.image = next.clone();
        self.images.send_replace(next);
        Ok(result.response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: TopicDefaults = TopicDefaults {
        num_partitions: 2,
        replication_factor: 1,
    };

    fn endpoints() -> Vec<Endpoint> {
        vec![Endpoint {
            name: "kafka".into(),
            host: "127.0.0.1".into(),
            port: 9092,
        }]
    }

    #[test]
    fn topics_survive_restart_and_subscribers_see_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster_id = {
            let c = LocalController::open(dir.path(), 1, endpoints(), DEFAULTS).expect("open");
            let mut rx = c.subscribe();
            rx.borrow_and_update();
            let created = c
                .create_topics(
                    &[NewTopic {
                        name: "orders".into(),
                        num_partitions: -1,
                        replication_factor: -1,
                        ..Default::default()
                    }],
                    false,
                )
                .expect("create");
            assert!(created[0].is_ok());
            assert!(rx.has_changed().expect("sender alive"));
            assert!(rx.borrow().topic("orders").is_some());
            c.image().cluster_id.clone()
        };
        let c = LocalController::open(dir.path(), 1, endpoints(), DEFAULTS).expect("reopen");
        let image = c.image();
        assert_eq!(image.cluster_id, cluster_id, "the cluster keeps its id");
        assert_eq!(image.topic("orders").map(|t| t.partitions.len()), Some(2));
        assert!(image.brokers.contains_key(&1));
        let events = c.events(0, 100).expect("events");
        assert_eq!(events.first().map(|e| e.record.kind()), Some("InitCluster"));
        assert!(events.iter().any(|e| e.record.kind() == "CreateTopic"));
    }

    #[test]
    fn validate_only_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = LocalController::open(dir.path(), 1, endpoints(), DEFAULTS).expect("open");
        let before = c.image().offset;
        let r = c
            .create_topics(
                &[NewTopic {
                    name: "dry".into(),
                    num_partitions: 1,
                    replication_factor: 1,
                    ..Default::default()
                }],
                true,
            )
            .expect("validate");
        assert!(r[0].is_ok());
        assert_eq!(c.image().offset, before);
        assert!(c.image().topic("dry").is_none());
    }
}
