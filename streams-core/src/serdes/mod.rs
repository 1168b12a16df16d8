//! Serializers and deserializers: the [`Serde`] trait and the built-in codecs.
//!
//! Kafka keys and values are nullable byte arrays; a serde maps a Rust type to and from
//! `Option<bytes>`. Non-nullable types reject null data with an error, and every built-in
//! serde also serves `Option<T>`, mapping `None` to a Kafka null (a tombstone for values).
//! Integers are big-endian as in Kafka's own serdes. Bad bytes give a [`SerdeError`], never a panic.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::SerdeError;
use crate::record::Headers;

#[cfg(feature = "avro")]
mod avro;
#[cfg(feature = "protobuf")]
mod protobuf;
#[cfg(feature = "avro")]
pub use avro::AvroSerde;
#[cfg(feature = "protobuf")]
pub use protobuf::ProtobufSerde;

/// Converts values of `T` to and from Kafka's nullable bytes.
///
/// Records' headers reach a serde where Kafka's serializer API passes them: sources and sinks,
/// and the test driver's input and output topics, call the `*_with_headers` methods, which
/// default to the plain ones (a serde that writes a schema id or content type into a header
/// overrides both). Stores, changelogs and repartition topics' internal formats have no headers.
pub trait Serde<T>: Send + Sync + 'static {
    /// Serializes `data` for `topic`; `None` is Kafka's null.
    fn serialize(&self, topic: &str, data: &T) -> Result<Option<Vec<u8>>, SerdeError>;
    /// Deserializes bytes read from `topic`; `None` is Kafka's null.
    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> Result<T, SerdeError>;
    /// Serializes `data` for a record to `topic` whose `headers` it may read and add to.
    fn serialize_with_headers(&self, topic: &str, headers: &mut Headers, data: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        let _ = headers;
        self.serialize(topic, data)
    }
    /// Deserializes the bytes of a record read from `topic` with `headers`.
    fn deserialize_with_headers(&self, topic: &str, headers: &Headers, data: Option<&[u8]>) -> Result<T, SerdeError> {
        let _ = headers;
        self.deserialize(topic, data)
    }
}

/// A shared, type-erased serde.
pub type SerdeRef<T> = Arc<dyn Serde<T>>;

impl<T, S: Serde<T> + ?Sized> Serde<T> for Arc<S> {
    fn serialize(&self, topic: &str, data: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        (**self).serialize(topic, data)
    }
    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> Result<T, SerdeError> {
        (**self).deserialize(topic, data)
    }
    fn serialize_with_headers(&self, topic: &str, headers: &mut Headers, data: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        (**self).serialize_with_headers(topic, headers, data)
    }
    fn deserialize_with_headers(&self, topic: &str, headers: &Headers, data: Option<&[u8]>) -> Result<T, SerdeError> {
        (**self).deserialize_with_headers(topic, headers, data)
    }
}

/// Constructors for the built-in serdes.
#[derive(Debug, Clone, Copy)]
pub struct Serdes;

impl Serdes {
    /// UTF-8 strings.
    pub fn string() -> StringSerde {
        StringSerde
    }
    /// Raw bytes, unchanged.
    pub fn bytes() -> BytesSerde {
        BytesSerde
    }
    /// 4-byte big-endian `i32`.
    pub fn i32() -> I32Serde {
        I32Serde
    }
    /// 8-byte big-endian `i64` (Kafka's `Serdes.Long()`).
    pub fn i64() -> I64Serde {
        I64Serde
    }
    /// 8-byte big-endian `u64`.
    pub fn u64() -> U64Serde {
        U64Serde
    }
    /// JSON through `serde_json`, for any `serde` type.
    pub fn json<T>() -> JsonSerde<T> {
        JsonSerde(PhantomData)
    }
    /// Compact binary through bincode 2 (standard config), for any `serde` type.
    pub fn bincode<T>() -> BincodeSerde<T> {
        BincodeSerde(PhantomData)
    }
    /// Avro binary data of any `serde` type under `schema` (feature `avro`); with
    /// [`AvroSerde::with_confluent_schema_id`], in Confluent's wire format.
    #[cfg(feature = "avro")]
    pub fn avro<T>(schema: apache_avro::Schema) -> AvroSerde<T> {
        AvroSerde::new(schema)
    }
    /// Protocol Buffers of any `prost` message (feature `protobuf`).
    #[cfg(feature = "protobuf")]
    pub fn protobuf<M>() -> ProtobufSerde<M> {
        ProtobufSerde(PhantomData)
    }
    /// Makes any serde accept null data as `None`.
    pub fn nullable<S>(inner: S) -> Nullable<S> {
        Nullable(inner)
    }
}

