//! Processor API nodes as a task runs them: one processor instance per node per task, a
//! context that reaches the task's stores (writes go to the changelog too), and scheduled
//! punctuations on stream time and wall-clock time.

use super::Task;
use crate::dsl::{CtxOps, ErasedProcessor, PunctuationType};
use crate::error::StreamsError;
use crate::record::{Dyn, Output, Rec};
use crate::topology::NodeKind;

/// A punctuation a processor scheduled.
pub(super) struct Schedule {
    pub node: usize,
    pub kind: PunctuationType,
    pub interval: i64,
    /// Set at the first check after scheduling (stream time may be unknown before).
    pub next: Option<i64>,
}

/// The context a processor runs in.
pub(crate) struct ProcessorCtx<'a> {
    task: &'a mut Task,
    node: usize,
    stores: &'a [usize],
    out: &'a mut Vec<Output>,
    fwd: Vec<Rec>,
}

impl ProcessorCtx<'_> {
    fn store(&self, name: &str) -> Result<usize, StreamsError> {
        self.stores
            .iter()
            .copied()
            .find(|&i| self.task.topo.stores[i].name == name)
            .ok_or_else(|| StreamsError::Store {
                store: name.to_string(),
                reason: "not connected to this processor (name it in process())".into(),
            })
    }
}

impl CtxOps for ProcessorCtx<'_> {
    fn forward(&mut self, rec: Rec) {
        self.fwd.push(rec);
    }

    fn schedule(&mut self, interval_ms: i64, kind: PunctuationType) {
        self.task.schedules.push(Schedule {
            node: self.node,
            kind,
            interval: interval_ms,
            next: None,
        });
    }

    fn get(&mut self, store: &str, key: Dyn) -> Result<Option<Dyn>, StreamsError> {
        let i = self.store(store)?;
        let topo = self.task.topo.clone();
        match topo.stores[i]
            .key
            .serialize(&key)
            .map_err(StreamsError::Serde)?
        {
            Some(kb) => self.task.get(i, &kb),
            None => Ok(None),
        }
    }

    fn put(&mut self, store: &str, key: Dyn, value: Option<Dyn>) -> Result<(), StreamsError> {
        let i = self.store(store)?;
        let topo = self.task.topo.clone();
        let Some(kb) = topo.stores[i]
            .key
            .serialize(&key)
            .map_err(StreamsError::Serde)?
        else {
            return Err(StreamsError::Serde(
                "a store key cannot serialize to null".into(),
            ));
        };
        let ts = self.task.stream_time;
        self.task.put(i, &kb, value.as_ref(), ts, self.out)
    }

    fn range(
        &mut self,
        store: &str,
        from: Option<Dyn>,
        to: Option<Dyn>,
    ) -> Result<Vec<(Dyn, Dyn)>, StreamsError> {
        let i = self.store(store)?;
        let topo = self.task.topo.clone();
        let def = &topo.stores[i];
        let bound = |k: Option<Dyn>| -> Result<Option<bytes::Bytes>, StreamsError> {
            Ok(match k {
                Some(k) => def.key.serialize(&k).map_err(StreamsError::Serde)?,
                None => None,
            })
        };
        let (from, to) = (bound(from)?, bound(to)?);
        let entries = self.task.store(i)?.range(from.as_deref(), to.as_deref())?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let k = def.key.deserialize(Some(&k)).map_err(StreamsError::Serde)?;
                let v = def
                    .value
                    .deserialize(Some(&v))
                    .map_err(StreamsError::Serde)?;
                Ok((k, v))
            })
            .collect()
    }

    fn partition(&self) -> i32 {
        self.task.id.partition
    }

    fn stream_time(&self) -> i64 {
        self.task.stream_time
    }
}

impl Task {
    /// Creates this task's processors and runs their `init`.
    pub(super) fn init_processors(&mut self) -> Result<(), StreamsError> {
        let topo = self.topo.clone();
        for (i, n) in topo.nodes.iter().enumerate() {
            if n.subtopology != self.id.subtopology {
                continue;
            }
            if let NodeKind::Process { supplier, stores } = &n.kind {
                let mut p = supplier();
                let mut sink = Vec::new();
                let mut ctx = ProcessorCtx {
                    task: self,
                    node: i,
                    stores,
                    out: &mut sink,
                    fwd: Vec::new(),
                };
                p.init(&mut ctx)?;
                self.processors.insert(i, p);
            }
        }
        Ok(())
    }

    /// Runs `f` on node `node`'s processor with a context; returns what it forwarded.
    fn with_processor(
        &mut self,
        node: usize,
        out: &mut Vec<Output>,
        f: impl FnOnce(&mut Box<dyn ErasedProcessor>, &mut ProcessorCtx<'_>) -> Result<(), StreamsError>,
    ) -> Result<Vec<Rec>, StreamsError> {
        let topo = self.topo.clone();
        let NodeKind::Process { supplier, stores } = &topo.nodes[node].kind else {
            return Ok(Vec::new());
        };
        let mut p = match self.processors.remove(&node) {
            Some(p) => p,
            None => supplier(),
        };
        let mut ctx = ProcessorCtx {
            task: self,
            node,
            stores,
            out,
            fwd: Vec::new(),
        };
        let r = f(&mut p, &mut ctx);
        let fwd = std::mem::take(&mut ctx.fwd);
        self.processors.insert(node, p);
        r.map(|()| fwd)
    }

    pub(super) fn run_processor(
        &mut self,
        node: usize,
        rec: Rec,
        out: &mut Vec<Output>,
    ) -> Result<Vec<Rec>, StreamsError> {
        self.with_processor(node, out, |p, ctx| p.process(rec, ctx))
    }

    /// Fires the punctuations of `kind` that are due at `now`, and runs what they forward
    /// through the rest of the graph.
    pub fn punctuate(
        &mut self,
        kind: PunctuationType,
        now: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), StreamsError> {
        if now == i64::MIN {
            return Ok(());
        }
        let mut due = Vec::new();
        for s in self.schedules.iter_mut().filter(|s| s.kind == kind) {
            match s.next {
                None => s.next = Some(now.saturating_add(s.interval)),
                Some(next) if next <= now => {
                    // Skip missed intervals: one call, then the next one after `now`.
                    let missed = (now - next) / s.interval + 1;
                    s.next = Some(next.saturating_add(missed.saturating_mul(s.interval)));
                    due.push(s.node);
                }
                Some(_) => {}
            }
        }
        let topo = self.topo.clone();
        for node in due {
            let fwd = self.with_processor(node, out, |p, ctx| p.punctuate(kind, now, ctx))?;
            for r in fwd {
                for &c in &topo.nodes[node].children {
                    self.run(c, r.clone(), out)?;
                }
            }
        }
        Ok(())
    }

    /// Wall-clock punctuation, called by the runtime between polls.
    pub fn punctuate_wall_clock(
        &mut self,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), StreamsError> {
        self.punctuate(PunctuationType::WallClockTime, now_ms, out)
    }
}
