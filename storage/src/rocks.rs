//! The RocksDB engine: one database per broker. A partition's batches live in a column
//! family of its own (`log-<topic id>-<partition>`, created at its first write, for up to
//! `RocksOptions::partition_families` partitions) or, past that and for data written by
//! earlier versions, in the shared `log` column family. The small per-partition data (time
//! index, state, producers, epochs, aborted transactions) share one column family per kind.
//!
//! Why a column family per partition (docs/decisions/0019-storage-write-path.md): a
//! partition's keys only grow, so a memtable holding one partition flushes to a file that
//! overlaps no other file, and leveled compaction moves it down the levels without
//! rewriting it. With every partition in one column family each flushed file spans all of
//! them, and compaction rewrote the stored data again and again (5.7x written per byte
//! produced). Retention deletes whole files (`DeleteFilesInRange`) instead of writing
//! tombstones that would overlap the newest data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, BoundColumnFamily, Cache, ColumnFamilyDescriptor,
    Direction, IteratorMode, MultiThreaded, Options, ReadOptions, WriteBufferManager, WriteOptions,
};

use crate::keys::{self, PARTITION_PREFIX_LEN};
use crate::writer::{MemtableLimit, Writer};
use crate::{
    AbortedTxn, BatchInfo, EpochEntry, LogStore, PartitionState, StorageError, StoredBatch,
    TimeIndexEntry, TopicPartition, WriteBatch,
};

type Db = rocksdb::DBWithThreadMode<MultiThreaded>;
type Cf<'a> = Arc<BoundColumnFamily<'a>>;

/// The smallest idle memtable [`LogStore::flush_idle`] writes out.
const IDLE_FLUSH_MIN_BYTES: u64 = 4 << 20;

/// Batches of the partitions without a column family of their own: those past the limit,
/// and every partition an earlier version wrote (they stay where they are).
const CF_SHARED_LOG: &str = "log";
const CF_TIMEINDEX: &str = "timeindex";
const CF_STATE: &str = "state";
const CF_PRODUCERS: &str = "producers";
const CF_EPOCHS: &str = "epochs";
const CF_TXNINDEX: &str = "txnindex";
/// Per partition, the `remove_below` of its last head deletion: no batch starting below it
/// is read again, even one `DeleteFilesInRange` made visible again by dropping the newer
/// file that deleted or replaced it (compaction's rewrites, truncation's deletes).
const CF_FLOORS: &str = "floors";
const LOG_CF_PREFIX: &str = "log-";
/// The column families of small per-partition data, one each for every partition.
const SMALL_FAMILIES: [&str; 6] = [
    CF_TIMEINDEX,
    CF_STATE,
    CF_PRODUCERS,
    CF_EPOCHS,
    CF_TXNINDEX,
    CF_FLOORS,
];

fn log_cf_name(tp: TopicPartition) -> String {
    format!("{LOG_CF_PREFIX}{}-{}", tp.topic_id.simple(), tp.partition)
}

fn parse_log_cf_name(name: &str) -> Option<TopicPartition> {
    let rest = name.strip_prefix(LOG_CF_PREFIX)?;
    let (topic, partition) = rest.split_once('-')?;
    Some(TopicPartition::new(
        uuid::Uuid::try_parse(topic).ok()?,
        partition.parse().ok()?,
    ))
}

/// RocksDB's `max_write_buffer_number` for a partition's column family: it stops the
/// partition's writes (all writes) while this many memtables wait for their flush, and
/// slows them at one fewer. At the default budget the writer's wait for memtable room
/// (four 64 MiB memtables) comes first (decision 0027).
const MAX_WRITE_BUFFERS: i32 = 6;

/// Tuning knobs for the RocksDB engine.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Block cache shared by all column families, in bytes.
    pub block_cache_bytes: usize,
    /// Largest memtable of one partition, in bytes.
    pub write_buffer_bytes: usize,
    /// Memory all memtables together may use, in bytes; past it the oldest memtable is
    /// flushed. This, not the number of partitions, bounds the broker's write memory: while
    /// the memtables (those waiting for a flush included) take twice as much, writes wait
    /// for the running flushes ([`RocksOptions::max_memtable_bytes`]).
    pub total_write_buffer_bytes: usize,
    /// fsync the WAL on every append. Off by default: like Kafka, Strom acknowledges once the
    /// data is in the OS (surviving a process crash) and relies on replication for machine loss.
    pub sync_writes: bool,
    /// Write table files (flushes, compactions) with O_DIRECT where the file system takes it.
    pub direct_io: bool,
    /// How many partitions get a column family of their own. RocksDB rewrites its options
    /// file, listing every column family, each time one is created or dropped, so the cost
    /// of that grows with their number; 0 puts every partition in the shared one.
    pub partition_families: usize,
    /// Where RocksDB keeps its write-ahead log; `None`: in the data directory. Meant for a
    /// RAM-backed file system (a tmpfs) that outlives the broker process but not the host
    /// (decision 0029): the WAL's second write of every byte and the syncs RocksDB makes of
    /// it before each flush then never reach the disk. A crash of the host loses what the
    /// memtables held, and so every flush writes all column families together (RocksDB's
    /// `atomic_flush`): what a flush leaves on the disk is the whole store at one point in
    /// time, never one partition's batches without the state that counts them.
    pub wal_dir: Option<PathBuf>,
}

impl RocksOptions {
    /// The memtable memory at which writes wait for flushes: twice the budget, half of it
    /// being filled and the rest waiting for the disk.
    pub fn max_memtable_bytes(&self) -> usize {
        self.total_write_buffer_bytes.saturating_mul(2)
    }
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 64 << 20,
            total_write_buffer_bytes: 128 << 20,
            sync_writes: false,
            direct_io: true,
            partition_families: 128,
            wal_dir: None,
        }
    }
}

pub struct RocksLogStore {
    db: Arc<Db>,
    /// Makes every write, on a thread of its own ([`Writer`]).
    writer: Writer,
    /// Options of a partition's column family, used when one is created.
    log_opts: Options,
    /// What reads of each partition skip, as last written (see [`Bounds`]).
    bounds: RwLock<HashMap<TopicPartition, Bounds>>,
    /// Serialises creating and dropping partition column families, counts them, and
    /// refuses to create one once the store is closed.
    own_families: Mutex<OwnFamilies>,
    partition_families: usize,
    /// Partitions known to keep their batches in the shared column family.
    shared: RwLock<std::collections::HashSet<TopicPartition>>,
    /// Per column family, the entries of its active memtable at the last
    /// [`LogStore::flush_idle`]: unchanged since then means no write came.
    idle_marks: Mutex<HashMap<String, u64>>,
    /// Every flush writes all column families at once ([`RocksOptions::wal_dir`]).
    atomic_flush: bool,
}

/// The partitions' own column families, behind one lock: how many there are, and whether
/// the store is closed (none is created after [`LogStore::close`]).
#[derive(Default)]
struct OwnFamilies {
    count: usize,
    closed: bool,
}

/// The file in the data directory naming the directory the WAL was last kept in (absent:
/// the data directory itself), and in that directory the data directory it belongs to.
const WAL_DIR_MARKER: &str = "STROM-WAL-DIR";
const WAL_OWNER_MARKER: &str = "STROM-DATA-DIR";

