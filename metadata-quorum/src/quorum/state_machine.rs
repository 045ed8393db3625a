//! The replicated state machine: committed proposals replayed into the [`MetadataImage`], with
//! the full record history kept for `/v1/metadata/events` and for brokers following the log.
//!
//! Persistence is by snapshot: `apply` updates memory only; openraft re-applies committed
//! entries after the last snapshot on start-up (the log store keeps the committed index), and
//! snapshots are written to `snapshot.bin` atomically (write, fsync, rename).

// openraft's storage traits return its (large) StorageError; the helpers here share it.
#![allow(clippy::result_large_err)]

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogId};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use super::log_store::{decode, encode};
use super::types::{
    Applied, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::{LoggedRecord, MetadataImage};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmData {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    records: Vec<LoggedRecord>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// State shared between the state machine (writer) and everything that reads metadata.
pub struct MetadataState {
    data: RwLock<(SmData, Arc<MetadataImage>)>,
    images: watch::Sender<Arc<MetadataImage>>,
}

impl MetadataState {
    fn new() -> Self {
        let (images, _) = watch::channel(Arc::new(MetadataImage::default()));
        Self {
            data: RwLock::new((SmData::default(), Arc::new(MetadataImage::default()))),
            images,
        }
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.data.read().1.clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.subscribe()
    }

    /// Up to `limit` records from metadata offset `from` on.
    pub fn records(&self, from: u64, limit: usize) -> Vec<LoggedRecord> {
        let data = self.data.read();
        data.0
            .records
            .iter()
            .skip(from as usize)
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.data.read().0.last_applied
    }

    fn replace(&self, sm: SmData) -> Result<(), crate::MetadataError> {
        let image = MetadataImage::default().replay(sm.records.iter().map(|r| &r.record))?;
        let image = Arc::new(image);
        *self.data.write() = (sm, image.clone());
        self.images.send_replace(image);
        Ok(())
    }
}

pub struct StateMachine {
    state: Arc<MetadataState>,
    dir: PathBuf,
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

impl StateMachine {
    /// Opens the state machine under `dir`, restoring the last snapshot if there is one.
    pub fn open(dir: &Path) -> Result<(Self, Arc<MetadataState>), StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let state = Arc::new(MetadataState::new());
        let sm = Self {
            state: state.clone(),
            dir: dir.to_path_buf(),
        };
        if let Some(file) = sm.read_snapshot_file()? {
            let data: SmData = decode(&file.data).map_err(|e| sm_err(ErrorVerb::Read, e))?;
            info!(records = data.records.len(), last_applied = ?data.last_applied, "metadata snapshot restored");
            state
                .replace(data)
                .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        }
        Ok((sm, state))
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join("snapshot.bin")
    }

    fn read_snapshot_file(&self) -> Result<Option<SnapshotFile>, StorageError> {
        match std::fs::read(self.snapshot_path()) {
            Ok(b) => decode(&b).map(Some).map_err(|e| sm_err(ErrorVerb::Read, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(sm_err(ErrorVerb::Read, e)),
        }
    }

    fn write_snapshot_file(dir: &Path, file: &SnapshotFile) -> Result<(), StorageError> {
        let bytes = encode(file).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let tmp = dir.join("snapshot.bin.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        f.write_all(&bytes)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        f.sync_all().map_err(|e| sm_err(ErrorVerb::Write, e))?;
        std::fs::rename(&tmp, dir.join("snapshot.bin")).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = self.state.data.read().0.clone();
        let bytes = encode(&data).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let meta = SnapshotMeta {
            last_log_id: data.last_applied,
            last_membership: data.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                data.last_applied.map_or(0, |l| l.leader_id.term),
                data.last_applied.map_or(0, |l| l.index)
            ),
        };
        Self::write_snapshot_file(
            &self.dir,
            &SnapshotFile {
                meta: meta.clone(),
                data: bytes.clone(),
            },
        )?;
        info!(snapshot = %meta.snapshot_id, records = data.records.len(), "metadata snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let data = self.state.data.read();
        Ok((data.0.last_applied, data.0.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut guard = self.state.data.write();
        let (data, image) = &mut *guard;
        let mut changed = false;
        for entry in entries {
            let log_id = *entry.get_log_id();
            data.last_applied = Some(log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Applied {
                    metadata_offset: image.offset,
                    error: None,
                }),
                EntryPayload::Membership(m) => {
                    data.membership = StoredMembership::new(Some(log_id), m);
                    out.push(Applied {
                        metadata_offset: image.offset,
                        error: None,
                    });
                }
                EntryPayload::Normal(proposal) => match image.replay(&proposal.records) {
                    Ok(next) => {
                        for (i, record) in proposal.records.into_iter().enumerate() {
                            data.records.push(LoggedRecord {
                                offset: image.offset + i as u64,
                                timestamp_ms: proposal.timestamp_ms,
                                record,
                            });
                        }
                        *image = Arc::new(next);
                        changed = true;
                        out.push(Applied {
                            metadata_offset: image.offset,
                            error: None,
                        });
                    }
                    Err(e) => {
                        // Deterministic on every node: the same records fail the same way.
                        warn!(error = %e, "proposal does not apply; skipped");
                        out.push(Applied {
                            metadata_offset: image.offset,
                            error: Some(e.to_string()),
                        });
                    }
                },
            }
        }
        if changed {
            self.state.images.send_replace(image.clone());
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Self {
            state: self.state.clone(),
            dir: self.dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let data: SmData = decode(&bytes).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Self::write_snapshot_file(
            &self.dir,
            &SnapshotFile {
                meta: meta.clone(),
                data: bytes,
            },
        )?;
        info!(snapshot = %meta.snapshot_id, "metadata snapshot installed");
        self.state
            .replace(data)
            .map_err(|e| sm_err(ErrorVerb::Write, e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.read_snapshot_file()?.map(|f| Snapshot {
            meta: f.meta,
            snapshot: Box::new(Cursor::new(f.data)),
        }))
    }
}