fn require<'a>(data: Option<&'a [u8]>, type_name: &str) -> Result<&'a [u8], SerdeError> {
    data.ok_or_else(|| SerdeError::null(type_name))
}

/// Implements `Serde<Option<T>>` for a serde that implements `Serde<T>`.
macro_rules! nullable_impl {
    ($serde:ty, $t:ty) => {
        impl Serde<Option<$t>> for $serde {
            fn serialize(&self, topic: &str, data: &Option<$t>) -> Result<Option<Vec<u8>>, SerdeError> {
                match data {
                    Some(v) => Serde::<$t>::serialize(self, topic, v),
                    None => Ok(None),
                }
            }
            fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> Result<Option<$t>, SerdeError> {
                data.map(|d| Serde::<$t>::deserialize(self, topic, Some(d))).transpose()
            }
        }
    };
}

/// UTF-8 string serde.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, _: &str, data: &String) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(Some(data.as_bytes().to_vec()))
    }
    fn deserialize(&self, _: &str, data: Option<&[u8]>) -> Result<String, SerdeError> {
        let bytes = require(data, "String")?;
        String::from_utf8(bytes.to_vec()).map_err(|e| SerdeError::with_source("invalid UTF-8", e))
    }
}
nullable_impl!(StringSerde, String);

/// Pass-through bytes serde.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, _: &str, data: &Vec<u8>) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(Some(data.clone()))
    }
    fn deserialize(&self, _: &str, data: Option<&[u8]>) -> Result<Vec<u8>, SerdeError> {
        Ok(require(data, "Vec<u8>")?.to_vec())
    }
}
nullable_impl!(BytesSerde, Vec<u8>);

macro_rules! int_serde {
    ($(#[$doc:meta])* $name:ident, $t:ty, $n:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Serde<$t> for $name {
            fn serialize(&self, _: &str, data: &$t) -> Result<Option<Vec<u8>>, SerdeError> {
                Ok(Some(data.to_be_bytes().to_vec()))
            }
            fn deserialize(&self, _: &str, data: Option<&[u8]>) -> Result<$t, SerdeError> {
                let bytes = require(data, stringify!($t))?;
                let array: [u8; $n] = bytes.try_into().map_err(|_| {
                    SerdeError::new(format!(
                        "{} needs exactly {} bytes, got {}",
                        stringify!($t),
                        $n,
                        bytes.len()
                    ))
                })?;
                Ok(<$t>::from_be_bytes(array))
            }
        }
        nullable_impl!($name, $t);
    };
}

int_serde!(
    /// Big-endian `i32` serde.
    I32Serde, i32, 4
);
int_serde!(
    /// Big-endian `i64` serde.
    I64Serde, i64, 8
);
int_serde!(
    /// Big-endian `u64` serde.
    U64Serde, u64, 8
);

/// JSON serde for any `serde` type.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T> Serde<T> for JsonSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize(&self, _: &str, data: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        serde_json::to_vec(data).map(Some).map_err(|e| SerdeError::with_source("JSON encode", e))
    }
    fn deserialize(&self, _: &str, data: Option<&[u8]>) -> Result<T, SerdeError> {
        let bytes = require(data, std::any::type_name::<T>())?;
        serde_json::from_slice(bytes).map_err(|e| SerdeError::with_source("JSON decode", e))
    }
}

/// Largest value bincode may decode: bounds what a corrupt length prefix can allocate.
const BINCODE_LIMIT: usize = 64 << 20;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<BINCODE_LIMIT>()
}

/// bincode 2 serde for any `serde` type (values up to 64 MiB).
pub struct BincodeSerde<T>(PhantomData<fn() -> T>);

impl<T> fmt::Debug for BincodeSerde<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BincodeSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T> Clone for BincodeSerde<T> {
    fn clone(&self) -> Self {
        BincodeSerde(PhantomData)
    }
}

