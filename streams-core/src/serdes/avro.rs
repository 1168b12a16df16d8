//! Avro (the `apache-avro` crate) for any `serde` type, under one schema: the plain binary
//! datum, or Confluent's wire format (a zero magic byte and a 4-byte big-endian schema id before
//! the datum), as Schema Registry serializers write it.

use std::fmt;
use std::io::Read;
use std::marker::PhantomData;
use std::sync::Arc;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

use super::{require, Serde};
use crate::error::SerdeError;

/// Avro serde of `T` (see [`Serdes::avro`](super::Serdes::avro)).
pub struct AvroSerde<T> {
    schema: Arc<Schema>,
    /// The schema id of Confluent's wire format, if the records carry it.
    schema_id: Option<u32>,
    _type: PhantomData<fn() -> T>,
}

impl<T> AvroSerde<T> {
    pub(super) fn new(schema: Schema) -> Self {
        AvroSerde { schema: Arc::new(schema), schema_id: None, _type: PhantomData }
    }

    /// Writes and expects Confluent's wire format with this schema id: records from a Schema
    /// Registry serializer that registered this schema. A record with another id is an error
    /// that names both ids.
    pub fn with_confluent_schema_id(mut self, schema_id: u32) -> Self {
        self.schema_id = Some(schema_id);
        self
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}

impl<T> Clone for AvroSerde<T> {
    fn clone(&self) -> Self {
        AvroSerde { schema: self.schema.clone(), schema_id: self.schema_id, _type: PhantomData }
    }
}

impl<T> fmt::Debug for AvroSerde<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvroSerde")
            .field("type", &std::any::type_name::<T>())
            .field("schema", &self.schema.canonical_form())
            .field("schema_id", &self.schema_id)
            .finish()
    }
}

impl<T> Serde<T> for AvroSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize(&self, _: &str, data: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        let value = apache_avro::to_value(data).map_err(|e| SerdeError::with_source("Avro encode", e))?;
        let writer = GenericDatumWriter::builder(&self.schema).build().map_err(|e| SerdeError::with_source("Avro schema", e))?;
        let datum = writer.write_value_to_vec(value).map_err(|e| SerdeError::with_source("Avro encode", e))?;
        Ok(Some(match self.schema_id {
            None => datum,
            Some(id) => [&[0u8][..], &id.to_be_bytes(), &datum].concat(),
        }))
    }

    fn deserialize(&self, _: &str, data: Option<&[u8]>) -> Result<T, SerdeError> {
        let mut bytes = require(data, std::any::type_name::<T>())?;
        if let Some(expected) = self.schema_id {
            let (magic, id) = match bytes {
                [magic, a, b, c, d, rest @ ..] => {
                    bytes = rest;
                    (*magic, u32::from_be_bytes([*a, *b, *c, *d]))
                }
                _ => return Err(SerdeError::new(format!("Avro record of {} bytes has no wire-format header", bytes.len()))),
            };
            if magic != 0 {
                return Err(SerdeError::new(format!("unknown Avro wire-format magic byte {magic}")));
            }
            if id != expected {
                return Err(SerdeError::new(format!("Avro record written with schema id {id}, expected {expected}")));
            }
        }
        let reader = GenericDatumReader::builder(&self.schema).build().map_err(|e| SerdeError::with_source("Avro schema", e))?;
        let value = reader.read_value(&mut bytes).map_err(|e| SerdeError::with_source("Avro decode", e))?;
        let mut rest = [0u8; 1];
        if bytes.read(&mut rest).unwrap_or(0) > 0 {
            return Err(SerdeError::new(format!("{} bytes after the Avro datum", bytes.len() + 1)));
        }
        apache_avro::from_value(&value).map_err(|e| SerdeError::with_source("Avro decode", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serdes::Serdes;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Click {
        user: String,
        page: String,
        at: i64,
        referrer: Option<String>,
    }

    fn schema() -> Schema {
        Schema::parse_str(
            r#"{"type": "record", "name": "Click", "fields": [
                {"name": "user", "type": "string"},
                {"name": "page", "type": "string"},
                {"name": "at", "type": "long"},
                {"name": "referrer", "type": ["null", "string"], "default": null}
            ]}"#,
        )
        .unwrap()
    }

    fn click() -> Click {
        Click { user: "ann".into(), page: "/home".into(), at: 1_700_000_000_000, referrer: Some("/ads".into()) }
    }

    #[test]
    fn records_round_trip_in_both_formats() {
        let plain = Serdes::avro::<Click>(schema());
        let bytes = plain.serialize("t", &click()).unwrap().unwrap();
        assert_eq!(plain.deserialize("t", Some(&bytes)).unwrap(), click());
        let no_referrer = Click { referrer: None, ..click() };
        assert_eq!(plain.deserialize("t", plain.serialize("t", &no_referrer).unwrap().as_deref()).unwrap(), no_referrer);

        let registry = plain.clone().with_confluent_schema_id(42);
        let framed = registry.serialize("t", &click()).unwrap().unwrap();
        assert_eq!(&framed[..5], &[0, 0, 0, 0, 42]);
        assert_eq!(&framed[5..], &bytes[..], "the datum follows the header");
        assert_eq!(registry.deserialize("t", Some(&framed)).unwrap(), click());
        assert_eq!(Serdes::nullable(registry).deserialize("t", None).unwrap(), None::<Click>);
    }

    #[test]
    fn bad_input_is_an_error() {
        let plain = Serdes::avro::<Click>(schema());
        let bytes = plain.serialize("t", &click()).unwrap().unwrap();
        let message = |r: Result<Click, SerdeError>| r.unwrap_err().to_string();
        assert!(message(plain.deserialize("t", Some(&bytes[..6]))).contains("Avro decode"));
        assert!(message(plain.deserialize("t", Some(&[bytes.clone(), vec![7]].concat()))).contains("after the Avro datum"));
        assert!(message(plain.deserialize("t", Some(&[0xff; 8]))).contains("Avro decode"));
        assert!(message(plain.deserialize("t", None)).contains("null data"));

        let registry = plain.with_confluent_schema_id(42);
        let framed = registry.serialize("t", &click()).unwrap().unwrap();
        let other = [&[0, 0, 0, 0, 7][..], &framed[5..]].concat();
        assert!(message(registry.deserialize("t", Some(&other))).contains("schema id 7, expected 42"));
        let magic = [&[1][..], &framed[1..]].concat();
        assert!(message(registry.deserialize("t", Some(&magic))).contains("magic byte 1"));
        assert!(message(registry.deserialize("t", Some(&[0, 0]))).contains("no wire-format header"));

        // A value the schema cannot hold.
        #[derive(serde::Serialize, serde::Deserialize)]
        struct NotAClick {
            user: i32,
        }
        let wrong = Serdes::avro::<NotAClick>(schema());
        assert!(wrong.serialize("t", &NotAClick { user: 1 }).is_err());
    }
}
