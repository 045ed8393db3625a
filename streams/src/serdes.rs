//! Serdes: how keys and values become bytes and back, at the edges of a topology (sources,
//! sinks, repartition and changelog topics, state stores). Between processors, records stay
//! typed Rust values and are never serialized.
//!
//! A serde maps `T` to an optional byte string: `None` is Kafka's null (a record without a
//! key, or a tombstone). A serde whose type has no null refuses a null input with an error
//! (which the deserialization handler then deals with); [`nullable`] makes any serde accept
//! it as `None`, and [`unit`] reads any key as `()` (Kafka's `Serdes.Void()` for keyless
//! input).
//!
//! | function      | type        | bytes                                    |
//! |---------------|-------------|------------------------------------------|
//! | [`bytes`]     | `Bytes`     | as they are                              |
//! | [`string`]    | `String`    | UTF-8                                    |
//! | [`i64`]       | `i64`       | 8 bytes big-endian (Kafka's LongSerde)   |
//! | [`json`]      | `T: serde`  | JSON via `serde_json`                    |
//! | [`nullable`]  | `Option<T>` | null <-> `None`                          |
//! | [`unit`]      | `()`        | anything reads as `()`, written as null  |

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use crate::record::Dyn;

/// Converts `T` to and from Kafka's bytes (`None` = null).
pub trait Serde<T>: Send + Sync + 'static {
    fn serialize(&self, value: &T) -> Result<Option<Bytes>, String>;
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, String>;
}

/// A serde shared by every node and task that uses it.
pub type SerdeRef<T> = Arc<dyn Serde<T>>;

struct BytesSerde;
impl Serde<Bytes> for BytesSerde {
    fn serialize(&self, v: &Bytes) -> Result<Option<Bytes>, String> {
        Ok(Some(v.clone()))
    }
    fn deserialize(&self, b: Option<&[u8]>) -> Result<Bytes, String> {
        b.map(Bytes::copy_from_slice).ok_or_else(null)
    }
}

struct StringSerde;
impl Serde<String> for StringSerde {
    fn serialize(&self, v: &String) -> Result<Option<Bytes>, String> {
        Ok(Some(Bytes::copy_from_slice(v.as_bytes())))
    }
    fn deserialize(&self, b: Option<&[u8]>) -> Result<String, String> {
        let b = b.ok_or_else(null)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|e| format!("not UTF-8: {e}"))
    }
}

struct I64Serde;
impl Serde<i64> for I64Serde {
    fn serialize(&self, v: &i64) -> Result<Option<Bytes>, String> {
        Ok(Some(Bytes::copy_from_slice(&v.to_be_bytes())))
    }
    fn deserialize(&self, b: Option<&[u8]>) -> Result<i64, String> {
        let b = b.ok_or_else(null)?;
        let arr: [u8; 8] = b
            .try_into()
            .map_err(|_| format!("an i64 is 8 bytes, not {}", b.len()))?;
        Ok(i64::from_be_bytes(arr))
    }
}

struct JsonSerde<T>(PhantomData<fn() -> T>);
impl<T> Serde<T> for JsonSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize(&self, v: &T) -> Result<Option<Bytes>, String> {
        serde_json::to_vec(v)
            .map(|v| Some(Bytes::from(v)))
            .map_err(|e| e.to_string())
    }
    fn deserialize(&self, b: Option<&[u8]>) -> Result<T, String> {
        serde_json::from_slice(b.ok_or_else(null)?).map_err(|e| format!("not valid JSON: {e}"))
    }
}

struct NullableSerde<T>(SerdeRef<T>);
impl<T: 'static> Serde<Option<T>> for NullableSerde<T> {
    fn serialize(&self, v: &Option<T>) -> Result<Option<Bytes>, String> {
        match v {
            Some(v) => self.0.serialize(v),
            None => Ok(None),
        }
    }
    fn deserialize(&self, b: Option<&[u8]>) -> Result<Option<T>, String> {
        b.map(|b| self.0.deserialize(Some(b))).transpose()
    }
}

struct UnitSerde;
impl Serde<()> for UnitSerde {
    fn serialize(&self, _: &()) -> Result<Option<Bytes>, String> {
        Ok(None)
    }
    fn deserialize(&self, _: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }
}

fn null() -> String {
    "null where a value was expected (use serdes::nullable)".into()
}

