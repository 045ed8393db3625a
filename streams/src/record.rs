//! Records as they flow between the nodes of a running topology.
//!
//! The DSL is typed (`KStream<K, V>`), but one task runs a graph of many nodes of many types,
//! built at run time from the topology. Inside the graph, keys and values are therefore
//! type-erased (`Arc<dyn Any>`): each typed closure the DSL wraps downcasts what it is given,
//! which can only fail on a bug in this crate (the DSL's types make a mismatch impossible to
//! write). `Arc` makes forwarding one record to several children a reference-count bump.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;

/// A type-erased key or value.
pub(crate) type Dyn = Arc<dyn Any + Send + Sync>;

/// Record headers, shared between the copies of one record.
pub type Headers = Arc<Vec<(String, Option<Bytes>)>>;

/// One record inside the graph.
#[derive(Clone)]
pub(crate) struct Rec {
    pub key: Dyn,
    pub value: Dyn,
    /// Event time, ms since the epoch: the input record's, unless a processor changes it.
    pub timestamp: i64,
    pub headers: Headers,
}

/// What a KTable node forwards: the new value of a key and the one it replaces (`None` when
/// the key was absent, or is deleted).
#[derive(Clone)]
pub(crate) struct Change {
    pub new: Option<Dyn>,
    pub old: Option<Dyn>,
}

/// Downcasts an erased value to the type the DSL promised.
pub(crate) fn cast<T: 'static>(v: &Dyn) -> &T {
    match (**v).downcast_ref::<T>() {
        Some(t) => t,
        // The typed DSL builds every node; a mismatch is a bug here, not a user error.
        None => panic!(
            "strom-streams: a node expected {} (a bug in the topology builder)",
            std::any::type_name::<T>()
        ),
    }
}

/// A record written to a topic by a task: an output, a repartition or a changelog record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The full topic name (internal topics carry the application id).
    pub topic: String,
    /// Set for changelog records (the task's partition) and by custom partitioners; else
    /// the producer's default partitioner (murmur2 of the key) decides.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// A changelog record of this store (so the runtime can checkpoint its offset).
    pub changelog_of: Option<usize>,
}