/// Whether `name` is one of RocksDB's WAL files (`000123.log`).
fn is_wal_file(name: &str) -> bool {
    name.strip_suffix(".log")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> StorageError {
    move |e| StorageError::Engine {
        message: format!("{what}: {e}"),
    }
}

/// The WAL files directly under `dir` (none if it does not exist).
fn wal_files_in(dir: &Path) -> Result<Vec<std::fs::DirEntry>, StorageError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_error(format!("listing {}", dir.display()))(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error(format!("listing {}", dir.display())))?;
        if entry.file_name().to_str().is_some_and(is_wal_file) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// The path a marker file holds, `None` if there is no such file.
fn read_marker(file: &Path) -> Result<Option<PathBuf>, StorageError> {
    use std::os::unix::ffi::OsStrExt;
    match std::fs::read(file) {
        Ok(bytes) => Ok(Some(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(format!("reading {}", file.display()))(e)),
    }
}

/// Writes `path` into the marker file `file` whole or not at all (a new file renamed over
/// the old, both synced): a torn marker would name a directory that is not the WAL's.
fn write_marker(file: &Path, path: &Path) -> Result<(), StorageError> {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let dir = file.parent().unwrap_or(Path::new("."));
    let tmp = file.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(path.as_os_str().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(io_error(format!("writing {}", file.display())))
}

fn remove_marker(file: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_error(format!("removing {}", file.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Makes `wal_dir` (or, when `None`, the data directory `path`) hold the store's WAL files
/// before RocksDB opens. RocksDB replays only the WAL files of the directory it is told, so
/// those a previous run left where it kept them (the data directory, or another
/// `--storage-wal-dir`, named in the data directory's `STROM-WAL-DIR`) are moved over first,
/// and none is skipped. A WAL directory names its data directory (`STROM-DATA-DIR`); one
/// naming another, or holding WAL files and naming none, is refused (RocksDB would replay,
/// and delete, WAL files of another database), and one left behind is released.
fn place_wal_files(path: &Path, wal_dir: Option<&Path>) -> Result<(), StorageError> {
    std::fs::create_dir_all(path).map_err(io_error(format!("creating {}", path.display())))?;
    let data =
        std::fs::canonicalize(path).map_err(io_error(format!("resolving {}", path.display())))?;
    let owned = |dir: &Path| -> Result<bool, StorageError> {
        Ok(match read_marker(&dir.join(WAL_OWNER_MARKER))? {
            Some(owner) if owner != data => {
                return Err(StorageError::Engine {
                    message: format!(
                        "the WAL directory {} belongs to the data directory {}, not {}; give \
                         each broker a WAL directory of its own",
                        dir.display(),
                        owner.display(),
                        data.display()
                    ),
                });
            }
            Some(_) => true,
            None => false,
        })
    };
    let target = match wal_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(io_error(format!("creating {}", dir.display())))?;
            let dir = std::fs::canonicalize(dir)
                .map_err(io_error(format!("resolving {}", dir.display())))?;
            if dir != data {
                let held = !wal_files_in(&dir)?.is_empty();
                if !owned(&dir)? {
                    if held {
                        return Err(StorageError::Engine {
                            message: format!(
                                "the WAL directory {} holds WAL files of no known data \
                                 directory; give the broker an empty directory of its own",
                                dir.display()
                            ),
                        });
                    }
                    write_marker(&dir.join(WAL_OWNER_MARKER), &data)?;
                } else if held && !data.join("CURRENT").exists() {
                    // The data directory was emptied (a disk replaced, a replica to be
                    // fetched again); its WAL cannot be replayed into nothing.
                    return Err(StorageError::Engine {
                        message: format!(
                            "the data directory {} holds no database but its WAL directory {} \
                             holds WAL files; empty the WAL directory to start afresh",
                            data.display(),
                            dir.display()
                        ),
                    });
                }
            }
            dir
        }
        None => data.clone(),
    };
    let marker = data.join(WAL_DIR_MARKER);
    let previous = read_marker(&marker)?.unwrap_or_else(|| data.clone());
    if previous != target {
        // A directory given up: its files come over unless it has come to belong to another
        // data directory since (then it is left alone, and its files are not this store's).
        let ours = previous == data || previous.is_dir() && owned(&previous).unwrap_or(false);
        if ours {
            let files = wal_files_in(&previous)?;
            for entry in &files {
                let (from, to) = (entry.path(), target.join(entry.file_name()));
                // Another file system (the usual case: disk to tmpfs) takes a copy.
                if std::fs::rename(&from, &to).is_err() {
                    std::fs::copy(&from, &to).map_err(io_error(format!(
                        "copying {} to {}",
                        from.display(),
                        to.display()
                    )))?;
                    std::fs::File::open(&to)
                        .and_then(|f| f.sync_all())
                        .map_err(io_error(format!("syncing {}", to.display())))?;
                    std::fs::remove_file(&from)
                        .map_err(io_error(format!("removing {}", from.display())))?;
                }
            }
            if !files.is_empty() {
                tracing::info!(from = %previous.display(), to = %target.display(), files = files.len(), "moved the WAL files to the configured WAL directory");
            }
            if previous != data {
                remove_marker(&previous.join(WAL_OWNER_MARKER))?;
            }
        } else if previous.is_dir() {
            tracing::warn!(dir = %previous.display(), "the WAL directory of the previous run now belongs to another data directory; its files are left there");
        }
        if target == data {
            remove_marker(&marker)?;
        } else {
            write_marker(&marker, &target)?;
        }
    }
    Ok(())
}

/// Whether files under `dir` can be opened with O_DIRECT (tmpfs before Linux 6.6 and some
/// FUSE file systems refuse it, and RocksDB would then fail its first flush).
fn supports_direct_io(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join("DIRECT_IO_PROBE");
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Retention drops whole files, so batches it removed can linger in a file that also holds
/// live ones until a later pass drops that file; reads skip them by these two bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bounds {
    /// The log start offset written with the partition's state: a batch wholly below it is
    /// not read.
    start: i64,
    /// What `CF_FLOORS` holds: a batch starting below it is not read (`i64::MIN`: none).
    floor: i64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            start: 0,
            floor: i64::MIN,
        }
    }
}

fn engine(e: rocksdb::Error) -> StorageError {
    StorageError::Engine {
        message: e.into_string(),
    }
}

impl RocksLogStore {
    /// Opens (creating if needed) the store under `path`.
    pub fn open(path: &Path, options: &RocksOptions) -> Result<Self, StorageError> {
        place_wal_files(path, options.wal_dir.as_deref())?;
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        if let Some(dir) = &options.wal_dir {
            db_opts.set_wal_dir(dir);
            db_opts.set_atomic_flush(true);
        }
        // Four flushes at a time and one compaction. RocksDB's default split of two background
        // jobs is one flush: with several partitions written at once their memtables then
        // flush one after another, each waiting for its table file's O_DIRECT writes and for
        // the closed WALs' sync, and produce of 1 KB records on 8 partitions ran at 440-523
        // MB/s against 557-666 MB/s with two (docs/perf.md, "Produce under
        // rdkafka_performance"). A flush spends most of its time waiting for the disk (18-21
        // ms of CPU in a 73-122 ms flush of 64 MiB), and the small families' flushes, each
        // syncing the closed WALs first, took the two slots while a partition's memtables
        // waited (decision 0027; docs/perf.md, "Write stops at one partition (session 28)").
        // Compactions here are mostly trivial moves (decision 0019). rust-rocksdb deprecates
        // these setters in favour of max_background_jobs, whose derived split cannot give
        // several flushes without several compactions; RocksDB still honours them.
        #[allow(deprecated)]
        {
            db_opts.set_max_background_flushes(4);
            db_opts.set_max_background_compactions(1);
        }
        db_opts.set_bytes_per_sync(1 << 20);
        // The budget past which the oldest memtable is switched for a flush (what
        // `db_write_buffer_size` sets), kept here so that the writer can read its usage.
        let manager =
            WriteBufferManager::new_write_buffer_manager(options.total_write_buffer_bytes, false);
        db_opts.set_write_buffer_manager(&manager);
        // With a memtable per partition the WAL is kept until every partition with data in it
        // has flushed; past this size the partitions holding the oldest WAL are flushed.
        db_opts.set_max_total_wal_size(2 * options.total_write_buffer_bytes as u64);
        db_opts.set_stats_dump_period_sec(60);
        // Table files written through the page cache cost more CPU in the kernel's copy than
        // everything else on the write path together (docs/perf.md, "The write path"); the
        // data a tailing consumer reads is still in the memtable or the block cache.
        if options.direct_io && supports_direct_io(path) {
            db_opts.set_use_direct_io_for_flush_and_compaction(true);
        } else if options.direct_io {
            tracing::warn!(path = %path.display(), "the data directory does not take O_DIRECT; table files are written through the page cache");
        }

        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        // A table file's index has an entry per 4 KiB block: 9.1 MB per GB stored in 1 KB
        // batches. Held beside the cache for as long as the file is open (all are), it grew
        // the broker's memory with the data it stores. In the cache it is bounded by the
        // cache and read back from the file when evicted (docs/perf.md, "Table file
        // indexes"). Partitioned in 4 KiB blocks: a 64 MiB file's whole index (~0.6 MB)
        // would take most of one of the cache's 1 MiB shards, two would evict each other,
        // and a miss would read all of it. Only the top level (~6 KB per such file) is
        // pinned, for as long as its file is open.
        table.set_cache_index_and_filter_blocks(true);
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);

        let mut log_opts = Options::default();
        log_opts.set_block_based_table_factory(&table);
        log_opts.set_write_buffer_size(options.write_buffer_bytes);
        // A partition written faster than one flush takes (a 64 MiB memtable fills in about
        // 110 ms at 600 MB/s; its flush took 73-122 ms here) may hold several memtables
        // waiting for the disk. With RocksDB's default of two, writes stopped 28-37 times in
        // 8 s of a one-partition produce. The memory they take together is bounded by the
        // writer's wait for memtable room, not by this ([`RocksOptions::max_memtable_bytes`]).
        log_opts.set_max_write_buffer_number(MAX_WRITE_BUFFERS);
        // Memory is claimed in blocks of this size as a memtable grows; small blocks keep a
        // thousand mostly idle partitions cheap.
        log_opts.set_arena_block_size(1 << 20);
        // Batches are already compressed by producers as they chose; recompressing costs CPU.
        log_opts.set_compression_type(rocksdb::DBCompressionType::None);
        log_opts.set_level_compaction_dynamic_level_bytes(true);
        // Files leave level 0 (by a move, in a partition's own family) once two are there:
        // retention can drop files below level 0 only.
        log_opts.set_level_zero_file_num_compaction_trigger(2);
        log_opts.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(
            PARTITION_PREFIX_LEN,
        ));

        let mut small_opts = Options::default();
        small_opts.set_block_based_table_factory(&table);
        small_opts.set_write_buffer_size(8 << 20);
        // A small family's memtable is switched by every flush that takes it: with atomic
        // flushes (`RocksOptions::wal_dir`) that is every flush, as often as the partitions'.
        // With RocksDB's default of two, writes stopped 42 times in 40 s of producing on eight
        // partitions, every stop on `state` or `timeindex` with two memtables waiting
        // (docs/perf.md, "The WAL on a tmpfs"); the partitions' families allow six.
        small_opts.set_max_write_buffer_number(MAX_WRITE_BUFFERS);

        let existing = Db::list_cf(&db_opts, path).unwrap_or_default();
        let mut cfs = vec![ColumnFamilyDescriptor::new(CF_SHARED_LOG, log_opts.clone())];
        cfs.extend(
            SMALL_FAMILIES.map(|name| ColumnFamilyDescriptor::new(name, small_opts.clone())),
        );
        for name in &existing {
            if parse_log_cf_name(name).is_some() {
                cfs.push(ColumnFamilyDescriptor::new(name, log_opts.clone()));
            }
        }
        let db = Arc::new(Db::open_cf_descriptors(&db_opts, path, cfs).map_err(engine)?);
        let mut write_options = WriteOptions::default();
        write_options.set_sync(options.sync_writes);
        let store = Self {
            writer: Writer::start(
                Arc::clone(&db),
                write_options,
                Some(MemtableLimit {
                    manager,
                    max_bytes: options.max_memtable_bytes(),
                }),
            )?,
            db,
            log_opts,
            bounds: RwLock::new(HashMap::new()),
            own_families: Mutex::new(OwnFamilies::default()),
            partition_families: options.partition_families,
            shared: RwLock::new(Default::default()),
            idle_marks: Mutex::new(HashMap::new()),
            atomic_flush: options.wal_dir.is_some(),
        };
        let partitions = store.partitions()?;
        let mut bounds: HashMap<TopicPartition, Bounds> = partitions
            .iter()
            .map(|(tp, state)| {
                let b = Bounds {
                    start: state.log_start_offset,
                    ..Bounds::default()
                };
                (*tp, b)
            })
            .collect();
        for item in store
            .db
            .iterator_cf(&store.cf(CF_FLOORS)?, IteratorMode::Start)
        {
            let (key, value) = item.map_err(engine)?;
            let (Some(tp), Ok(floor)) =
                (keys::decode_partition(&key), <[u8; 8]>::try_from(&*value))
            else {
                return Err(StorageError::Corrupt {
                    what: "floor entry of unexpected length".into(),
                });
            };
            bounds.entry(tp).or_default().floor = i64::from_be_bytes(floor);
        }
        *store.bounds.write() = bounds;
        let mut own = 0;
        for name in &existing {
            match parse_log_cf_name(name) {
                // A partition deleted by a process that died before dropping its batches.
                Some(tp) if !store.bounds.read().contains_key(&tp) => {
                    store.db.drop_cf(name).map_err(engine)?;
                }
                Some(_) => own += 1,
                None => {}
            }
        }
        store.own_families.lock().count = own;
        Ok(store)
    }

    fn cf(&self, name: &str) -> Result<Cf<'_>, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Corrupt {
                what: format!("column family {name} is missing"),
            })
    }

    /// `tp`'s own column family, if it has one.
    fn own_cf(&self, tp: TopicPartition) -> Option<Cf<'_>> {
        self.db.cf_handle(&log_cf_name(tp))
    }

    /// The column family holding `tp`'s batches: its own, else the shared one.
    fn log_cf(&self, tp: TopicPartition) -> Result<Cf<'_>, StorageError> {
        match self.own_cf(tp) {
            Some(cf) => Ok(cf),
            None => self.cf(CF_SHARED_LOG),
        }
    }

    /// The column family `tp`'s next batches go to. A partition writing its first batch gets
    /// its own while fewer than `partition_families` exist; one with batches in the shared
    /// column family stays there.
    fn log_cf_for_write(&self, tp: TopicPartition) -> Result<Cf<'_>, StorageError> {
        if let Some(cf) = self.own_cf(tp) {
            return Ok(cf);
        }
        if self.partition_families == 0 || self.shared.read().contains(&tp) {
            return self.cf(CF_SHARED_LOG);
        }
        let mut own = self.own_families.lock();
        if own.closed {
            // The write would be refused; its family would outlive the shutdown flush.
            return Err(StorageError::Closed);
        }
        let name = log_cf_name(tp);
        if self.db.cf_handle(&name).is_none() {
            let shared = self.cf(CF_SHARED_LOG)?;
            let (lower, upper) = Self::partition_bounds(tp);
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(upper.to_vec());
            let mut it = self.db.raw_iterator_cf_opt(&shared, opts);
            it.seek(lower);
            let has_shared_batches = it.valid();
            it.status().map_err(engine)?;
            if has_shared_batches || own.count >= self.partition_families {
                self.shared.write().insert(tp);
                return Ok(shared);
            }
            self.db.create_cf(&name, &self.log_opts).map_err(engine)?;
            own.count += 1;
        }
        self.cf(&name)
    }

    fn bounds_of(&self, tp: TopicPartition) -> Bounds {
        self.bounds.read().get(&tp).copied().unwrap_or_default()
    }

    /// Adds `state` (and a new `floor`, if any) to `batch` and writes it; once written, reads
    /// follow its log start and the floor.
    fn write_with_state(
        &self,
        tp: TopicPartition,
        mut batch: rocksdb::WriteBatch,
        state: PartitionState,
        floor: Option<i64>,
    ) -> Result<(), StorageError> {
        self.put_state(&mut batch, tp, state, floor)?;
        self.writer.write(batch)?;
        let next = Bounds {
            start: state.log_start_offset,
            floor: floor.unwrap_or(self.bounds_of(tp).floor),
        };
        // Appends leave the bounds where they were: only a change takes the write lock.
        if self.bounds.read().get(&tp) != Some(&next) {
            self.bounds.write().insert(tp, next);
        }
        Ok(())
    }

    /// The RocksDB write batch of an append (without the partition state, which
    /// `write_with_state` adds), sized once: RocksDB's batch otherwise grows by doubling,
    /// copying a produce's records up to twice more and faulting in fresh pages each time
    /// (`WriteBatch::Put` took 19% of the broker's CPU under a 100-byte produce load, 5% once
    /// sized; docs/perf.md).
    fn append_batch(
        &self,
        tp: TopicPartition,
        write: &WriteBatch,
    ) -> Result<rocksdb::WriteBatch, StorageError> {
        let mut batch = rocksdb::WriteBatch::with_capacity_bytes(write_batch_capacity(write));
        // Where the representation starts: it must not move (a reallocation) below. Checked in
        // debug builds only: the produce path need not ask RocksDB for it.
        #[cfg(debug_assertions)]
        let start = batch.data().as_ptr();
        if !write.batches.is_empty() {
            let log = self.log_cf_for_write(tp)?;
            for b in &write.batches {
                batch.put_cf(&log, keys::offset_key(tp, b.base_offset), &b.data);
            }
        }
        if !write.index.is_empty() {
            let index = self.cf(CF_TIMEINDEX)?;
            for e in &write.index {
                batch.put_cf(
                    &index,
                    keys::timestamp_key(tp, e.timestamp),
                    e.base_offset.to_be_bytes(),
                );
            }
        }
        if !write.producers.is_empty() {
            let producers = self.cf(CF_PRODUCERS)?;
            for (pid, bytes) in &write.producers {
                batch.put_cf(&producers, keys::key(tp, *pid as u64), bytes);
            }
        }
        if !write.epochs.is_empty() {
            let epochs = self.cf(CF_EPOCHS)?;
            for e in &write.epochs {
                batch.put_cf(
                    &epochs,
                    keys::key(tp, e.epoch.max(0) as u64),
                    e.start_offset.to_be_bytes(),
                );
            }
        }
        if !write.aborted.is_empty() {
            let txns = self.cf(CF_TXNINDEX)?;
            for a in &write.aborted {
                batch.put_cf(&txns, keys::offset_key(tp, a.last_offset), a.encode_value());
            }
        }
        #[cfg(debug_assertions)]
        assert_eq!(
            batch.data().as_ptr(),
            start,
            "the write batch was reallocated"
        );
        Ok(batch)
    }

    /// The partition state (and a new floor, if any) that every write ends with.
    fn put_state(
        &self,
        batch: &mut rocksdb::WriteBatch,
        tp: TopicPartition,
        state: PartitionState,
        floor: Option<i64>,
    ) -> Result<(), StorageError> {
        batch.put_cf(
            &self.cf(CF_STATE)?,
            keys::partition_prefix(tp),
            state.encode(),
        );
        if let Some(floor) = floor {
            batch.put_cf(
                &self.cf(CF_FLOORS)?,
                keys::partition_prefix(tp),
                floor.to_be_bytes(),
            );
        }
        Ok(())
    }

    /// The writer's waits for memtable room ([`RocksOptions::max_memtable_bytes`]): their
    /// number and total length, beside RocksDB's own stall counters.
    fn writer_waits(&self) -> [(&'static str, u64); 2] {
        let (count, micros) = self.writer.waits();
        [
            ("strom.memtable-waits", count),
            ("strom.memtable-wait-micros", micros),
        ]
    }

    /// The names of the column families that may hold data: every partition's own (those
    /// without one named too), the shared log and the small ones.
    fn family_names(&self) -> Vec<String> {
        let partitions: Vec<TopicPartition> = self.bounds.read().keys().copied().collect();
        partitions
            .into_iter()
            .map(log_cf_name)
            .chain(
                [CF_SHARED_LOG]
                    .into_iter()
                    .chain(SMALL_FAMILIES)
                    .map(String::from),
            )
            .collect()
    }

    /// Flushes the memtables of every column family: atomically, as one, when the store
    /// flushes atomically ([`RocksOptions::wal_dir`]).
    fn flush_all(&self, opts: &rocksdb::FlushOptions) -> Result<(), StorageError> {
        if self.atomic_flush {
            // No family named: RocksDB takes every one, so none created meanwhile (a
            // partition's first write) is left behind the state counting its batches.
            let none: [&Cf<'_>; 0] = [];
            return self.db.flush_cfs_opt(&none, opts).map_err(engine);
        }
        let cfs: Vec<Cf<'_>> = self
            .family_names()
            .iter()
            .filter_map(|name| self.db.cf_handle(name))
            .collect();
        let refs: Vec<&Cf<'_>> = cfs.iter().collect();
        self.db.flush_cfs_opt(&refs, opts).map_err(engine)
    }

    /// Before a change RocksDB makes on the disk at once, outside the WAL (dropping a column
    /// family, deleting table files): with the WAL apart, everything written before it is
    /// flushed first, so that a lost WAL cannot leave the change without the writes it
    /// follows (a log start moved past dropped files, a deleted partition's state).
    fn flush_before_unlogged_change(&self) -> Result<(), StorageError> {
        if !self.atomic_flush {
            return Ok(());
        }
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(true);
        self.flush_all(&opts)
    }

    fn partition_bounds(tp: TopicPartition) -> ([u8; keys::KEY_LEN], [u8; keys::KEY_LEN]) {
        (keys::key(tp, 0), keys::key(tp, u64::MAX))
    }
}

/// The bytes RocksDB's write batch for `write` takes: its 12-byte header, and per entry a
/// tag, a column family id, two length prefixes and the key (all under 48 bytes with the
/// 28-byte keys), then the value; the partition state and floor added last.
fn write_batch_capacity(write: &WriteBatch) -> usize {
    const ENTRY: usize = 48;
    let values: usize = write.batches.iter().map(|b| b.data.len()).sum::<usize>()
        + write.producers.iter().map(|(_, v)| v.len()).sum::<usize>()
        + write.aborted.len() * AbortedTxn::ENCODED_LEN
        + (write.index.len() + write.epochs.len()) * 8
        + PartitionState::ENCODED_LEN
        + 8;
    let entries = write.batches.len()
        + write.index.len()
        + write.producers.len()
        + write.epochs.len()
        + write.aborted.len()
        + 2;
    12 + values + entries * ENTRY
}

/// RocksDB properties served as metrics, summed over the partitions' column families or,
/// for those of the whole database, read once.
const ENGINE_PROPERTIES: [(&str, Aggregate); 16] = [
    ("rocksdb.cur-size-all-mem-tables", Aggregate::Sum),
    ("rocksdb.estimate-table-readers-mem", Aggregate::Sum),
    ("rocksdb.num-immutable-mem-table", Aggregate::Sum),
    ("rocksdb.mem-table-flush-pending", Aggregate::Sum),
    ("rocksdb.num-running-flushes", Aggregate::Database),
    ("rocksdb.compaction-pending", Aggregate::Sum),
    ("rocksdb.num-running-compactions", Aggregate::Database),
    ("rocksdb.estimate-pending-compaction-bytes", Aggregate::Sum),
    ("rocksdb.is-write-stopped", Aggregate::Database),
    ("rocksdb.actual-delayed-write-rate", Aggregate::Database),
    ("rocksdb.background-errors", Aggregate::Database),
    ("rocksdb.total-sst-files-size", Aggregate::Sum),
    ("rocksdb.live-sst-files-size", Aggregate::Sum),
    ("rocksdb.block-cache-usage", Aggregate::Database),
    ("rocksdb.block-cache-capacity", Aggregate::Database),
    ("rocksdb.block-cache-pinned-usage", Aggregate::Database),
];

/// How often RocksDB found the writes of `cfs` stopped, and slowed, summed from each
/// family's `rocksdb.cf-write-stall-stats`: a count per family each time it recomputes the
/// family's state (after a flush or compaction) and finds it so. A dropped family's counts
/// go with it. The "Cumulative stall" time RocksDB logs is only written once a minute, so a
/// short load often ends before it counts anything.
fn write_stalls(db: &Db, cfs: &[Cf<'_>]) -> [(&'static str, u64); 2] {
    let (mut stops, mut delays) = (0, 0);
    for cf in cfs {
        if let Some((s, d)) = db
            .property_value_cf(cf, "rocksdb.cf-write-stall-stats")
            .ok()
            .flatten()
            .and_then(|text| stall_totals(&text))
        {
            stops += s;
            delays += d;
        }
    }
    [
        ("strom.write-stall-stops", stops),
        ("strom.write-stall-delays", delays),
    ]
}

/// The total stops and delays in RocksDB's write stall text ("Write Stall (count): a: 1,
/// total-delays: 2, total-stops: 3"); `None` if either is missing.
fn stall_totals(text: &str) -> Option<(u64, u64)> {
    let text = text.strip_prefix("Write Stall (count):").unwrap_or(text);
    let count = |key: &str| {
        text.split(',')
            .filter_map(|item| item.split_once(':'))
            .find(|(k, _)| k.trim() == key)
            .and_then(|(_, v)| v.trim().parse().ok())
    };
    Some((count("total-stops")?, count("total-delays")?))
}

#[derive(Clone, Copy, PartialEq)]
enum Aggregate {
    Sum,
    Database,
}

impl LogStore for RocksLogStore {
    fn engine_stats(&self) -> Vec<(&'static str, u64)> {
        let partitions: Vec<TopicPartition> = self.bounds.read().keys().copied().collect();
        let cfs: Vec<Cf<'_>> = partitions
            .into_iter()
            .filter_map(|tp| self.own_cf(tp))
            .chain(self.cf(CF_SHARED_LOG).ok())
            .collect();
        let Ok(state) = self.cf(CF_STATE) else {
            return Vec::new();
        };
        ENGINE_PROPERTIES
            .iter()
            .filter_map(|&(name, aggregate)| match aggregate {
                Aggregate::Database => {
                    let v = self.db.property_int_value_cf(&state, name).ok().flatten()?;
                    Some((name, v))
                }
                Aggregate::Sum => {
                    let v = cfs
                        .iter()
                        .filter_map(|cf| self.db.property_int_value_cf(cf, name).ok().flatten())
                        .sum();
                    Some((name, v))
                }
            })
            .chain(self.writer_waits())
            .chain(write_stalls(
                &self.db,
                &cfs.iter()
                    .cloned()
                    .chain(SMALL_FAMILIES.iter().filter_map(|name| self.cf(name).ok()))
                    .collect::<Vec<_>>(),
            ))
            .collect()
    }

    fn flush_idle(&self) -> usize {
        let names = self.family_names();
        let mut marks = self.idle_marks.lock();
        let mut seen = HashMap::with_capacity(names.len());
        let mut flushed = 0;
        // With the WAL apart: families holding writes they already held at the last look.
        let mut held = 0;
        for name in names {
            let Some(cf) = self.db.cf_handle(&name) else {
                continue;
            };
            let Ok(Some(entries)) = self
                .db
                .property_int_value_cf(&cf, "rocksdb.num-entries-active-mem-table")
            else {
                continue;
            };
            if self.atomic_flush {
                // A write stays only in the WAL (in memory) for two intervals at most, as a
                // write stays only in Kafka's page cache until the kernel writes it back.
                if entries > 0 && marks.get(&name).is_some_and(|&before| before > 0) {
                    held += 1;
                }
                seen.insert(name, entries);
                continue;
            }
            // Only a memtable worth the file it becomes: a small one holds little memory
            // (untouched arena pages cost none), and flushing every trickle of writes would
            // leave a file per write.
            let big = || {
                self.db
                    .property_int_value_cf(&cf, "rocksdb.cur-size-active-mem-table")
                    .ok()
                    .flatten()
                    .is_some_and(|bytes| bytes >= IDLE_FLUSH_MIN_BYTES)
            };
            if entries > 0 && marks.get(&name) == Some(&entries) && big() {
                // In the background: a flush of an idle memtable needs no waiting for.
                let mut opts = rocksdb::FlushOptions::default();
                opts.set_wait(false);
                match self.db.flush_cf_opt(&cf, &opts) {
                    Ok(()) => flushed += 1,
                    Err(e) => tracing::warn!(cf = %name, error = %e, "idle memtable flush failed"),
                }
                continue; // its next mark starts from the empty memtable
            }
            seen.insert(name, entries);
        }
        if held > 0 {
            // One family flushed alone would be ahead of the others once the WAL is lost; all
            // of them go, the busy ones' memtables cut short. Every mark starts again.
            let mut opts = rocksdb::FlushOptions::default();
            opts.set_wait(false);
            match self.flush_all(&opts) {
                Ok(()) => flushed = held,
                Err(e) => tracing::warn!(error = %e, "idle memtable flush failed"),
            }
            seen.clear();
        }
        *marks = seen;
        flushed
    }

    fn close(&self) -> Result<(), StorageError> {
        // No partition's column family is created from now on, every write handed to the
        // writer before this is written, every later one refused: nothing lands after the
        // flush below, only in the WAL.
        self.own_families.lock().closed = true;
        let closed = self.writer.close();
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(true);
        // Flushed even if the writer thread has died: what it wrote is in the memtables.
        let flushed = self.flush_all(&opts);
        closed.and(flushed)
    }

    fn create_partition(&self, tp: TopicPartition) -> Result<PartitionState, StorageError> {
        let cf = self.cf(CF_STATE)?;
        let key = keys::partition_prefix(tp);
        if let Some(existing) = self.db.get_pinned_cf(&cf, key).map_err(engine)? {
            let state = PartitionState::decode(&existing)?;
            self.bounds.write().entry(tp).or_default().start = state.log_start_offset;
            return Ok(state);
        }
        let state = PartitionState::empty(0);
        self.write_with_state(tp, rocksdb::WriteBatch::default(), state, None)?;
        Ok(state)
    }

    fn append(&self, tp: TopicPartition, write: WriteBatch) -> Result<(), StorageError> {
        let batch = self.append_batch(tp, &write)?;
        self.write_with_state(tp, batch, write.state, None)
    }

    fn read(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, StorageError> {
        let mut out = Vec::new();
        self.scan(tp, offset, end_offset, max_bytes, |v| {
            out.push(Bytes::copy_from_slice(v))
        })?;
        Ok(out)
    }

    fn read_into(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
        out: &mut bytes::BytesMut,
    ) -> Result<usize, StorageError> {
        self.scan(tp, offset, end_offset, max_bytes, |v| {
            out.extend_from_slice(v)
        })
    }

    fn lookup_timestamp(
        &self,
        tp: TopicPartition,
        timestamp: i64,
    ) -> Result<Option<TimeIndexEntry>, StorageError> {
        let cf = self.cf(CF_TIMEINDEX)?;
        let (_, upper) = Self::partition_bounds(tp);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(&cf, opts);
        it.seek(keys::timestamp_key(tp, timestamp));
        read_index_entry(&it)
    }

    fn last_time_index_entry(
        &self,
        tp: TopicPartition,
    ) -> Result<Option<TimeIndexEntry>, StorageError> {
        let cf = self.cf(CF_TIMEINDEX)?;
        let (lower, upper) = Self::partition_bounds(tp);
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(lower.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(&cf, opts);
        it.seek_for_prev(upper);
        read_index_entry(&it)
    }

    fn producer_states(&self, tp: TopicPartition) -> Result<Vec<(i64, Vec<u8>)>, StorageError> {
        self.keyed(CF_PRODUCERS, tp, "producer", |id, value| {
            Ok((id as i64, value.to_vec()))
        })
    }

    fn partitions(&self) -> Result<Vec<(TopicPartition, PartitionState)>, StorageError> {
        let cf = self.cf(CF_STATE)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(&[], Direction::Forward))
        {
            let (key, value) = item.map_err(engine)?;
            let tp = keys::decode_partition(&key).ok_or_else(|| StorageError::Corrupt {
                what: "state key of unexpected length".into(),
            })?;
            out.push((tp, PartitionState::decode(&value)?));
        }
        Ok(out)
    }

    fn delete_partition(&self, tp: TopicPartition) -> Result<(), StorageError> {
        let (lower, upper) = Self::partition_bounds(tp);
        let mut batch = rocksdb::WriteBatch::default();
        for name in [CF_TIMEINDEX, CF_PRODUCERS, CF_EPOCHS, CF_TXNINDEX] {
            let cf = self.cf(name)?;
            batch.delete_range_cf(&cf, lower, upper);
            batch.delete_cf(&cf, upper);
        }
        batch.delete_cf(&self.cf(CF_STATE)?, keys::partition_prefix(tp));
        batch.delete_cf(&self.cf(CF_FLOORS)?, keys::partition_prefix(tp));
        let shared = self.cf(CF_SHARED_LOG)?;
        batch.delete_range_cf(&shared, lower, upper);
        batch.delete_cf(&shared, upper);
        self.writer.write(batch)?;
        self.bounds.write().remove(&tp);
        self.shared.write().remove(&tp);
        // Its own column family goes whole. A crash before this leaves a column family
        // without a state, dropped when the store next opens.
        let mut own = self.own_families.lock();
        let name = log_cf_name(tp);
        if self.db.cf_handle(&name).is_some() {
            self.flush_before_unlogged_change()?;
            self.db.drop_cf(&name).map_err(engine)?;
            own.count = own.count.saturating_sub(1);
        }
        Ok(())
    }

    fn batch_infos(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        limit: usize,
    ) -> Result<Vec<BatchInfo>, StorageError> {
        let bounds = self.bounds_of(tp);
        self.batch_infos_from(
            tp,
            offset.max(bounds.start),
            end_offset,
            bounds.floor,
            limit,
        )
    }

    fn delete_head(
        &self,
        tp: TopicPartition,
        remove_below: i64,
        state: PartitionState,
    ) -> Result<(), StorageError> {
        let mut batch = rocksdb::WriteBatch::default();
        // Aborted transactions are keyed by their marker: those below go with the batches.
        batch.delete_range_cf(
            &self.cf(CF_TXNINDEX)?,
            keys::key(tp, 0),
            keys::offset_key(tp, remove_below),
        );
        // Time index entries naming removed batches are a prefix of the index (both grow).
        let index = self.cf(CF_TIMEINDEX)?;
        let (lower, upper) = Self::partition_bounds(tp);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(&index, opts);
        it.seek(lower);
        while it.valid() {
            let (Some(key), Some(value)) = (it.key(), it.value()) else {
                break;
            };
            let base: [u8; 8] = value.try_into().map_err(|_| StorageError::Corrupt {
                what: "time index value of unexpected length".into(),
            })?;
            if i64::from_be_bytes(base) >= remove_below {
                break;
            }
            batch.delete_cf(&index, key);
            it.next();
        }
        it.status().map_err(engine)?;
        drop(it);
        let floor = Some(remove_below.max(self.bounds_of(tp).floor));
        let Some(own) = self.own_cf(tp) else {
            // In the shared column family, a range tombstone; compaction frees the space.
            batch.delete_range_cf(
                &self.cf(CF_SHARED_LOG)?,
                keys::key(tp, 0),
                keys::offset_key(tp, remove_below),
            );
            return self.write_with_state(tp, batch, state, floor);
        };
        // In its own, the batches are not deleted key by key: tombstones below the live range
        // would share a memtable, then a file, with the newest batches, and compacting that
        // file would rewrite the whole partition. The new log start hides them at once, and
        // every file holding only batches below `remove_below` is dropped as it is.
        self.write_with_state(tp, batch, state, floor)?;
        if remove_below > 0 {
            // The deletion is done once the state is written; freeing the files is tidying
            // up, and a file left now goes in a later pass.
            if let Err(e) = self.flush_before_unlogged_change() {
                tracing::warn!(partition = %tp, error = %e, "could not flush before dropping table files below the log start");
                return Ok(());
            }
            if let Err(e) = self.db.delete_file_in_range_cf(
                &own,
                keys::key(tp, 0),
                keys::offset_key(tp, remove_below - 1),
            ) {
                tracing::warn!(partition = %tp, error = %e, "could not drop table files below the log start");
            }
        }
        Ok(())
    }

    fn replace_batches(
        &self,
        tp: TopicPartition,
        remove: &[i64],
        insert: &[StoredBatch],
        remove_aborted: &[i64],
        state: PartitionState,
    ) -> Result<(), StorageError> {
        let log = self.log_cf_for_write(tp)?;
        let mut batch = rocksdb::WriteBatch::default();
        for base in remove {
            batch.delete_cf(&log, keys::offset_key(tp, *base));
        }
        if !remove_aborted.is_empty() {
            let txns = self.cf(CF_TXNINDEX)?;
            for last in remove_aborted {
                batch.delete_cf(&txns, keys::offset_key(tp, *last));
            }
        }
        for b in insert {
            batch.put_cf(&log, keys::offset_key(tp, b.base_offset), &b.data);
        }
        self.write_with_state(tp, batch, state, None)
    }

    fn leader_epochs(&self, tp: TopicPartition) -> Result<Vec<EpochEntry>, StorageError> {
        self.keyed(CF_EPOCHS, tp, "epoch", |epoch, value| {
            let start: [u8; 8] = value.try_into().map_err(|_| StorageError::Corrupt {
                what: "epoch value of unexpected length".into(),
            })?;
            Ok(EpochEntry {
                epoch: epoch as i32,
                start_offset: i64::from_be_bytes(start),
            })
        })
    }

    fn aborted_txns(&self, tp: TopicPartition) -> Result<Vec<AbortedTxn>, StorageError> {
        self.keyed(CF_TXNINDEX, tp, "aborted transaction", |last, value| {
            AbortedTxn::decode_value(last as i64, value)
        })
    }

    fn write_state(&self, tp: TopicPartition, state: PartitionState) -> Result<(), StorageError> {
        self.write_with_state(tp, rocksdb::WriteBatch::default(), state, None)
    }

    fn truncate(
        &self,
        tp: TopicPartition,
        offset: i64,
        current: PartitionState,
        producers: &[(i64, Vec<u8>)],
    ) -> Result<PartitionState, StorageError> {
        let (lower, upper) = Self::partition_bounds(tp);
        let mut batch = rocksdb::WriteBatch::default();
        // Batches to remove: the one holding `offset` (if it reaches it) and all after it,
        // including any a head deletion only hid (the truncation may go below the log start).
        let removed = self.batch_infos_from(tp, offset, i64::MAX, i64::MIN, usize::MAX)?;
        let log = self.log_cf(tp)?;
        for b in &removed {
            batch.delete_cf(&log, keys::offset_key(tp, b.base_offset));
        }
        // Hidden batches were already taken out of the size, and they do not move the end.
        let visible = |b: &&BatchInfo| b.last_offset >= current.log_start_offset;
        let first_removed = removed.iter().find(visible).map(|b| b.base_offset);
        let removed_bytes: u64 = removed.iter().filter(visible).map(|b| b.size).sum();
        let end = crate::memory::truncated_end(first_removed, offset, current);
        // Time index entries naming removed batches are a suffix of the index; the newest
        // entry left gives the max timestamp.
        let index = self.cf(CF_TIMEINDEX)?;
        let mut max_timestamp = -1;
        {
            let mut opts = ReadOptions::default();
            opts.set_iterate_lower_bound(lower.to_vec());
            let mut it = self.db.raw_iterator_cf_opt(&index, opts);
            it.seek_for_prev(upper);
            while let Some(entry) = read_index_entry(&it)? {
                if entry.base_offset < end {
                    max_timestamp = entry.timestamp;
                    break;
                }
                batch.delete_cf(&index, keys::timestamp_key(tp, entry.timestamp));
                it.prev();
            }
        }
        let epochs = self.cf(CF_EPOCHS)?;
        for e in self.leader_epochs(tp)? {
            if e.start_offset >= end {
                batch.delete_cf(&epochs, keys::key(tp, e.epoch.max(0) as u64));
            }
        }
        // Aborted transactions whose marker was in the removed suffix.
        let txns = self.cf(CF_TXNINDEX)?;
        batch.delete_range_cf(&txns, keys::offset_key(tp, end), upper);
        batch.delete_cf(&txns, upper);
        let producer_cf = self.cf(CF_PRODUCERS)?;
        batch.delete_range_cf(&producer_cf, lower, upper);
        batch.delete_cf(&producer_cf, upper);
        for (pid, bytes) in producers {
            batch.put_cf(&producer_cf, keys::key(tp, *pid as u64), bytes);
        }
        // Every batch from `offset` on is gone, so the floor may come down to it: a log that
        // starts again lower must see its new batches.
        let floor = self.bounds_of(tp).floor;
        let lowered = (floor > offset.max(0)).then_some(offset.max(0));
        let state = crate::memory::truncated_state(current, end, removed_bytes, max_timestamp);
        self.write_with_state(tp, batch, state, lowered)?;
        Ok(state)
    }
}

impl RocksLogStore {
    /// Every entry of `tp` in column family `cf`, in key order, as `decode(key suffix,
    /// value)` makes it; `what` names the data in corruption errors.
    fn keyed<T>(
        &self,
        cf: &str,
        tp: TopicPartition,
        what: &str,
        decode: impl Fn(u64, &[u8]) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        let cf = self.cf(cf)?;
        let (lower, upper) = Self::partition_bounds(tp);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper.to_vec());
        let mut out = Vec::new();
        for item in
            self.db
                .iterator_cf_opt(&cf, opts, IteratorMode::From(&lower, Direction::Forward))
        {
            let (key, value) = item.map_err(engine)?;
            let suffix = keys::decode_suffix(&key).ok_or_else(|| StorageError::Corrupt {
                what: format!("{what} key of unexpected length"),
            })?;
            out.push(decode(suffix, &value)?);
        }
        Ok(out)
    }

    /// Walks the batches of `tp` from the one holding `offset` (the log start hides nothing
    /// here), stopping before `end_offset`, handing each key and value to `take` until it
    /// answers false.
    /// Batches starting below `floor` are skipped.
    fn walk(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        floor: i64,
        mut take: impl FnMut(i64, i64, &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        if offset >= end_offset {
            return Ok(());
        }
        let cf = self.log_cf(tp)?;
        // Not `fill_cache(false)`: the index blocks a read needs come through the block
        // cache too, and would then be read from their file on every fetch.
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(keys::key(tp, 0).to_vec());
        opts.set_iterate_upper_bound(keys::offset_key(tp, end_offset).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(&cf, opts);
        // The batch holding `offset` is the last one starting at or before it.
        it.seek_for_prev(keys::offset_key(tp, offset));
        if !it.valid() {
            it.seek_to_first();
        }
        while it.valid() {
            let (Some(key), Some(value)) = (it.key(), it.value()) else {
                break;
            };
            let base = keys::decode_suffix(key).ok_or_else(|| StorageError::Corrupt {
                what: "log key of unexpected length".into(),
            })? as i64;
            let last = base
                + keys::last_offset_delta(value).ok_or_else(|| StorageError::Corrupt {
                    what: format!("batch at offset {base} is truncated"),
                })?;
            if last >= offset && base >= floor && !take(base, last, value) {
                break;
            }
            it.next();
        }
        it.status().map_err(engine)
    }

    fn batch_infos_from(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        floor: i64,
        limit: usize,
    ) -> Result<Vec<BatchInfo>, StorageError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.walk(tp, offset, end_offset, floor, |base, last, value| {
            out.push(BatchInfo {
                base_offset: base,
                last_offset: last,
                max_timestamp: keys::max_timestamp(value).unwrap_or(-1),
                size: value.len() as u64,
            });
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Hands the values of the batches a read returns to `take`; returns their count.
    fn scan(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
        mut take: impl FnMut(&[u8]),
    ) -> Result<usize, StorageError> {
        let mut count = 0usize;
        let mut total = 0usize;
        let bounds = self.bounds_of(tp);
        let from = offset.max(bounds.start);
        self.walk(tp, from, end_offset, bounds.floor, |_, _, value| {
            if count > 0 && total + value.len() > max_bytes {
                return false;
            }
            total += value.len();
            take(value);
            count += 1;
            total < max_bytes
        })?;
        Ok(count)
    }
}

fn read_index_entry(
    it: &rocksdb::DBRawIteratorWithThreadMode<'_, Db>,
) -> Result<Option<TimeIndexEntry>, StorageError> {
    if !it.valid() {
        it.status().map_err(engine)?;
        return Ok(None);
    }
    let (Some(key), Some(value)) = (it.key(), it.value()) else {
        return Ok(None);
    };
    let ts = keys::decode_suffix(key).ok_or_else(|| StorageError::Corrupt {
        what: "time index key of unexpected length".into(),
    })?;
    let offset: [u8; 8] = value.try_into().map_err(|_| StorageError::Corrupt {
        what: "time index value of unexpected length".into(),
    })?;
    Ok(Some(TimeIndexEntry {
        timestamp: keys::unflip(ts),
        base_offset: i64::from_be_bytes(offset),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[test]
    fn conformance_suite() {
        // Every partition in its own column family; all in the shared one; and one of each
        // (the suite's partitions past the first share); and the WAL in a directory of its
        // own, flushes atomic.
        for (families, wal) in [(128, false), (0, false), (1, false), (128, true)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut n = 0;
            conformance::run(|| {
                n += 1;
                let options = RocksOptions {
                    partition_families: families,
                    wal_dir: wal.then(|| dir.path().join(format!("wal-{n}"))),
                    ..RocksOptions::default()
                };
                RocksLogStore::open(&dir.path().join(n.to_string()), &options).expect("open")
            });
        }
    }

    /// Partitions 0 and 1 of the topic whose id is `topic`.
    fn two_partitions(topic: u128) -> (TopicPartition, TopicPartition) {
        let id = uuid::Uuid::from_u128(topic);
        (TopicPartition::new(id, 0), TopicPartition::new(id, 1))
    }

    fn open_small(path: &Path) -> RocksLogStore {
        RocksLogStore::open(
            path,
            &RocksOptions {
                write_buffer_bytes: 1 << 20,
                ..RocksOptions::default()
            },
        )
        .expect("open")
    }

    /// A store with small memtables under `path`, and one partition (topic `topic`) created.
    fn open_with_partition(path: &Path, topic: u128) -> (RocksLogStore, TopicPartition) {
        let store = open_small(path);
        let tp = TopicPartition::new(uuid::Uuid::from_u128(topic), 0);
        store.create_partition(tp).expect("create");
        (store, tp)
    }

    fn append_batches(store: &RocksLogStore, tp: TopicPartition, n: usize, payload: usize) {
        let mut write = WriteBatch::new(conformance::state_of(store, tp));
        for _ in 0..n {
            let end = write.state().log_end_offset;
            let batch = conformance::fake_batch(end, 10, end, payload);
            write.push(batch).expect("push");
        }
        store.append(tp, write).expect("append");
    }

    /// (file name, level) of every live table file of `tp`'s column family.
    fn files_of(store: &RocksLogStore, tp: TopicPartition) -> Vec<(String, i32)> {
        let name = log_cf_name(tp);
        let mut files: Vec<_> = store
            .db
            .live_files()
            .expect("live files")
            .into_iter()
            .filter(|f| f.column_family_name == name)
            .map(|f| (f.name, f.level))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn write_stalls_are_counted_from_rocksdb() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, tp) = open_with_partition(dir.path(), 11);
        append_batches(&store, tp, 4, 1000);
        let counts = |stats: &[(&str, u64)]| {
            ["strom.write-stall-stops", "strom.write-stall-delays"]
                .map(|name| stats.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
        };
        assert_eq!(counts(&store.engine_stats()), [Some(0), Some(0)]);

        // A family that slows writes once two table files wait in level 0: the second
        // flush puts it there, and RocksDB counts a delay.
        let mut opts = Options::default();
        opts.set_level_zero_file_num_compaction_trigger(2);
        opts.set_level_zero_slowdown_writes_trigger(2);
        opts.set_level_zero_stop_writes_trigger(100);
        store.db.create_cf("slow", &opts).expect("create family");
        let slow = store.db.cf_handle("slow").expect("family");
        for key in [b"a", b"b"] {
            store.db.put_cf(&slow, key, b"v").expect("put");
            store.db.flush_cf(&slow).expect("flush");
        }
        let [(_, stops), (_, delays)] = write_stalls(&store.db, std::slice::from_ref(&slow));
        assert_eq!(stops, 0);
        assert!(delays >= 1, "no delay counted");
    }

    /// The value of `key` in the `[section]` of the newest OPTIONS file RocksDB wrote in `dir`.
    fn written_option(dir: &Path, section: &str, key: &str) -> Option<String> {
        let newest = std::fs::read_dir(dir)
            .expect("read dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| Some((n.strip_prefix("OPTIONS-")?.parse::<u64>().ok()?, n)))
            .max()?
            .1;
        let text = std::fs::read_to_string(dir.join(newest)).expect("options file");
        let body = text.split(&format!("[{section}]")).nth(1)?;
        let body = body.split("\n[").next()?;
        body.lines()
            .filter_map(|l| l.trim().split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }

    #[test]
    fn partition_families_hold_six_memtables_and_four_flushes_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, tp) = open_with_partition(dir.path(), 12);
        append_batches(&store, tp, 1, 100);
        let family = format!("CFOptions \"{}\"", log_cf_name(tp));
        assert_eq!(
            written_option(dir.path(), &family, "max_write_buffer_number").as_deref(),
            Some("6")
        );
        // The small families too: atomic flushes switch theirs as often.
        for name in SMALL_FAMILIES {
            assert_eq!(
                written_option(
                    dir.path(),
                    &format!("CFOptions \"{name}\""),
                    "max_write_buffer_number"
                )
                .as_deref(),
                Some("6"),
                "{name}"
            );
        }
        assert_eq!(
            written_option(dir.path(), "DBOptions", "max_background_flushes").as_deref(),
            Some("4")
        );
    }

    #[test]
    fn write_stall_text_is_parsed() {
        assert_eq!(
            stall_totals(
                "Write Stall (count): l0-file-count-limit-delays: 2, memtable-limit-stops: 37, \
                 total-delays: 2, total-stops: 37\n"
            ),
            Some((37, 2))
        );
        assert_eq!(stall_totals("Write Stall (count): total-stops: 1"), None);
        assert_eq!(stall_totals(""), None);
    }

    #[test]
    fn table_file_indexes_live_in_the_block_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, tp) = open_with_partition(dir.path(), 10);
        // 8 MB in 1 KB batches, through 1 MiB memtables: eight table files or more, each
        // with an index entry per three or four batches.
        for _ in 0..32 {
            append_batches(&store, tp, 256, 1000);
        }
        store
            .db
            .flush_cf(&store.own_cf(tp).expect("cf"))
            .expect("flush");
        let files = files_of(&store, tp).len();
        assert!(files >= 8, "{files} table files");
        // Every batch reads back through indexes that live in the cache.
        let (mut offset, mut batches) = (0, 0);
        loop {
            let read = store.read(tp, offset, i64::MAX, 1 << 20).expect("read");
            if read.is_empty() {
                break;
            }
            batches += read.len();
            // Ten records in each.
            offset += 10 * read.len() as i64;
        }
        assert_eq!(batches, 32 * 256);
        let stat = |name| {
            store
                .engine_stats()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
                .expect(name)
        };
        // What stays outside the cache is each reader's own ~2.3 KB; the indexes of these
        // 8 MB would add ~80 KB (107 KB in all for 11 files).
        let readers = stat("rocksdb.estimate-table-readers-mem") as usize;
        assert!(
            readers < files * 4_000,
            "{readers} bytes of table readers for {files} files"
        );
        // They are in the block cache instead, each file's top level pinned there (~280
        // bytes for these files; nothing pinned with a single-level index).
        let pinned = stat("rocksdb.block-cache-pinned-usage") as usize;
        assert!(
            pinned > files * 100,
            "{pinned} bytes pinned in the block cache for {files} files"
        );
    }

    #[test]
    fn appends_from_many_threads_all_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Memtables of 1 MiB, 4 MB written to each partition: they fill and flush while the
        // threads write.
        let store = open_small(dir.path());
        let tps: Vec<_> = (0..8)
            .map(|p| TopicPartition::new(uuid::Uuid::from_u128(11), p))
            .collect();
        for tp in &tps {
            store.create_partition(*tp).expect("create");
        }
        std::thread::scope(|s| {
            for tp in &tps {
                let store = &store;
                s.spawn(move || {
                    for _ in 0..50 {
                        append_batches(store, *tp, 4, 20_000);
                    }
                });
            }
        });
        for tp in &tps {
            assert_eq!(conformance::state_of(&store, *tp).log_end_offset, 2_000);
            let read = store.read(*tp, 0, 2_000, usize::MAX).expect("read");
            assert_eq!(read.len(), 200, "batches of {tp}");
        }
        let stats: HashMap<_, _> = store.engine_stats().into_iter().collect();
        assert!(stats.contains_key("strom.memtable-waits"), "{stats:?}");
        assert!(
            stats.contains_key("strom.memtable-wait-micros"),
            "{stats:?}"
        );
    }

    #[test]
    fn a_write_the_engine_refuses_is_answered_with_its_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_small(dir.path());
        // RocksDB refuses a synced write without its WAL.
        let mut options = WriteOptions::default();
        options.set_sync(true);
        options.disable_wal(true);
        let writer = Writer::start(Arc::clone(&store.db), options, None).expect("start");
        let state = store.cf(CF_STATE).expect("state family");
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(&state, b"k", b"v");
        let err = writer.write(batch).expect_err("refused");
        assert!(
            matches!(&err, StorageError::Engine { message } if message.contains("WAL")),
            "{err}"
        );
        assert_eq!(store.db.get_cf(&state, b"k").expect("get"), None);
    }

    /// Writers racing a close: every write answered Ok is in the database once the close
    /// returns, every one refused is not, and nothing written later changes it. Each writer
    /// goes on for a few writes after the close has returned (all of them refused).
    #[test]
    fn a_close_orders_every_write_before_or_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_small(dir.path());
        let writer = Arc::new(
            Writer::start(Arc::clone(&store.db), WriteOptions::default(), None).expect("start"),
        );
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let acked = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..3u8)
            .map(|t| {
                let (writer, db) = (Arc::clone(&writer), Arc::clone(&store.db));
                let (acked, closed) = (Arc::clone(&acked), Arc::clone(&closed));
                std::thread::spawn(move || {
                    let state = db.cf_handle(CF_STATE).expect("state family");
                    let (mut written, mut refused) = (Vec::new(), Vec::new());
                    let mut after_close = 0;
                    for i in 0u32.. {
                        if closed.load(Ordering::Acquire) {
                            after_close += 1;
                            if after_close > 3 {
                                break;
                            }
                        }
                        let key = [&[t][..], &i.to_be_bytes()].concat();
                        let mut batch = rocksdb::WriteBatch::default();
                        batch.put_cf(&state, &key, b"v");
                        match writer.write(batch) {
                            Ok(()) => {
                                written.push(key);
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(StorageError::Closed) => refused.push(key),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (written, refused)
                })
            })
            .collect();
        // The close lands among the writes: after some, with more being handed over.
        while acked.load(Ordering::Relaxed) < 30 {
            assert!(
                writers.iter().all(|w| !w.is_finished()),
                "a writer thread ended before the close"
            );
            std::thread::yield_now();
        }
        writer.close().expect("close");
        closed.store(true, Ordering::Release);
        let state = store.cf(CF_STATE).expect("state family");
        let held = || -> usize {
            store
                .db
                .iterator_cf(&state, IteratorMode::Start)
                .try_fold(0, |n, kv| kv.map(|_| n + 1))
                .expect("read")
        };
        let after_close = held();
        let mut acknowledged = 0;
        for w in writers {
            let (written, refused) = w.join().expect("writer thread");
            assert!(
                refused.len() >= 3,
                "writes after the close were not refused"
            );
            for key in &written {
                assert!(store.db.get_cf(&state, key).expect("get").is_some());
            }
            for key in &refused {
                assert_eq!(store.db.get_cf(&state, key).expect("get"), None);
            }
            acknowledged += written.len();
        }
        assert_eq!(after_close, acknowledged);
        assert_eq!(held(), acknowledged);
        writer.close().expect("a second close");
    }

    /// A partition that has written nothing yet gets its column family at its first append;
    /// after a close that append is refused before the family is made (it would be a change
    /// to the database after the shutdown flush).
    #[test]
    fn no_column_family_is_created_after_a_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksLogStore::open(dir.path(), &RocksOptions::default()).expect("open");
        let (written, fresh) = two_partitions(16);
        for tp in [written, fresh] {
            store.create_partition(tp).expect("create");
        }
        append_batches(&store, written, 1, 100);
        assert!(store.db.cf_handle(&log_cf_name(written)).is_some());
        store.close().expect("close");
        let mut write = WriteBatch::new(conformance::state_of(&store, fresh));
        write
            .push(conformance::fake_batch(0, 1, 0, 10))
            .expect("contiguous");
        assert_eq!(store.append(fresh, write), Err(StorageError::Closed));
        assert!(store.db.cf_handle(&log_cf_name(fresh)).is_none());
        assert_eq!(store.own_families.lock().count, 1);
    }

    #[test]
    fn an_appends_write_batch_is_sized_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksLogStore::open(dir.path(), &RocksOptions::default()).expect("open");
        let tp = TopicPartition::new(uuid::Uuid::from_u128(9), 0);
        store.create_partition(tp).expect("create");
        // Every kind of entry an append writes: batches of several sizes (each a time index
        // entry), an epoch start, producer states and an aborted transaction.
        let mut write = WriteBatch::new(conformance::state_of(&store, tp));
        write.set_epoch_start(3, 0);
        for (i, payload) in [100, 1_000_000, 0, 16_384].into_iter().enumerate() {
            let end = write.state().log_end_offset;
            write
                .push(conformance::fake_batch(end, 10, 1_000 * i as i64, payload))
                .expect("push");
        }
        write.set_producer_state(7, vec![1; 40]);
        write.set_producer_state(8, vec![2; 40]);
        write.add_aborted_txn(AbortedTxn {
            producer_id: 7,
            first_offset: 0,
            last_offset: 12,
        });
        let mut batch = store.append_batch(tp, &write).expect("batch");
        // What write_with_state adds, a floor included, lands in the room already there.
        let at = batch.data().as_ptr();
        store
            .put_state(&mut batch, tp, write.state(), Some(5))
            .expect("state");
        assert_eq!(batch.data().as_ptr(), at, "the batch was reallocated");
        let (used, reserved) = (batch.size_in_bytes(), write_batch_capacity(&write));
        assert!(
            used <= reserved,
            "{used} bytes written into {reserved} reserved"
        );
        assert!(reserved - used < 1024, "{reserved} reserved for {used}");
    }

    #[test]
    fn memtables_that_took_no_write_since_the_last_look_are_flushed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 64 MiB memtables: none fills up in this test.
        let store = RocksLogStore::open(dir.path(), &RocksOptions::default()).expect("open");
        let (idle, busy) = two_partitions(2);
        store.create_partition(idle).expect("create");
        store.create_partition(busy).expect("create");
        // Enough to be worth a file (IDLE_FLUSH_MIN_BYTES); a small one stays.
        let small = TopicPartition::new(uuid::Uuid::from_u128(2), 2);
        store.create_partition(small).expect("create");
        append_batches(&store, idle, 4, 1 << 20);
        append_batches(&store, busy, 4, 1 << 20);
        append_batches(&store, small, 4, 1 << 10);
        let entries = |tp| {
            store
                .db
                .property_int_value_cf(
                    &store.own_cf(tp).expect("cf"),
                    "rocksdb.num-entries-active-mem-table",
                )
                .expect("property")
                .expect("value")
        };
        // The flush runs in the background: its file shows up a moment later.
        let one_file = |tp| {
            for _ in 0..500 {
                if files_of(&store, tp).len() == 1 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert_eq!(files_of(&store, tp).len(), 1);
        };
        assert_eq!(store.flush_idle(), 0, "the first look only marks");
        append_batches(&store, busy, 1, 1 << 20);
        assert!(store.flush_idle() >= 1);
        // The idle partition's memtable is written out; the busy one's is kept, and the next
        // look flushes it if nothing came meanwhile.
        one_file(idle);
        assert_eq!(entries(idle), 0);
        assert_eq!(entries(busy), 5);
        assert!(files_of(&store, busy).is_empty());
        store.flush_idle();
        one_file(busy);
        assert_eq!(entries(busy), 0);
        assert_eq!(entries(small), 4, "too small to be worth a file");
        assert!(files_of(&store, small).is_empty());
        // The batches read back from the files.
        let read = store.read(idle, 0, i64::MAX, 16 << 20).expect("read");
        assert_eq!(read.len(), 4);
    }

    #[test]
    fn flushed_files_move_down_the_levels_without_being_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_small(dir.path());
        let (a, b) = two_partitions(1);
        store.create_partition(a).expect("create");
        store.create_partition(b).expect("create");
        // Eight flushes per partition, their writes interleaved as a producer's would be.
        for _ in 0..8 {
            append_batches(&store, a, 16, 16 << 10);
            append_batches(&store, b, 16, 16 << 10);
            for tp in [a, b] {
                store
                    .db
                    .flush_cf(&store.own_cf(tp).expect("cf"))
                    .expect("flush");
            }
        }
        let flushed = files_of(&store, a);
        assert_eq!(flushed.len(), 8, "one file per flush: {flushed:?}");
        // Compaction moves the files below level 0 once four are there (the trigger); it
        // must not write new ones.
        let below = |files: &[(String, i32)]| files.iter().filter(|f| f.1 > 0).count();
        let mut moved = flushed.clone();
        for _ in 0..300 {
            moved = files_of(&store, a);
            if below(&moved) >= 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(below(&moved) >= 4, "level 0 was never compacted: {moved:?}");
        let names = |files: &[(String, i32)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&moved), names(&flushed), "files were rewritten");

        // Retention drops the files below the new start whole, and hides the rest.
        let infos = store
            .batch_infos(a, 0, i64::MAX, usize::MAX)
            .expect("infos");
        assert_eq!(infos.len(), 128);
        let cut = &infos[40]; // inside the third file (16 batches per file)
        let removed: u64 = infos[..40].iter().map(|i| i.size).sum();
        let mut state = conformance::state_of(&store, a);
        state.log_start_offset = cut.base_offset;
        state.size_bytes -= removed;
        store
            .delete_head(a, cut.base_offset, state)
            .expect("delete head");
        let left = files_of(&store, a);
        assert_eq!(left.len(), 6, "the two files wholly below go: {left:?}");
        let read = store.read(a, 0, i64::MAX, usize::MAX).expect("read");
        assert_eq!(read.len(), 88);
        assert_eq!(
            i64::from_be_bytes(read[0][0..8].try_into().expect("8 bytes")),
            cut.base_offset
        );
        assert_eq!(
            files_of(&store, b).len(),
            8,
            "the other partition is untouched"
        );
        drop(store);
        // The start survives a restart: the hidden batches stay hidden.
        let store = open_small(dir.path());
        let read = store.read(a, 0, i64::MAX, usize::MAX).expect("read");
        assert_eq!(read.len(), 88);
    }

    #[test]
    fn a_partition_is_a_column_family_dropped_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TopicPartition::new(uuid::Uuid::from_u128(7), 2);
        let orphan = TopicPartition::new(uuid::Uuid::from_u128(8), 0);
        {
            let store = open_small(dir.path());
            store.create_partition(t).expect("create");
            assert!(store.own_cf(t).is_none(), "created at the first write");
            append_batches(&store, t, 3, 100);
            assert!(store.own_cf(t).is_some());
            store.delete_partition(t).expect("delete");
            assert!(store.own_cf(t).is_none());
            // What a crash between deleting the state and dropping the batches leaves.
            store.log_cf_for_write(orphan).expect("create cf");
        }
        let families = Db::list_cf(&Options::default(), dir.path()).expect("list column families");
        assert!(families.contains(&log_cf_name(orphan)));
        let store = open_small(dir.path());
        let families = Db::list_cf(&Options::default(), dir.path()).expect("list column families");
        assert!(!families.contains(&log_cf_name(t)));
        assert!(!families.contains(&log_cf_name(orphan)), "{families:?}");
        assert!(store.partitions().expect("partitions").is_empty());
        assert_eq!(store.own_families.lock().count, 0);
    }

    #[test]
    fn past_the_limit_partitions_share_one_column_family() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tps: Vec<_> = (0..3)
            .map(|p| TopicPartition::new(uuid::Uuid::from_u128(5), p))
            .collect();
        let options = RocksOptions {
            partition_families: 2,
            ..RocksOptions::default()
        };
        {
            let store = RocksLogStore::open(dir.path(), &options).expect("open");
            for tp in &tps {
                store.create_partition(*tp).expect("create");
                append_batches(&store, *tp, 4, 100);
            }
            assert!(store.own_cf(tps[0]).is_some() && store.own_cf(tps[1]).is_some());
            assert!(store.own_cf(tps[2]).is_none(), "the third shares");
            // Freeing a family does not move a partition whose batches are shared.
            store.delete_partition(tps[0]).expect("delete");
            append_batches(&store, tps[2], 1, 100);
            assert!(store.own_cf(tps[2]).is_none());
        }
        let store = RocksLogStore::open(dir.path(), &options).expect("reopen");
        append_batches(&store, tps[2], 1, 100);
        assert!(
            store.own_cf(tps[2]).is_none(),
            "still shared after a restart"
        );
        assert_eq!(
            store
                .read(tps[2], 0, i64::MAX, usize::MAX)
                .expect("read")
                .len(),
            6
        );
        assert_eq!(
            store
                .read(tps[1], 0, i64::MAX, usize::MAX)
                .expect("read")
                .len(),
            4
        );
    }

    #[test]
    fn batches_an_earlier_version_wrote_to_the_shared_family_stay_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TopicPartition::new(uuid::Uuid::from_u128(3), 1);
        let batches: Vec<StoredBatch> = (0..5)
            .map(|i| conformance::fake_batch(i * 2, 2, 100 + i, 50))
            .collect();
        {
            // The layout before: every partition's batches in the `log` column family.
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let names = [
                CF_SHARED_LOG,
                CF_TIMEINDEX,
                CF_STATE,
                CF_PRODUCERS,
                CF_EPOCHS,
                CF_TXNINDEX,
            ];
            let db = rocksdb::DB::open_cf(&opts, dir.path(), names).expect("open old layout");
            let log = db.cf_handle(CF_SHARED_LOG).expect("log");
            for b in &batches {
                db.put_cf(log, keys::offset_key(t, b.base_offset), &b.data)
                    .expect("put");
            }
            let state = PartitionState {
                log_end_offset: 10,
                max_timestamp: 104,
                size_bytes: batches.iter().map(|b| b.data.len() as u64).sum(),
                high_watermark: 10,
                ..PartitionState::empty(0)
            };
            let state_cf = db.cf_handle(CF_STATE).expect("state");
            db.put_cf(state_cf, keys::partition_prefix(t), state.encode())
                .expect("put state");
        }
        let store = open_small(dir.path());
        let read = store.read(t, 0, i64::MAX, usize::MAX).expect("read");
        assert_eq!(
            read,
            batches.iter().map(|b| b.data.clone()).collect::<Vec<_>>()
        );
        // Its next batches join the earlier ones rather than starting a family of their own.
        append_batches(&store, t, 2, 50);
        assert!(store.own_cf(t).is_none());
        assert_eq!(
            store.read(t, 0, i64::MAX, usize::MAX).expect("read").len(),
            7
        );
    }

    #[test]
    fn everything_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        conformance::survives_reopen(|| {
            RocksLogStore::open(dir.path(), &RocksOptions::default()).expect("open")
        });
    }

    #[test]
    fn everything_survives_reopen_with_the_wal_elsewhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = RocksOptions {
            wal_dir: Some(dir.path().join("wal")),
            ..RocksOptions::default()
        };
        conformance::survives_reopen(|| {
            RocksLogStore::open(&dir.path().join("data"), &options).expect("open")
        });
    }

    /// Removes the WAL files under `dir`, as a host crash empties a tmpfs; how many.
    fn lose_wal(dir: &Path) -> usize {
        let mut lost = 0;
        for entry in std::fs::read_dir(dir).expect("wal dir") {
            let entry = entry.expect("entry");
            if entry.file_name().to_str().is_some_and(is_wal_file) {
                std::fs::remove_file(entry.path()).expect("remove");
                lost += 1;
            }
        }
        lost
    }

    /// What `store` holds of `tp`, everything a broker reads back at its start.
    #[allow(clippy::type_complexity)]
    fn contents(
        store: &dyn LogStore,
        tp: TopicPartition,
    ) -> (
        PartitionState,
        Vec<Bytes>,
        Vec<EpochEntry>,
        Vec<(i64, Vec<u8>)>,
        Option<TimeIndexEntry>,
    ) {
        let state = conformance::state_of(store, tp);
        let mut producers = store.producer_states(tp).expect("producers");
        producers.sort();
        (
            state,
            store.read(tp, 0, i64::MAX, usize::MAX).expect("read"),
            store.leader_epochs(tp).expect("epochs"),
            producers,
            store.last_time_index_entry(tp).expect("index"),
        )
    }

    /// The WAL kept apart and lost with the host: what the store opens with is every write up
    /// to one point in time, in every partition and every kind of data at once (the atomic
    /// flush), never a partition's batches without the state counting them or the reverse.
    /// Partition 0 takes big batches and flushes (all families) many times; the others'
    /// memtables never fill on their own.
    #[test]
    fn a_lost_wal_leaves_every_partition_at_one_point_in_time() {
        // Each partition in its own family; all in the shared one; partition 0 alone.
        for families in [128, 0, 1] {
            lost_wal_at_one_point(families);
        }
    }

    fn lost_wal_at_one_point(families: usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, wal) = (dir.path().join("data"), dir.path().join("wal"));
        let options = RocksOptions {
            write_buffer_bytes: 1 << 20,
            total_write_buffer_bytes: 64 << 20,
            partition_families: families,
            wal_dir: Some(wal.clone()),
            ..RocksOptions::default()
        };
        let tps: Vec<TopicPartition> = (0..3)
            .map(|p| TopicPartition::new(uuid::Uuid::from_u128(77), p))
            .collect();
        // Write g goes to partition g % 3: one batch of 10 records, an epoch starting at it,
        // a producer's state.
        let write_of = |store: &dyn LogStore, g: usize| {
            let tp = tps[g % 3];
            let state = conformance::state_of(store, tp);
            let payload = if g.is_multiple_of(3) { 64 << 10 } else { 100 };
            let mut write = WriteBatch::new(state);
            let end = state.log_end_offset;
            write
                .push(conformance::fake_batch(end, 10, g as i64, payload))
                .expect("push");
            write.set_epoch_start(g as i32, end);
            write.set_producer_state(g as i64, (g as u64).to_be_bytes().to_vec());
            store.append(tp, write).expect("append");
        };
        const WRITES: usize = 300;
        {
            let store = RocksLogStore::open(&data, &options).expect("open");
            for tp in &tps {
                store.create_partition(*tp).expect("create");
            }
            for g in 0..WRITES {
                write_of(&store, g);
            }
            // Dropped without `close`: RocksDB does not flush at close with the WAL on.
        }
        assert!(lose_wal(&wal) > 0, "no WAL file to lose");
        let store = RocksLogStore::open(&data, &options).expect("reopen without the WAL");

        // The same writes, the first `k` of them, in the memory engine.
        let reference = |k: usize| {
            let mem = crate::MemoryLogStore::new();
            for tp in &tps {
                mem.create_partition(*tp).expect("create");
            }
            for g in 0..k {
                write_of(&mem, g);
            }
            mem
        };
        let ends: Vec<i64> = tps
            .iter()
            .map(|tp| conformance::state_of(&store, *tp).log_end_offset)
            .collect();
        // Partition 0's end says how many writes survived: 10 records in every third.
        let k = (ends[0] / 10 * 3) as usize;
        let k = (k.saturating_sub(2)..=k + 2)
            .find(|&k| {
                let mem = reference(k);
                tps.iter()
                    .zip(&ends)
                    .all(|(tp, end)| conformance::state_of(&mem, *tp).log_end_offset == *end)
            })
            .unwrap_or_else(|| panic!("no point in time has the ends {ends:?} ({families})"));
        assert!(k > 0, "nothing was flushed before the crash ({families})");
        assert!(
            k < WRITES,
            "nothing was lost with the WAL: the test shows nothing"
        );
        let mem = reference(k);
        for tp in &tps {
            assert_eq!(
                contents(&store, *tp),
                contents(&mem, *tp),
                "partition {tp} ({families})"
            );
        }
        // And the log goes on from there.
        write_of(&store, k);
        let after = conformance::state_of(&store, tps[k % 3]);
        assert_eq!(after.log_end_offset, ends[k % 3] + 10);
    }

    /// With the WAL apart, the idle flush writes out whatever a family already held at the
    /// last look, however small (a write stays only in memory for two looks at most), and
    /// every family with it: one flushed alone would be on the disk ahead of the state that
    /// counts its batches.
    #[test]
    fn the_idle_flush_with_the_wal_apart_writes_every_family_holding_older_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, wal) = (dir.path().join("data"), dir.path().join("wal"));
        let options = RocksOptions {
            wal_dir: Some(wal.clone()),
            ..RocksOptions::default()
        };
        let (a, b) = two_partitions(80);
        {
            let store = RocksLogStore::open(&data, &options).expect("open");
            for tp in [a, b] {
                store.create_partition(tp).expect("create");
            }
            append_batches(&store, a, 5, 100);
            assert_eq!(store.flush_idle(), 0, "the first look only marks");
            // b's first write comes between the looks: flushed all the same, with a's.
            append_batches(&store, b, 2, 100);
            assert!(store.flush_idle() > 0, "the second look flushes");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while files_of(&store, a).is_empty() || files_of(&store, b).is_empty() {
                assert!(std::time::Instant::now() < deadline, "the flush never ran");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert_eq!(store.flush_idle(), 0, "nothing older than a look is left");
            // Written after the flush: lost with the WAL.
            append_batches(&store, a, 1, 100);
            append_batches(&store, b, 1, 100);
        }
        assert!(lose_wal(&wal) > 0);
        let store = RocksLogStore::open(&data, &options).expect("reopen");
        assert_eq!(conformance::state_of(&store, a).log_end_offset, 50);
        assert_eq!(conformance::state_of(&store, b).log_end_offset, 20);
        assert_eq!(
            store.read(a, 0, i64::MAX, usize::MAX).expect("read").len(),
            5
        );
        assert_eq!(
            store.read(b, 0, i64::MAX, usize::MAX).expect("read").len(),
            2
        );
    }

    /// Dropping table files below a new log start, and a deleted partition's column family,
    /// are changes RocksDB makes on the disk at once: with the WAL apart, the writes before
    /// them are flushed first, and a lost WAL leaves neither a log start pointing below the
    /// files left nor a partition whose batches went with its family.
    #[test]
    fn retention_and_deletion_are_not_ahead_of_a_lost_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, wal) = (dir.path().join("data"), dir.path().join("wal"));
        let options = RocksOptions {
            write_buffer_bytes: 1 << 20,
            wal_dir: Some(wal.clone()),
            ..RocksOptions::default()
        };
        let (a, b) = two_partitions(81);
        let size;
        {
            let store = RocksLogStore::open(&data, &options).expect("open");
            for tp in [a, b] {
                store.create_partition(tp).expect("create");
            }
            // Several table files of a (1 MiB memtables), then what a retention pass does.
            for _ in 0..6 {
                append_batches(&store, a, 4, 256 << 10);
            }
            append_batches(&store, b, 1, 100);
            let files = files_of(&store, a).len();
            assert!(files >= 3, "{files} table files");
            let mut state = conformance::state_of(&store, a);
            state.log_start_offset = 200;
            state.size_bytes -= 20 * (61 + (256 << 10));
            size = state.size_bytes;
            store.delete_head(a, 200, state).expect("delete head");
            assert!(
                files_of(&store, a).len() < files,
                "no table file was dropped"
            );
            store.delete_partition(b).expect("delete partition");
        }
        assert!(lose_wal(&wal) > 0);
        let store = RocksLogStore::open(&data, &options).expect("reopen");
        let state = conformance::state_of(&store, a);
        assert_eq!((state.log_start_offset, state.log_end_offset), (200, 240));
        assert_eq!(state.size_bytes, size);
        let read = store.read(a, 0, i64::MAX, usize::MAX).expect("read");
        assert_eq!(read.len(), 4, "the batches from the log start on");
        assert_eq!(
            i64::from_be_bytes(read[0][0..8].try_into().expect("8")),
            200
        );
        assert!(
            store
                .partitions()
                .expect("partitions")
                .iter()
                .all(|(tp, _)| *tp != b),
            "the deleted partition came back"
        );
    }

    /// A controlled shutdown writes out every memtable: the WAL may then go (the host, a new
    /// pod) and nothing is lost.
    #[test]
    fn close_leaves_nothing_only_in_the_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, wal) = (dir.path().join("data"), dir.path().join("wal"));
        let options = RocksOptions {
            wal_dir: Some(wal.clone()),
            ..RocksOptions::default()
        };
        let tps: Vec<TopicPartition> = (0..3)
            .map(|p| TopicPartition::new(uuid::Uuid::from_u128(78), p))
            .collect();
        let before: Vec<_> = {
            let store = RocksLogStore::open(&data, &options).expect("open");
            for tp in &tps {
                store.create_partition(*tp).expect("create");
                append_batches(&store, *tp, 5, 1000);
                let mut write = WriteBatch::new(conformance::state_of(&store, *tp));
                write.set_epoch_start(4, 20);
                write.set_producer_state(9, vec![9]);
                write.set_high_watermark(30);
                store.append(*tp, write).expect("append");
            }
            store.close().expect("close");
            tps.iter().map(|tp| contents(&store, *tp)).collect()
        };
        assert!(lose_wal(&wal) > 0);
        let store = RocksLogStore::open(&data, &options).expect("reopen");
        let after: Vec<_> = tps.iter().map(|tp| contents(&store, *tp)).collect();
        assert_eq!(after, before);
        assert_eq!(after[0].0.log_end_offset, 50);
        assert_eq!(after[0].0.high_watermark, 30);
    }

    /// The WAL files go where the options say, whichever directory the last run kept them in:
    /// a store that crashed with its WAL in the data directory and opens with a WAL directory
    /// (and back) replays every write. A WAL directory is one store's only.
    #[test]
    fn wal_files_follow_the_configured_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, wal) = (dir.path().join("data"), dir.path().join("wal"));
        let with_wal = RocksOptions {
            wal_dir: Some(wal.clone()),
            ..RocksOptions::default()
        };
        let wal_files = |d: &Path| {
            std::fs::read_dir(d)
                .map(|it| {
                    it.filter(|e| {
                        e.as_ref()
                            .ok()
                            .and_then(|e| e.file_name().into_string().ok())
                            .is_some_and(|n| is_wal_file(&n))
                    })
                    .count()
                })
                .unwrap_or(0)
        };
        let tp = TopicPartition::new(uuid::Uuid::from_u128(79), 0);
        {
            let store = RocksLogStore::open(&data, &RocksOptions::default()).expect("open");
            store.create_partition(tp).expect("create");
            append_batches(&store, tp, 3, 100);
        }
        assert!(wal_files(&data) > 0);
        {
            let store = RocksLogStore::open(&data, &with_wal).expect("open with a WAL dir");
            assert_eq!(conformance::state_of(&store, tp).log_end_offset, 30);
            assert_eq!(
                store.read(tp, 0, i64::MAX, usize::MAX).expect("read").len(),
                3
            );
            assert_eq!(wal_files(&data), 0, "WAL files left in the data directory");
            assert!(wal_files(&wal) > 0);
            append_batches(&store, tp, 2, 100);
        }
        // The WAL directory is the first store's while it keeps its WAL there.
        let other = dir.path().join("other");
        let Err(StorageError::Engine { message }) = RocksLogStore::open(&other, &with_wal) else {
            panic!("a second data directory opened with the same WAL directory");
        };
        assert!(
            message.contains("belongs to the data directory"),
            "{message}"
        );
        assert!(
            !other.join("CURRENT").exists(),
            "the refused store was created"
        );
        {
            let store = RocksLogStore::open(&data, &RocksOptions::default()).expect("open again");
            assert_eq!(conformance::state_of(&store, tp).log_end_offset, 50);
            assert_eq!(
                store.read(tp, 0, i64::MAX, usize::MAX).expect("read").len(),
                5
            );
            assert_eq!(wal_files(&wal), 0, "WAL files left in the WAL directory");
        }
        // Given up, it is free for another.
        RocksLogStore::open(&other, &with_wal).expect("the WAL directory released");
    }

    /// A WAL directory given up is released (another store may take it); one holding WAL
    /// files of no known store is refused; a WAL directory whose data directory was emptied
    /// is refused with what to do, not replayed into nothing.
    #[test]
    fn wal_directories_are_taken_released_and_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let with = |wal: &str| RocksOptions {
            wal_dir: Some(dir.path().join(wal)),
            ..RocksOptions::default()
        };
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        let tp = TopicPartition::new(uuid::Uuid::from_u128(82), 0);
        {
            let store = RocksLogStore::open(&first, &with("a")).expect("open");
            store.create_partition(tp).expect("create");
            append_batches(&store, tp, 2, 100);
        }
        {
            // Moved to b: a is free again, and the second store takes it.
            let store = RocksLogStore::open(&first, &with("b")).expect("open on b");
            assert_eq!(conformance::state_of(&store, tp).log_end_offset, 20);
        }
        RocksLogStore::open(&second, &with("a")).expect("a released");

        // Stray WAL files and no owner.
        let stray = dir.path().join("stray");
        std::fs::create_dir_all(&stray).expect("mkdir");
        std::fs::write(stray.join("000007.log"), b"not ours").expect("write");
        let Err(StorageError::Engine { message }) =
            RocksLogStore::open(&dir.path().join("third"), &with("stray"))
        else {
            panic!("a WAL directory with another store's files was taken");
        };
        assert!(message.contains("no known data directory"), "{message}");
        assert!(stray.join("000007.log").exists());

        // The first store's data directory emptied, its WAL directory (b) not.
        std::fs::remove_dir_all(&first).expect("rm");
        let Err(StorageError::Engine { message }) = RocksLogStore::open(&first, &with("b")) else {
            panic!("an emptied data directory opened over its old WAL");
        };
        assert!(message.contains("empty the WAL directory"), "{message}");
    }
}
