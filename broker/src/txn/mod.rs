//! The transaction coordinator (KIP-98), beside the group coordinator.
//!
//! ```text
//!  producer --InitProducerId/AddPartitionsToTxn/AddOffsetsToTxn/EndTxn--> coordinator
//!     |                                   (leader of __transaction_state partition
//!     |                                    hash(transactional.id) % 50)
//!     |                                          | 1. record in __transaction_state
//!     |                                          |    (replicated before answering)
//!     +--Produce (transactional batches)-->      | 2. EndTxn: PrepareCommit/PrepareAbort,
//!     +--TxnOffsetCommit--> group coordinator    |    then WriteTxnMarkers to every
//!                                                v    partition leader (control batches)
//!                         partition leaders: marker closes the producer's open transaction,
//!                         the last stable offset moves on; 3. CompleteCommit/CompleteAbort
//! ```
//!
//! A transactional id's state ([`state::TxnMetadata`]) is one record in its
//! `__transaction_state` partition (compacted; key = the id, value = the metadata, a tombstone
//! when it expires), written through the partition log and replicated like any data. A broker
//! that becomes the partition's leader replays it ([`TxnCoordinator::ensure_loaded`]) and
//! finishes what the old coordinator left half done: markers of PrepareCommit/PrepareAbort
//! transactions go out again (markers are idempotent), open ones time out. The coordinator
//! epoch stamped on markers is the partition's leader epoch, so an old coordinator's late
//! markers are fenced at the partition leaders.

pub mod ops;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use strom_client::records;
use tracing::info;

use crate::error::LogError;
use crate::log::{batch, PartitionLog};
pub use state::{TxnMetadata, TxnState};

pub const TRANSACTION_TOPIC: &str = "__transaction_state";
/// Kafka's transaction.state.log.num.partitions.
pub const TRANSACTION_PARTITIONS: i32 = 50;
/// The longest transactional id accepted (Kafka has no limit; one keeps a coordinator's
/// memory and its records bounded).
pub const MAX_TRANSACTIONAL_ID_LEN: usize = 1024;

/// The `__transaction_state` partition of a transactional id: Java's
/// `abs(id.hashCode()) % 50`, as Kafka places it.
pub fn txn_partition(transactional_id: &str) -> i32 {
    crate::group::java_string_partition(transactional_id, TRANSACTION_PARTITIONS)
}

/// The record key of a transactional id: version 0, then the id's bytes.
fn key(transactional_id: &str) -> Bytes {
    let mut k = Vec::with_capacity(2 + transactional_id.len());
    k.extend_from_slice(&0i16.to_be_bytes());
    k.extend_from_slice(transactional_id.as_bytes());
    Bytes::from(k)
}

fn parse_key(k: &[u8]) -> Option<String> {
    if k.len() < 2 || k[0..2] != [0, 0] {
        return None;
    }
    String::from_utf8(k[2..].to_vec()).ok()
}

/// The record value: the metadata, then its TV2 extension ([`state::TxnExtension`]).
fn encode(m: &TxnMetadata) -> Bytes {
    let config = bincode::config::standard();
    let mut v = bincode::serde::encode_to_vec(m, config).unwrap_or_default();
    v.extend(bincode::serde::encode_to_vec(m.extension(), config).unwrap_or_default());
    Bytes::from(v)
}

/// Reads a record value; one written before the extension existed has none.
fn decode(v: &[u8]) -> Option<TxnMetadata> {
    let config = bincode::config::standard();
    let (mut m, read): (TxnMetadata, usize) = bincode::serde::decode_from_slice(v, config).ok()?;
    // An extension this build cannot read (a later one) is left out, not the record.
    if let Ok((ext, _)) = bincode::serde::decode_from_slice(&v[read..], config) {
        m.set_extension(ext);
    }
    Some(m)
}

/// The coordinator's cache of the transactional ids whose partitions this broker leads.
#[derive(Default)]
pub struct TxnCoordinator {
    txns: Mutex<HashMap<String, TxnMetadata>>,
    /// One operation at a time per transactional id (held across the record's replication).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Loaded partitions and the leader epoch (coordinator epoch) they were loaded at.
    loaded: Mutex<HashMap<i32, i32>>,
    loading: Mutex<()>,
    /// Transactional ids whose markers a task is writing now.
    completing: Mutex<HashSet<String>>,
    /// Connections to other brokers' coordinators for produce-time verification and the
    /// adds of transaction version 2 (KIP-890): [`VERIFY_CONNS`] per broker, a transactional
    /// id always on the same one, each used by one request at a time.
    pub(crate) verify_conns: Mutex<HashMap<(i32, usize), VerifyConn>>,
}

/// Connections per coordinator broker for verification and adds: requests of different
/// transactional ids do not all queue behind one round trip (an add waits for its record's
/// replication).
pub const VERIFY_CONNS: usize = 4;

/// A broker's connection for verification requests, with the address it was opened to.
pub(crate) type VerifyConn = Arc<tokio::sync::Mutex<Option<(String, strom_client::Connection)>>>;

