//! What a broker uses to talk to the quorum: register, heartbeat, follow the metadata log
//! into a local [`MetadataImage`], and send admin changes (any controller forwards them to the
//! active one).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::api::FORWARDED_HEADER;
use super::log_store::{decode, encode};
use super::rpc::{ControllerError, ControllerRequest, ControllerResponse};
use crate::controller::{
    ConfigOp, CreatedTopic, DeletedTopic, IsrChange, Leadership, NewTopic, ScramChange, TopicRef,
};
use crate::{Endpoint, LoggedRecord, MetadataError, MetadataImage};

/// How long a metadata change waits for an active controller before it fails.
const ELECTION_PATIENCE: Duration = Duration::from_secs(5);

/// Sends one controller request to the controller at `addr`.
pub async fn call_controller(
    http: &super::tls::QuorumHttp,
    addr: &str,
    req: &ControllerRequest,
    forwarded: bool,
) -> Result<ControllerResponse, ControllerError> {
    let body = encode(req).map_err(|e| ControllerError::Internal {
        reason: e.to_string(),
    })?;
    let mut builder = http
        .post(addr, "/controller")
        .timeout(Duration::from_secs(15))
        .body(body);
    if forwarded {
        builder = builder.header(FORWARDED_HEADER, "1");
    }
    let resp = builder
        .send()
        .await
        .map_err(|e| ControllerError::Unreachable {
            reason: format!("{addr}: {e}"),
        })?;
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ControllerError::Unreachable {
            reason: format!("{addr}: {e}"),
        })?;
    decode::<Result<ControllerResponse, ControllerError>>(&bytes).map_err(|e| {
        ControllerError::Internal {
            reason: format!("undecodable answer from {addr}: {e}"),
        }
    })?
}

/// How a broker joins the quorum.
#[derive(Debug, Clone)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub heartbeat_interval: Duration,
}

struct Local {
    records: Vec<LoggedRecord>,
}

/// What the heartbeats tell of the link to the quorum.
#[derive(Default)]
struct Contact {
    /// When a controller last accepted a heartbeat from this incarnation.
    last_ok: Option<Instant>,
    /// The controller's metadata offset from the heartbeat before the last one, and the last.
    controller_offsets: (u64, u64),
}

/// A broker's view of its link to the quorum (`/readyz`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ControllerHealth {
    /// Milliseconds since a controller last accepted a heartbeat; None if none has yet.
    pub millis_since_heartbeat: Option<u64>,
    /// Records applied to this broker's image.
    pub metadata_offset: u64,
    /// The controller's metadata offset at the last heartbeat.
    pub controller_metadata_offset: u64,
    /// The image has reached what the controller had one heartbeat ago (a broker following
    /// the log is always there; one whose follow loop is stuck is not).
    pub caught_up: bool,
    /// The image holds this broker's current registration.
    pub registered: bool,
    /// The controller has fenced this broker (false when it is not registered at all).
    pub fenced: bool,
}

/// A broker's link to the quorum, with the metadata image it follows.
pub struct RemoteController {
    addrs: Vec<String>,
    preferred: AtomicUsize,
    http: super::tls::QuorumHttp,
    registration: BrokerRegistration,
    incarnation: Mutex<Uuid>,
    images: watch::Sender<Arc<MetadataImage>>,
    local: Mutex<Local>,
    contact: Mutex<Contact>,
    stop: watch::Sender<bool>,
    /// Held while a heartbeat is on its way; true once a controlled shutdown began (no
    /// heartbeat is sent after it, so none can unfence the broker again).
    heartbeat_gate: tokio::sync::Mutex<bool>,
}

/// How a controlled shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownOutcome {
    /// Partitions it led that went offline: no other replica was in sync to take over.
    pub offline: usize,
    /// The local image shows the handover (false if the wait timed out).
    pub applied: bool,
}

