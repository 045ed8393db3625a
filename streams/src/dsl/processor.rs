//! The Processor API: custom per-record logic with named state stores and scheduled
//! punctuation, for what the DSL does not express (Kafka's `KStream#process`).
//!
//! A processor is created per task (from the supplier given to [`KStream::process`]), so
//! it may keep fields; state that must survive a restart or move with the task belongs in
//! a store added with [`StreamsBuilder::add_state_store`], which has a changelog like any
//! other.
//!
//! # Examples
//! ```
//! use strom_streams::dsl::{Processor, ProcessorContext, PunctuationType, Record};
//! use strom_streams::{serdes, Produced, StoreKind, StreamsBuilder, StreamsError};
//!
//! /// Counts per key, emitting all counts every 10 s of stream time.
//! struct Every10s;
//! impl Processor<String, String, String, i64> for Every10s {
//!     fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), StreamsError> {
//!         ctx.schedule(10_000, PunctuationType::StreamTime);
//!         Ok(())
//!     }
//!     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), StreamsError> {
//!         let n: i64 = ctx.get("counts", &r.key)?.unwrap_or(0);
//!         ctx.put("counts", &r.key, Some(&(n + 1)))
//!     }
//!     fn punctuate(&mut self, _: PunctuationType, ts: i64, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), StreamsError> {
//!         for (k, n) in ctx.range::<String, i64>("counts", None, None)? {
//!             ctx.forward(k, n, ts);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let b = StreamsBuilder::new();
//! b.add_state_store("counts", serdes::string(), serdes::i64(), StoreKind::RocksDb);
//! b.stream("in", serdes::string(), serdes::string())
//!     .process(|| Every10s, &["counts"])
//!     .to("out", Produced::with(serdes::string(), serdes::i64()));
//! b.build().unwrap();
//! ```

use std::marker::PhantomData;
use std::sync::Arc;

use super::{Data, KStream, StreamsBuilder};
use crate::error::StreamsError;
use crate::record::{cast, Dyn, Headers, Rec};
use crate::serdes::{ErasedSerde, SerdeRef};
use crate::topology::{NodeKind, StoreKind};

/// A record as a processor sees it.
#[derive(Debug, Clone)]
pub struct Record<K, V> {
    pub key: K,
    pub value: V,
    pub timestamp: i64,
    pub headers: Headers,
}

/// When a scheduled punctuation fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunctuationType {
    /// As stream time (the highest record timestamp of the task) passes each interval.
    StreamTime,
    /// As the wall clock passes each interval (checked between polls).
    WallClockTime,
}

/// Custom processing of `KStream<K, V>` records into `KStream<KO, VO>` records.
pub trait Processor<K, V, KO, VO>: Send + 'static {
    /// Called once when the task opens (schedule punctuations here).
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KO, VO>) -> Result<(), StreamsError> {
        let _ = ctx;
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<'_, KO, VO>,
    ) -> Result<(), StreamsError>;

    /// A scheduled punctuation, at `timestamp` (stream time or wall-clock ms).
    fn punctuate(
        &mut self,
        kind: PunctuationType,
        timestamp: i64,
        ctx: &mut ProcessorContext<'_, KO, VO>,
    ) -> Result<(), StreamsError> {
        let _ = (kind, timestamp, ctx);
        Ok(())
    }
}

/// What a processor can do: forward records, use its stores, schedule punctuations.
pub struct ProcessorContext<'a, KO, VO> {
    inner: &'a mut (dyn CtxOps + 'a),
    _types: PhantomData<fn() -> (KO, VO)>,
}

/// The task's side of a [`ProcessorContext`], untyped.
pub(crate) trait CtxOps {
    fn forward(&mut self, rec: Rec);
    fn schedule(&mut self, interval_ms: i64, kind: PunctuationType);
    fn get(&mut self, store: &str, key: Dyn) -> Result<Option<Dyn>, StreamsError>;
    fn put(&mut self, store: &str, key: Dyn, value: Option<Dyn>) -> Result<(), StreamsError>;
    #[allow(clippy::type_complexity)]
    fn range(
        &mut self,
        store: &str,
        from: Option<Dyn>,
        to: Option<Dyn>,
    ) -> Result<Vec<(Dyn, Dyn)>, StreamsError>;
    fn partition(&self) -> i32;
    fn stream_time(&self) -> i64;
}