/// Bytes as they are.
pub fn bytes() -> SerdeRef<Bytes> {
    Arc::new(BytesSerde)
}

/// UTF-8 strings.
pub fn string() -> SerdeRef<String> {
    Arc::new(StringSerde)
}

/// 64-bit integers, 8 bytes big-endian (Kafka's `Serdes.Long()`).
pub fn i64() -> SerdeRef<i64> {
    Arc::new(I64Serde)
}

/// Any serde type, as JSON.
pub fn json<T>() -> SerdeRef<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    Arc::new(JsonSerde(PhantomData))
}

/// `inner`, with null read as `None` and `None` written as null (a tombstone).
pub fn nullable<T: 'static>(inner: SerdeRef<T>) -> SerdeRef<Option<T>> {
    Arc::new(NullableSerde(inner))
}

/// Reads every key, null or not, as `()`; writes null. For input without meaningful keys.
pub fn unit() -> SerdeRef<()> {
    Arc::new(UnitSerde)
}

/// A serde with its type erased, as the topology's nodes hold it.
#[derive(Clone)]
pub(crate) struct ErasedSerde {
    ser: SerializeFn,
    de: DeserializeFn,
}

type SerializeFn = Arc<dyn Fn(&Dyn) -> Result<Option<Bytes>, String> + Send + Sync>;
type DeserializeFn = Arc<dyn Fn(Option<&[u8]>) -> Result<Dyn, String> + Send + Sync>;

impl ErasedSerde {
    pub(crate) fn new<T: Send + Sync + 'static>(serde: SerdeRef<T>) -> Self {
        let s = serde.clone();
        Self {
            ser: Arc::new(move |v: &Dyn| {
                let v = (**v)
                    .downcast_ref::<T>()
                    .ok_or_else(|| type_mismatch::<T>(&**v))?;
                s.serialize(v)
            }),
            de: Arc::new(move |b| serde.deserialize(b).map(|v| Arc::new(v) as Dyn)),
        }
    }

    pub(crate) fn serialize(&self, v: &Dyn) -> Result<Option<Bytes>, String> {
        (self.ser)(v)
    }

    pub(crate) fn deserialize(&self, b: Option<&[u8]>) -> Result<Dyn, String> {
        (self.de)(b)
    }
}

fn type_mismatch<T>(_: &(dyn Any + Send + Sync)) -> String {
    format!(
        "the serde for {} got a value of another type (a serde given for the wrong key or value)",
        std::any::type_name::<T>()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = string();
        assert_eq!(
            s.deserialize(s.serialize(&"héllo".into()).unwrap().as_deref()),
            Ok("héllo".to_string())
        );
        let n = i64();
        assert_eq!(
            n.serialize(&258).unwrap().unwrap().as_ref(),
            &[0, 0, 0, 0, 0, 0, 1, 2]
        );
        assert_eq!(n.deserialize(Some(&[0, 0, 0, 0, 0, 0, 1, 2])), Ok(258));
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Click {
            user: String,
            ts: i64,
        }
        let j = json::<Click>();
        let c = Click {
            user: "a".into(),
            ts: 5,
        };
        let b = j.serialize(&c).unwrap().unwrap();
        assert_eq!(&b[..], br#"{"user":"a","ts":5}"#);
        assert_eq!(j.deserialize(Some(&b)), Ok(c));
    }

    #[test]
    fn nulls_need_nullable_or_unit() {
        assert!(string().deserialize(None).is_err());
        assert!(i64().deserialize(Some(b"abc")).is_err());
        assert!(json::<i32>().deserialize(Some(b"{")).is_err());
        let n = nullable(string());
        assert_eq!(n.deserialize(None), Ok(None));
        assert_eq!(n.serialize(&None), Ok(None));
        assert_eq!(n.deserialize(Some(b"x")), Ok(Some("x".into())));
        assert_eq!(unit().deserialize(Some(b"anything")), Ok(()));
        assert_eq!(unit().serialize(&()), Ok(None));
    }

    #[test]
    fn erased_refuses_the_wrong_type() {
        let e = ErasedSerde::new(string());
        let v: Dyn = Arc::new(5i64);
        assert!(e.serialize(&v).unwrap_err().contains("String"));
        let v: Dyn = Arc::new("ok".to_string());
        assert_eq!(e.serialize(&v).unwrap().unwrap().as_ref(), b"ok");
    }
}
