//! The options a DSL call takes, with Kafka Streams' names: [`Grouped`], [`Produced`],
//! [`Materialized`], [`Repartitioned`].

use std::sync::Arc;

use crate::serdes::SerdeRef;
use crate::topology::StoreKind;

/// How a grouping serializes keys and values if it must repartition (Kafka's `Grouped`).
pub struct Grouped<K, V> {
    pub(crate) key: SerdeRef<K>,
    pub(crate) value: SerdeRef<V>,
    pub(crate) name: Option<String>,
}

impl<K, V> Grouped<K, V> {
    pub fn with(key: SerdeRef<K>, value: SerdeRef<V>) -> Self {
        Self {
            key,
            value,
            name: None,
        }
    }

    /// Names the repartition topic `<application.id>-<name>-repartition`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a sink writes records (Kafka's `Produced`).
pub struct Produced<K, V> {
    pub(crate) key: SerdeRef<K>,
    pub(crate) value: SerdeRef<V>,
    pub(crate) partitioner: Option<PartitionerFn<K, V>>,
}

/// (key, value, partition count) -> partition.
pub type PartitionerFn<K, V> = Arc<dyn Fn(&K, &V, i32) -> i32 + Send + Sync>;

impl<K, V> Produced<K, V> {
    pub fn with(key: SerdeRef<K>, value: SerdeRef<V>) -> Self {
        Self {
            key,
            value,
            partitioner: None,
        }
    }

    /// Chooses each record's partition instead of the default (murmur2 of the key bytes,
    /// as every Kafka client does).
    pub fn with_partitioner(
        mut self,
        f: impl Fn(&K, &V, i32) -> i32 + Send + Sync + 'static,
    ) -> Self {
        self.partitioner = Some(Arc::new(f));
        self
    }
}

/// The state store behind a KTable (Kafka's `Materialized`): its name, the serde of what it
/// stores, where it lives, and whether a changelog topic backs it.
pub struct Materialized<V> {
    pub(crate) name: Option<String>,
    pub(crate) value: Option<SerdeRef<V>>,
    pub(crate) kind: StoreKind,
    pub(crate) logging: bool,
    pub(crate) retention: Option<i64>,
}

impl<V> Default for Materialized<V> {
    fn default() -> Self {
        Self {
            name: None,
            value: None,
            kind: StoreKind::RocksDb,
            logging: true,
            retention: None,
        }
    }
}

impl<V> Materialized<V> {
    /// A store named `name` (its changelog is `<application.id>-<name>-changelog`, and
    /// interactive queries find it by this name).
    pub fn as_(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// The serde of the stored values (needed by `aggregate`, whose type is new).
    pub fn with_value_serde(mut self, value: SerdeRef<V>) -> Self {
        self.value = Some(value);
        self
    }

    /// Keeps the store in memory (restored from its changelog whenever its task opens).
    pub fn in_memory(mut self) -> Self {
        self.kind = StoreKind::InMemory;
        self
    }

    /// How long a windowed store keeps windows after they end (Kafka's
    /// `Materialized.withRetention`; by default a day, and never less than the window size
    /// plus the grace period).
    pub fn with_retention(mut self, ms: i64) -> Self {
        self.retention = Some(ms);
        self
    }

    /// No changelog: the store is rebuilt from nothing on another instance. For state that
    /// may be lost.
    pub fn without_logging(mut self) -> Self {
        self.logging = false;
        self
    }
}

/// An explicit repartition (Kafka's `Repartitioned`).
pub struct Repartitioned<K, V> {
    pub(crate) key: SerdeRef<K>,
    pub(crate) value: SerdeRef<V>,
    pub(crate) name: Option<String>,
    pub(crate) partitions: Option<i32>,
}

impl<K, V> Repartitioned<K, V> {
    pub fn with(key: SerdeRef<K>, value: SerdeRef<V>) -> Self {
        Self {
            key,
            value,
            name: None,
            partitions: None,
        }
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The repartition topic's partition count (by default, that of the input).
    pub fn with_partitions(mut self, n: i32) -> Self {
        self.partitions = Some(n);
        self
    }
}