impl<KO: Data, VO: Data> ProcessorContext<'_, KO, VO> {
    /// Sends a record to the next nodes.
    pub fn forward(&mut self, key: KO, value: VO, timestamp: i64) {
        self.inner.forward(Rec {
            key: Arc::new(key),
            value: Arc::new(value),
            timestamp,
            headers: Arc::new(Vec::new()),
        });
    }

    /// Sends a record with headers.
    pub fn forward_record(&mut self, r: Record<KO, VO>) {
        self.inner.forward(Rec {
            key: Arc::new(r.key),
            value: Arc::new(r.value),
            timestamp: r.timestamp,
            headers: r.headers,
        });
    }

    /// Calls `punctuate` every `interval_ms` of stream time or wall-clock time.
    pub fn schedule(&mut self, interval_ms: i64, kind: PunctuationType) {
        self.inner.schedule(interval_ms.max(1), kind);
    }

    /// The value of `key` in the processor's store `store`.
    pub fn get<K: Data, V: Data>(
        &mut self,
        store: &str,
        key: &K,
    ) -> Result<Option<V>, StreamsError> {
        let v = self.inner.get(store, Arc::new(key.clone()))?;
        Ok(v.map(|v| cast::<V>(&v).clone()))
    }

    /// Writes (or with `None` deletes) `key` in `store`; the changelog gets it too.
    pub fn put<K: Data, V: Data>(
        &mut self,
        store: &str,
        key: &K,
        value: Option<&V>,
    ) -> Result<(), StreamsError> {
        let value = value.map(|v| Arc::new(v.clone()) as Dyn);
        self.inner.put(store, Arc::new(key.clone()), value)
    }

    /// Entries of `store` with `from <= key < to` in the order of their serialized keys.
    pub fn range<K: Data, V: Data>(
        &mut self,
        store: &str,
        from: Option<&K>,
        to: Option<&K>,
    ) -> Result<Vec<(K, V)>, StreamsError> {
        let from = from.map(|k| Arc::new(k.clone()) as Dyn);
        let to = to.map(|k| Arc::new(k.clone()) as Dyn);
        Ok(self
            .inner
            .range(store, from, to)?
            .into_iter()
            .map(|(k, v)| (cast::<K>(&k).clone(), cast::<V>(&v).clone()))
            .collect())
    }

    /// The task's partition.
    pub fn partition(&self) -> i32 {
        self.inner.partition()
    }

    /// The task's stream time (the highest record timestamp seen).
    pub fn stream_time(&self) -> i64 {
        self.inner.stream_time()
    }
}

/// A processor with its types erased, as a task holds it.
pub(crate) trait ErasedProcessor: Send {
    fn init(&mut self, ctx: &mut dyn CtxOps) -> Result<(), StreamsError>;
    fn process(&mut self, rec: Rec, ctx: &mut dyn CtxOps) -> Result<(), StreamsError>;
    fn punctuate(
        &mut self,
        kind: PunctuationType,
        ts: i64,
        ctx: &mut dyn CtxOps,
    ) -> Result<(), StreamsError>;
}

pub(crate) type ProcessorSupplier = Arc<dyn Fn() -> Box<dyn ErasedProcessor> + Send + Sync>;

/// The record types a typed processor takes and gives.
type Types<K, V, KO, VO> = PhantomData<fn() -> (K, V, KO, VO)>;

struct Typed<P, K, V, KO, VO>(P, Types<K, V, KO, VO>);

impl<P, K, V, KO, VO> ErasedProcessor for Typed<P, K, V, KO, VO>
where
    P: Processor<K, V, KO, VO>,
    K: Data,
    V: Data,
    KO: Data,
    VO: Data,
{
    fn init(&mut self, ctx: &mut dyn CtxOps) -> Result<(), StreamsError> {
        self.0.init(&mut ProcessorContext {
            inner: ctx,
            _types: PhantomData,
        })
    }

    fn process(&mut self, rec: Rec, ctx: &mut dyn CtxOps) -> Result<(), StreamsError> {
        let r = Record {
            key: cast::<K>(&rec.key).clone(),
            value: cast::<V>(&rec.value).clone(),
            timestamp: rec.timestamp,
            headers: rec.headers,
        };
        self.0.process(
            r,
            &mut ProcessorContext {
                inner: ctx,
                _types: PhantomData,
            },
        )
    }

    fn punctuate(
        &mut self,
        kind: PunctuationType,
        ts: i64,
        ctx: &mut dyn CtxOps,
    ) -> Result<(), StreamsError> {
        self.0.punctuate(
            kind,
            ts,
            &mut ProcessorContext {
                inner: ctx,
                _types: PhantomData,
            },
        )
    }
}

impl StreamsBuilder {
    /// Adds a key-value store for processors to use by name (with a changelog topic,
    /// `<application.id>-<name>-changelog`).
    pub fn add_state_store<K: Data, V: Data>(
        &self,
        name: &str,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        kind: StoreKind,
    ) {
        self.new_store(
            "",
            kind,
            true,
            Some(name.to_string()),
            ErasedSerde::new(key),
            ErasedSerde::new(value),
        );
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    /// Runs a processor made by `supplier` (one per task) on each record; it may use the
    /// named stores (added with [`StreamsBuilder::add_state_store`]).
    pub fn process<KO: Data, VO: Data, P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<KO, VO>
    where
        P: Processor<K, V, KO, VO>,
    {
        let mut idx = Vec::new();
        for name in stores {
            match self.builder.store_index(name) {
                Some(i) => idx.push(i),
                None => self.builder.error(format!(
                    "process: no state store named '{name}' (add it with add_state_store first)"
                )),
            }
        }
        let supplier: ProcessorSupplier = Arc::new(move || {
            Box::new(Typed::<P, K, V, KO, VO>(supplier(), PhantomData)) as Box<dyn ErasedProcessor>
        });
        let node = self.builder.add(
            "KSTREAM-PROCESSOR",
            NodeKind::Process {
                supplier,
                stores: idx,
            },
            &[self.node],
        );
        KStream::new(self.builder.clone(), node, true)
    }
}