impl<T> Serde<T> for BincodeSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize(&self, _: &str, data: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        bincode::serde::encode_to_vec(data, bincode_config())
            .map(Some)
            .map_err(|e| SerdeError::with_source("bincode encode", e))
    }
    fn deserialize(&self, _: &str, data: Option<&[u8]>) -> Result<T, SerdeError> {
        let bytes = require(data, std::any::type_name::<T>())?;
        let (value, read) = bincode::serde::decode_from_slice(bytes, bincode_config())
            .map_err(|e| SerdeError::with_source("bincode decode", e))?;
        if read != bytes.len() {
            return Err(SerdeError::new(format!(
                "bincode decode: {} trailing bytes",
                bytes.len() - read
            )));
        }
        Ok(value)
    }
}

/// Wraps a serde so that null data is `None`.
#[derive(Debug, Clone, Copy)]
pub struct Nullable<S>(S);

impl<T: 'static, S: Serde<T>> Serde<Option<T>> for Nullable<S> {
    fn serialize(&self, topic: &str, data: &Option<T>) -> Result<Option<Vec<u8>>, SerdeError> {
        match data {
            Some(v) => self.0.serialize(topic, v),
            None => Ok(None),
        }
    }
    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        data.map(|d| self.0.deserialize(topic, Some(d))).transpose()
    }
    fn serialize_with_headers(&self, topic: &str, headers: &mut Headers, data: &Option<T>) -> Result<Option<Vec<u8>>, SerdeError> {
        match data {
            Some(v) => self.0.serialize_with_headers(topic, headers, v),
            None => Ok(None),
        }
    }
    fn deserialize_with_headers(&self, topic: &str, headers: &Headers, data: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        data.map(|d| self.0.deserialize_with_headers(topic, headers, Some(d))).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: PartialEq + fmt::Debug + 'static>(serde: &dyn Serde<T>, value: T) {
        let bytes = serde.serialize("t", &value).unwrap();
        assert_eq!(serde.deserialize("t", bytes.as_deref()).unwrap(), value);
    }

    #[test]
    fn built_ins_round_trip() {
        roundtrip::<String>(&Serdes::string(), "héllo".into());
        roundtrip::<Vec<u8>>(&Serdes::bytes(), vec![0, 1, 255]);
        roundtrip::<i32>(&Serdes::i32(), -7);
        roundtrip::<i64>(&Serdes::i64(), i64::MIN);
        roundtrip::<u64>(&Serdes::u64(), u64::MAX);
        roundtrip::<Option<i64>>(&Serdes::i64(), None);
        roundtrip::<Option<String>>(&Serdes::string(), Some("x".into()));
        roundtrip::<(String, u32)>(&Serdes::json(), ("a".into(), 3));
        roundtrip::<Vec<(String, i64)>>(&Serdes::bincode(), vec![("k".into(), 9)]);
        roundtrip::<Option<(u8, u8)>>(&Serdes::nullable(Serdes::bincode()), None);
    }

    #[test]
    fn integers_are_big_endian_like_kafka() {
        let bytes = Serde::<i64>::serialize(&Serdes::i64(), "t", &1).unwrap().unwrap();
        assert_eq!(bytes, vec![0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(Serde::<String>::deserialize(&Serdes::string(), "t", Some(&[0xff, 0xfe])).is_err());
        assert!(Serde::<i64>::deserialize(&Serdes::i64(), "t", Some(&[1, 2, 3])).is_err());
        assert!(Serde::<i64>::deserialize(&Serdes::i64(), "t", None).is_err());
        assert!(Serde::<(u64, String)>::deserialize(&Serdes::bincode(), "t", Some(&[0xff; 3])).is_err());
        assert!(Serde::<(u64, String)>::deserialize(&Serdes::json(), "t", Some(b"{")).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic generator: every length up to 24 with pseudo-random content.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..24 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect();
                let _ = Serde::<String>::deserialize(&Serdes::string(), "t", Some(&bytes));
                let _ = Serde::<i32>::deserialize(&Serdes::i32(), "t", Some(&bytes));
                let _ = Serde::<Vec<String>>::deserialize(&Serdes::bincode(), "t", Some(&bytes));
                let _ = Serde::<Vec<String>>::deserialize(&Serdes::json(), "t", Some(&bytes));
            }
        }
    }
}