impl RemoteController {
    /// Registers with the quorum (retrying until `timeout`), catches up with the metadata
    /// log, and starts following it and heartbeating.
    pub async fn connect(
        addrs: Vec<String>,
        registration: BrokerRegistration,
        timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Arc<Self>, ControllerError> {
        let http = super::tls::QuorumHttp::new(tls.as_ref(), None)
            .map_err(|reason| ControllerError::Internal { reason })?;
        let (images, _) = watch::channel(Arc::new(MetadataImage::default()));
        let rc = Arc::new(Self {
            addrs,
            preferred: AtomicUsize::new(0),
            http,
            registration,
            incarnation: Mutex::new(Uuid::new_v4()),
            images,
            local: Mutex::new(Local {
                records: Vec::new(),
            }),
            contact: Mutex::new(Contact::default()),
            stop: watch::channel(false).0,
            heartbeat_gate: tokio::sync::Mutex::new(false),
        });
        let deadline = tokio::time::Instant::now() + timeout;
        let offset = loop {
            match rc.register().await {
                Ok(offset) => break offset,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    debug!(error = %e, "registration failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        };
        // Catch up with at least our own registration before serving anything.
        while rc.image().offset < offset {
            if tokio::time::Instant::now() >= deadline {
                return Err(ControllerError::Unreachable {
                    reason: "could not catch up with the metadata log".into(),
                });
            }
            if let Err(e) = rc.fetch_records(Duration::from_millis(500)).await {
                debug!(error = %e, "metadata fetch failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::spawn(rc.clone().follow());
        tokio::spawn(rc.clone().heartbeats());
        Ok(rc)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.subscribe()
    }

    /// The records this broker has applied, from `from` on.
    pub fn events(&self, from: u64, limit: usize) -> Vec<LoggedRecord> {
        let local = self.local.lock();
        local
            .records
            .iter()
            .skip(from as usize)
            .take(limit)
            .cloned()
            .collect()
    }

    /// How this broker stands with the quorum: heartbeats, metadata lag, registration.
    pub fn health(&self) -> ControllerHealth {
        let image = self.image();
        let c = self.contact.lock();
        let incarnation = *self.incarnation.lock();
        let me = image
            .brokers
            .get(&self.registration.broker_id)
            .filter(|b| b.incarnation == incarnation);
        ControllerHealth {
            millis_since_heartbeat: c.last_ok.map(|t| t.elapsed().as_millis() as u64),
            metadata_offset: image.offset,
            controller_metadata_offset: c.controller_offsets.1,
            caught_up: image.offset >= c.controller_offsets.0,
            registered: me.is_some(),
            fenced: me.is_some_and(|b| b.fenced),
        }
    }

    pub fn quorum_addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Sends a request to a reachable controller, starting with the last one that answered.
    async fn call(&self, req: &ControllerRequest) -> Result<ControllerResponse, ControllerError> {
        // An election takes a second or two; changes made meanwhile wait for it rather than
        // fail (heartbeats have their own cadence and do not wait).
        let patience = match req {
            ControllerRequest::Heartbeat { .. } | ControllerRequest::ReportLogDir { .. } => {
                Duration::ZERO
            }
            _ => ELECTION_PATIENCE,
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match self.call_once(req).await {
                Err(ControllerError::NotController { .. })
                | Err(ControllerError::Unreachable { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        req: &ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        let n = self.addrs.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_err = ControllerError::Unreachable {
            reason: "no controller address".into(),
        };
        for i in 0..n {
            let idx = (first + i) % n;
            match call_controller(&self.http, &self.addrs[idx], req, false).await {
                Err(e @ ControllerError::Unreachable { .. }) => last_err = e,
                other => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return other;
                }
            }
        }
        Err(last_err)
    }

    async fn register(&self) -> Result<u64, ControllerError> {
        let incarnation = Uuid::new_v4();
        *self.incarnation.lock() = incarnation;
        let r = &self.registration;
        match self
            .call(&ControllerRequest::RegisterBroker {
                broker_id: r.broker_id,
                incarnation,
                endpoints: r.endpoints.clone(),
                rack: r.rack.clone(),
            })
            .await?
        {
            ControllerResponse::Registered { metadata_offset } => {
                info!(broker_id = r.broker_id, %incarnation, "registered with the quorum");
                Ok(metadata_offset)
            }
            ControllerResponse::Changed { result: Err(e), .. } => Err(ControllerError::Refused {
                reason: e.to_string(),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// AlterConfigs (`replace`) or IncrementalAlterConfigs on a broker's dynamic configs
    /// (`broker` None: the cluster-wide default).
    pub async fn alter_broker_configs(
        &self,
        broker: Option<i32>,
        ops: Vec<ConfigOp>,
        replace: bool,
        validate_only: bool,
    ) -> Result<Result<(), MetadataError>, ControllerError> {
        self.change(ControllerRequest::AlterBrokerConfigs {
            broker,
            ops,
            replace,
            validate_only,
        })
        .await
    }

    /// AlterConfigs (`replace`) or IncrementalAlterConfigs on a group's dynamic configs.
    pub async fn alter_group_configs(
        &self,
        group: String,
        ops: Vec<ConfigOp>,
        replace: bool,
        validate_only: bool,
    ) -> Result<Result<(), MetadataError>, ControllerError> {
        self.change(ControllerRequest::AlterGroupConfigs {
            group,
            ops,
            replace,
            validate_only,
        })
        .await
    }

    /// UpdateFeatures through the active controller: all updates or none.
    pub async fn update_features(
        &self,
        updates: Vec<crate::features::FeatureUpdate>,
        validate_only: bool,
    ) -> Result<Result<(), MetadataError>, ControllerError> {
        self.change(ControllerRequest::UpdateFeatures {
            updates,
            validate_only,
        })
        .await
    }

    /// UnregisterBroker through the active controller; answers once this broker's image no
    /// longer has `broker_id`.
    pub async fn unregister_broker(
        &self,
        broker_id: i32,
    ) -> Result<Result<(), MetadataError>, ControllerError> {
        self.change(ControllerRequest::UnregisterBroker { broker_id })
            .await
    }

    /// Tells the active controller what this broker's log directory holds (for the replica
    /// balancer). Not retried: the next report follows soon.
    pub async fn report_log_dir(
        &self,
        report: super::rpc::LogDirReport,
    ) -> Result<Result<(), MetadataError>, ControllerError> {
        let req = ControllerRequest::ReportLogDir {
            broker_id: self.registration.broker_id,
            incarnation: *self.incarnation.lock(),
            report,
        };
        match self.call(&req).await? {
            ControllerResponse::Changed { result, .. } => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    /// Long-polls records after our offset and applies them to the image.
    async fn fetch_records(&self, wait: Duration) -> Result<usize, ControllerError> {
        let from = self.image().offset;
        let n = self.addrs.len();
        let idx = self.preferred.load(Ordering::Relaxed) % n;
        let addr = &self.addrs[idx];
        let path = format!(
            "/controller/records?from={from}&wait_ms={}",
            wait.as_millis()
        );
        let result = async {
            let resp = self
                .http
                .get(addr, &path)
                .timeout(wait + Duration::from_secs(5))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
            decode::<Vec<LoggedRecord>>(&bytes).map_err(|e| e.to_string())
        }
        .await;
        let records = match result {
            Ok(r) => r,
            Err(reason) => {
                self.preferred.store((idx + 1) % n, Ordering::Relaxed);
                return Err(ControllerError::Unreachable {
                    reason: format!("{addr}: {reason}"),
                });
            }
        };
        // A controller that is behind us has nothing new; only records continuing ours apply.
        let fresh: Vec<LoggedRecord> = records.into_iter().filter(|r| r.offset >= from).collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        let image = self.image();
        let next = image.replay(fresh.iter().map(|r| &r.record)).map_err(|e| {
            ControllerError::Internal {
                reason: format!("metadata does not apply: {e}"),
            }
        })?;
        let count = fresh.len();
        self.local.lock().records.extend(fresh);
        self.images.send_replace(Arc::new(next));
        Ok(count)
    }

    /// Stops following the metadata log and heartbeating.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    async fn follow(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            let fetched = tokio::select! {
                r = self.fetch_records(Duration::from_secs(5)) => r,
                _ = stop.changed() => return,
            };
            if let Err(e) = fetched {
                debug!(error = %e, "metadata follow failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn heartbeats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.registration.heartbeat_interval);
        let mut stop = self.stop.subscribe();
        let mut refused = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let gate = self.heartbeat_gate.lock().await;
            if *gate {
                return;
            }
            let incarnation = *self.incarnation.lock();
            let req = ControllerRequest::Heartbeat {
                broker_id: self.registration.broker_id,
                incarnation,
            };
            let answer = self.call(&req).await;
            if let Ok(ControllerResponse::Heartbeat {
                unknown,
                metadata_offset,
                ..
            }) = &answer
            {
                let mut c = self.contact.lock();
                if !unknown {
                    c.last_ok = Some(Instant::now());
                }
                c.controller_offsets = (c.controller_offsets.1, *metadata_offset);
            }
            // Still holding the gate: a re-registration (which registers the broker unfenced)
            // cannot land after a controlled shutdown began.
            match answer {
                Ok(ControllerResponse::Heartbeat {
                    unknown: true,
                    metadata_offset,
                    ..
                }) if refused || self.unregistered(incarnation, metadata_offset).await => {
                    // Decommissioned: said once; the broker serves nothing until restarted.
                    if !refused {
                        refused = true;
                        warn!("this broker was unregistered from the cluster; stop it, or restart it to rejoin");
                    }
                }
                Ok(ControllerResponse::Heartbeat { unknown: true, .. }) => {
                    warn!("the controller does not know this broker; registering again");
                    if let Err(e) = self.register().await {
                        warn!(error = %e, "re-registration failed");
                    }
                }
                Ok(_) => {}
                Err(e) => debug!(error = %e, "heartbeat failed"),
            }
            drop(gate);
        }
    }

    /// Controlled shutdown (Kafka's `controlled.shutdown.enable`): stops heartbeating, asks the
    /// active controller to move this broker's leaderships to other in-sync replicas, and
    /// waits until the local image shows it, so this broker answers NOT_LEADER_OR_FOLLOWER and
    /// clients go to the new leaders before it closes its sockets.
    pub async fn controlled_shutdown(
        &self,
        timeout: Duration,
    ) -> Result<ShutdownOutcome, ControllerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Waits for a heartbeat on its way (within the same deadline), then none is sent.
        *tokio::time::timeout_at(deadline, self.heartbeat_gate.lock())
            .await
            .map_err(|_| ControllerError::Unreachable {
                reason: "a heartbeat in flight did not finish in time".into(),
            })? = true;
        let req = ControllerRequest::ControlledShutdown {
            broker_id: self.registration.broker_id,
            incarnation: *self.incarnation.lock(),
        };
        let answer = tokio::time::timeout_at(deadline, self.call(&req))
            .await
            .map_err(|_| ControllerError::Unreachable {
                reason: format!("no answer within {} ms", timeout.as_millis()),
            })??;
        match answer {
            ControllerResponse::ShutDown { unknown: true, .. } => Err(ControllerError::Internal {
                reason: "the controller does not know this broker's registration".into(),
            }),
            ControllerResponse::ShutDown {
                metadata_offset,
                offline,
                ..
            } => {
                self.wait_for_offset(
                    metadata_offset,
                    deadline.saturating_duration_since(tokio::time::Instant::now()),
                )
                .await;
                Ok(ShutdownOutcome {
                    offline,
                    applied: self.image().offset >= metadata_offset,
                })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the local image has reached `offset` (or `timeout` passes).
    /// Whether `incarnation` (this process) was unregistered (UnregisterBroker): asked when
    /// the controller no longer knows it, once the local image has caught up with the
    /// controller's `metadata_offset`, so the record that says so is here if it exists.
    async fn unregistered(&self, incarnation: Uuid, metadata_offset: u64) -> bool {
        self.wait_for_offset(metadata_offset, Duration::from_secs(2))
            .await;
        self.image().unregistered.get(&self.registration.broker_id) == Some(&incarnation)
    }

    async fn wait_for_offset(&self, offset: u64, timeout: Duration) {
        let mut rx = self.images.subscribe();
        let _ = tokio::time::timeout(timeout, async {
            while rx.borrow_and_update().offset < offset {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<Vec<Result<CreatedTopic, MetadataError>>, ControllerError> {
        let req = ControllerRequest::CreateTopics {
            topics,
            validate_only,
        };
        self.change_and_follow(req, |r| match r {
            ControllerResponse::CreateTopics {
                results,
                metadata_offset,
            } => Ok((results, metadata_offset)),
            other => Err(other),
        })
        .await
    }

    pub async fn delete_topics(
        &self,
        topics: Vec<TopicRef>,
    ) -> Result<Vec<Result<DeletedTopic, MetadataError>>, ControllerError> {
        let req = ControllerRequest::DeleteTopics { topics };
        self.change_and_follow(req, |r| match r {
            ControllerResponse::DeleteTopics {
                results,
                metadata_offset,
            } => Ok((results, metadata_offset)),
            other => Err(other),
        })
        .await
    }

    /// Sends a metadata change, takes (answer, metadata offset) out of the response, and
    /// waits until this broker's image has reached that offset, so the change is visible here
    /// when the caller answers its client.
    async fn change_and_follow<T>(
        &self,
        req: ControllerRequest,
        take: impl FnOnce(ControllerResponse) -> Result<(T, u64), ControllerResponse>,
    ) -> Result<T, ControllerError> {
        let (answer, metadata_offset) = take(self.call(&req).await?).map_err(unexpected)?;
        self.wait_for_offset(metadata_offset, Duration::from_secs(10))
            .await;
        Ok(answer)
    }

    /// A change answered with [`ControllerResponse::Changed`].
    async fn change(
        &self,
        req: ControllerRequest,
    ) -> Result<Result<(), MetadataError>, ControllerError> {
        self.change_and_follow(req, |r| match r {
            ControllerResponse::Changed {
                result,
                metadata_offset,
            } => Ok((result, metadata_offset)),
            other => Err(other),
        })
        .await
    }

    /// AlterConfigs (`replace`) or IncrementalAlterConfigs on one topic.
    pub async fn alter_configs(
        &self,
        topic: String,
        ops: Vec<ConfigOp>,
        replace: bool,
        validate_only: bool,
    ) -> Result<Result<(), MetadataError>, ControllerError> {
        self.change(ControllerRequest::AlterConfigs {
            topic,
            ops,
            replace,
            validate_only,
        })
        .await
    }

    /// AlterUserScramCredentials: one result per user; waits until this broker's image has
    /// the changes.
    pub async fn alter_scram_credentials(
        &self,
        changes: Vec<ScramChange>,
    ) -> Result<Vec<(String, Result<(), MetadataError>)>, ControllerError> {
        self.change_and_follow(
            ControllerRequest::AlterScramCredentials { changes },
            |r| match r {
                ControllerResponse::PerUser {
                    results,
                    metadata_offset,
                } => Ok((results, metadata_offset)),
                other => Err(other),
            },
        )
        .await
    }

    /// CreateAcls: one result per binding; waits until this broker's image has them.
    pub async fn create_acls(
        &self,
        bindings: Vec<crate::acl::AclBinding>,
    ) -> Result<Vec<Result<(), MetadataError>>, ControllerError> {
        self.change_and_follow(ControllerRequest::CreateAcls { bindings }, |r| match r {
            ControllerResponse::AclsCreated {
                results,
                metadata_offset,
            } => Ok((results, metadata_offset)),
            other => Err(other),
        })
        .await
    }

    /// AlterClientQuotas: one result per entry; waits until this broker's image has them.
    pub async fn alter_client_quotas(
        &self,
        alterations: Vec<crate::quota::QuotaAlteration>,
        validate_only: bool,
    ) -> Result<Vec<Result<(), MetadataError>>, ControllerError> {
        self.change_and_follow(
            ControllerRequest::AlterClientQuotas {
                alterations,
                validate_only,
            },
            |r| match r {
                ControllerResponse::QuotasAltered {
                    results,
                    metadata_offset,
                } => Ok((results, metadata_offset)),
                other => Err(other),
            },
        )
        .await
    }

    /// DeleteAcls: the bindings each filter removed.
    pub async fn delete_acls(
        &self,
        filters: Vec<crate::acl::AclFilter>,
    ) -> Result<Vec<Vec<crate::acl::AclBinding>>, ControllerError> {
        self.change_and_follow(ControllerRequest::DeleteAcls { filters }, |r| match r {
            ControllerResponse::AclsDeleted {
                deleted,
                metadata_offset,
            } => Ok((deleted, metadata_offset)),
            other => Err(other),
        })
        .await
    }

    /// ElectLeaders through the active controller; answers once this broker's image has the
    /// new leaders.
    pub async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Option<Vec<crate::controller::PartitionName>>,
    ) -> Result<PartitionResults, ControllerError> {
        let req = ControllerRequest::ElectLeaders {
            unclean,
            partitions,
        };
        self.change_and_follow(req, per_partition).await
    }

    /// AlterPartitionReassignments through the active controller; answers once this
    /// broker's image shows the change.
    pub async fn alter_reassignments(
        &self,
        reassignments: Vec<crate::controller::Reassignment>,
    ) -> Result<PartitionResults, ControllerError> {
        let req = ControllerRequest::AlterReassignments { reassignments };
        self.change_and_follow(req, per_partition).await
    }

    /// The metadata quorum's state from the active controller (DescribeQuorum).
    pub async fn describe_quorum(&self) -> Result<super::rpc::QuorumDescription, ControllerError> {
        match self.call(&ControllerRequest::DescribeQuorum).await? {
            ControllerResponse::Quorum(q) => Ok(q),
            other => Err(unexpected(other)),
        }
    }

    pub async fn allocate_producer_ids(&self) -> Result<(i64, i64), ControllerError> {
        match self
            .call(&ControllerRequest::AllocateProducerIds {
                broker_id: self.registration.broker_id,
            })
            .await?
        {
            ControllerResponse::ProducerIds { first_id, count } => Ok((first_id, count)),
            other => Err(unexpected(other)),
        }
    }

    /// AlterPartition: asks for ISR changes of partitions this broker leads. Does not wait
    /// for the local image: the leader applies a change when its image shows it.
    pub async fn alter_partition(
        &self,
        changes: Vec<IsrChange>,
    ) -> Result<(Vec<Result<Leadership, MetadataError>>, u64), ControllerError> {
        match self
            .call(&ControllerRequest::AlterPartition {
                broker_id: self.registration.broker_id,
                changes,
            })
            .await?
        {
            ControllerResponse::AlterPartition {
                results,
                metadata_offset,
            } => Ok((results, metadata_offset)),
            other => Err(unexpected(other)),
        }
    }

    /// Grows `topic` to `total` partitions.
    pub async fn create_partitions(
        &self,
        topic: String,
        total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<Result<(), MetadataError>, ControllerError> {
        self.change(ControllerRequest::CreatePartitions {
            topic,
            total,
            assignments,
            validate_only,
        })
        .await
    }
}

/// One result per partition, in request order (ElectLeaders, AlterReassignments).
pub type PartitionResults = Vec<(crate::controller::PartitionName, Result<(), MetadataError>)>;

fn per_partition(r: ControllerResponse) -> Result<(PartitionResults, u64), ControllerResponse> {
    match r {
        ControllerResponse::Elected {
            results,
            metadata_offset,
        } => Ok((results, metadata_offset)),
        other => Err(other),
    }
}

fn unexpected(r: ControllerResponse) -> ControllerError {
    ControllerError::Internal {
        reason: format!("unexpected answer {r:?}"),
    }
}
