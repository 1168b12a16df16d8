//! Protocol Buffers (the `prost` crate) for any generated message type.

use std::fmt;
use std::marker::PhantomData;

use super::{require, Serde};
use crate::error::SerdeError;

/// Protobuf serde of the message `M` (see [`Serdes::protobuf`](super::Serdes::protobuf)).
pub struct ProtobufSerde<M>(pub(super) PhantomData<fn() -> M>);

impl<M> Clone for ProtobufSerde<M> {
    fn clone(&self) -> Self {
        ProtobufSerde(PhantomData)
    }
}

impl<M> fmt::Debug for ProtobufSerde<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProtobufSerde<{}>", std::any::type_name::<M>())
    }
}

impl<M: prost::Message + Default + 'static> Serde<M> for ProtobufSerde<M> {
    fn serialize(&self, _: &str, data: &M) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(Some(data.encode_to_vec()))
    }

    fn deserialize(&self, _: &str, data: Option<&[u8]>) -> Result<M, SerdeError> {
        let bytes = require(data, std::any::type_name::<M>())?;
        M::decode(bytes).map_err(|e| SerdeError::with_source("protobuf decode", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serdes::Serdes;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Order {
        #[prost(string, tag = "1")]
        id: String,
        #[prost(int64, tag = "2")]
        amount_cents: i64,
        #[prost(string, repeated, tag = "3")]
        items: Vec<String>,
    }

    fn order() -> Order {
        Order { id: "o-1".into(), amount_cents: 1_250, items: vec!["tea".into(), "cake".into()] }
    }

    #[test]
    fn messages_round_trip() {
        let serde = Serdes::protobuf::<Order>();
        let bytes = serde.serialize("t", &order()).unwrap().unwrap();
        assert_eq!(serde.deserialize("t", Some(&bytes)).unwrap(), order());
        assert_eq!(serde.deserialize("t", Some(&[])).unwrap(), Order::default(), "an empty message has all defaults");
        assert_eq!(Serdes::nullable(serde).deserialize("t", None).unwrap(), None::<Order>);
    }

    #[test]
    fn bad_input_is_an_error() {
        let serde = Serdes::protobuf::<Order>();
        let bytes = serde.serialize("t", &order()).unwrap().unwrap();
        let message = |r: Result<Order, SerdeError>| r.unwrap_err().to_string();
        assert!(message(serde.deserialize("t", Some(&bytes[..bytes.len() - 2]))).contains("protobuf decode"));
        // Field 1 declared as a varint, but `id` is a string (wire type 2).
        assert!(message(serde.deserialize("t", Some(&[0x08, 0x01]))).contains("protobuf decode"));
        assert!(message(serde.deserialize("t", Some(&[0xff; 12]))).contains("protobuf decode"));
        assert!(message(serde.deserialize("t", None)).contains("null data"));
    }
}