impl TxnCoordinator {
    /// Serialises operations on `transactional_id`.
    pub async fn lock(&self, transactional_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .locks
            .lock()
            .entry(transactional_id.to_string())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    pub fn get(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.txns.lock().get(transactional_id).cloned()
    }

    /// Every transactional id this coordinator holds, with its metadata.
    pub fn all(&self) -> Vec<(String, TxnMetadata)> {
        let mut v: Vec<_> = self
            .txns
            .lock()
            .iter()
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The coordinator epoch partition `index` was loaded at, if loaded.
    pub fn loaded_epoch(&self, index: i32) -> Option<i32> {
        self.loaded.lock().get(&index).copied()
    }

    /// Appends `transactional_id`'s record (None: its tombstone) to its partition log.
    /// Returns the log end after the write; the caller waits for replication, then calls
    /// [`Self::put`].
    pub fn write(
        &self,
        log: &PartitionLog,
        transactional_id: &str,
        m: Option<&TxnMetadata>,
    ) -> Result<i64, LogError> {
        let rec = records::record(
            0,
            Some(key(transactional_id)),
            m.map(encode),
            records::now_ms(),
        );
        let bytes = records::encode(&[rec], records::Compression::None).map_err(|e| {
            LogError::InvalidRecord {
                reason: e.to_string(),
            }
        })?;
        let info = log.append(&batch::parse_batches(&bytes, usize::MAX)?)?;
        Ok(info.last_offset + 1)
    }

    /// Makes a persisted record the cached state (None: forgotten).
    pub fn put(&self, transactional_id: &str, m: Option<TxnMetadata>) {
        let mut txns = self.txns.lock();
        match m {
            Some(m) => txns.insert(transactional_id.to_string(), m),
            None => txns.remove(transactional_id),
        };
    }

    /// Marks `transactional_id` as having a marker task; false if one runs already.
    pub fn start_completing(&self, transactional_id: &str) -> bool {
        self.completing.lock().insert(transactional_id.to_string())
    }

    pub fn done_completing(&self, transactional_id: &str) {
        self.completing.lock().remove(transactional_id);
    }

    /// Forgets partition `index` (this broker no longer leads it).
    pub fn unload(&self, index: i32) {
        if self.loaded.lock().remove(&index).is_none() {
            return;
        }
        self.txns.lock().retain(|id, _| txn_partition(id) != index);
        info!(partition = index, "transaction coordinator unloaded");
    }

    /// Replays partition `index` of `__transaction_state` into the cache, once per leader
    /// epoch of it (the coordinator epoch). Returns true when it loaded now.
    pub fn ensure_loaded(&self, index: i32, log: &Arc<PartitionLog>) -> Result<bool, LogError> {
        let epoch = log.leader_epoch();
        if self.loaded.lock().get(&index) == Some(&epoch) {
            return Ok(false);
        }
        let _one_at_a_time = self.loading.lock();
        if self.loaded.lock().get(&index) == Some(&epoch) {
            return Ok(false);
        }
        let mut found: HashMap<String, Option<TxnMetadata>> = HashMap::new();
        let n = log.replay(|rec| {
            if let Some(id) = rec.key.as_deref().and_then(parse_key) {
                found.insert(id, rec.value.as_deref().and_then(decode));
            }
        })?;
        let mut txns = self.txns.lock();
        txns.retain(|id, _| txn_partition(id) != index);
        let mut restored = 0usize;
        for (id, m) in found {
            if let Some(m) = m {
                txns.insert(id, m);
                restored += 1;
            }
        }
        drop(txns);
        self.loaded.lock().insert(index, epoch);
        info!(
            partition = index,
            coordinator_epoch = epoch,
            records = n,
            transactional_ids = restored,
            "transaction coordinator loaded"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn records_replay_into_a_new_coordinator() {
        let (_logs, log, _) = crate::log::tests::setup();
        let old = TxnCoordinator::default();
        // Both ids hash to partition 0 of the test log's topic; index 0 is what we load.
        let m = TxnMetadata {
            producer_id: 4,
            producer_epoch: 2,
            last_producer_epoch: 1,
            timeout_ms: 1000,
            state: TxnState::PrepareCommit,
            partitions: BTreeSet::from([("t".to_string(), 0)]),
            start_ms: 5,
            last_update_ms: 6,
            tv2: true,
            next_producer_id: 8,
            prev_producer_id: 3,
        };
        let ids: Vec<String> = (0..500)
            .map(|i| format!("txn-{i}"))
            .filter(|id| txn_partition(id) == 0)
            .take(2)
            .collect();
        old.write(&log, &ids[0], Some(&m)).expect("write");
        old.write(&log, &ids[1], Some(&m)).expect("write");
        old.write(&log, &ids[1], None).expect("tombstone");
        let new = TxnCoordinator::default();
        assert!(new.ensure_loaded(0, &log).expect("load"));
        assert!(
            !new.ensure_loaded(0, &log).expect("cached"),
            "once per epoch"
        );
        assert_eq!(new.get(&ids[0]), Some(m));
        assert_eq!(new.get(&ids[1]), None, "a tombstone forgets");
        assert_eq!(new.loaded_epoch(0), Some(0));
        new.unload(0);
        assert_eq!(new.get(&ids[0]), None);
    }

    /// A record written before the TV2 fields existed still reads (as none of them).
    #[test]
    fn records_without_the_tv2_extension_still_read() {
        let m = TxnMetadata {
            producer_id: 4,
            producer_epoch: 2,
            last_producer_epoch: 1,
            timeout_ms: 1000,
            state: TxnState::CompleteCommit,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: 6,
            tv2: true,
            next_producer_id: -1,
            prev_producer_id: 3,
        };
        assert_eq!(decode(&encode(&m)), Some(m.clone()));
        let old = bincode::serde::encode_to_vec(&m, bincode::config::standard()).expect("encode");
        let read = decode(&old).expect("decode");
        assert_eq!(
            (read.tv2, read.next_producer_id, read.prev_producer_id),
            (false, -1, -1)
        );
        assert_eq!(read.producer_epoch, 2);
    }

    #[test]
    fn partition_matches_java_string_hash() {
        assert_eq!(txn_partition("hello"), 22);
        assert_eq!(txn_partition("polygenelubricants"), 0);
    }
}
