//! DataRow ('D'): one row's values.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_nullable};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataRow {
    /// One per column; `None` is SQL NULL. Slices of the received message.
    pub values: Vec<Option<Bytes>>,
}

impl WireMessage for DataRow {
    const TAG: Option<u8> = Some(b'D');
    const NAME: &'static str = "DataRow";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let count = reader.count16("column count")?;
        let mut values = Vec::with_capacity(reader.capacity(count, 4));
        for _ in 0..count {
            values.push(reader.nullable_bytes("column value")?);
        }
        reader.finish()?;
        Ok(Self { values })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        let len: usize = self
            .values
            .iter()
            .map(|v| 4 + v.as_ref().map_or(0, Bytes::len))
            .sum();
        out.reserve(2 + len);
        out.put_i16(self.values.len() as i16);
        for value in &self.values {
            put_nullable(out, value.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips_values_and_nulls() {
        let message = DataRow {
            values: vec![Some(Bytes::from_static(b"1")), None, Some(Bytes::new())],
        };
        truncations_fail(&message);
        round_trip(Direction::Backend, message);
    }

    #[test]
    fn a_rewritten_value_gets_correct_lengths() {
        let mut row = DataRow {
            values: vec![Some(Bytes::from_static(b"alice@example.com"))],
        };
        row.values[0] = Some(Bytes::from_static(b"***"));
        assert_eq!(&row.encode()[..], b"D\0\0\0\x0d\0\x01\0\0\0\x03***");
    }
}
