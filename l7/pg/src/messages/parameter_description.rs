//! ParameterDescription ('t'): the parameter types of a described statement.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::Reader;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParameterDescription {
    pub types: Vec<u32>,
}

impl WireMessage for ParameterDescription {
    const TAG: Option<u8> = Some(b't');
    const NAME: &'static str = "ParameterDescription";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        // Unsigned on the wire since protocol 3.0 allows up to 65535 parameters.
        let count = reader.i16("parameter count")? as u16 as usize;
        let mut types = Vec::with_capacity(reader.capacity(count, 4));
        for _ in 0..count {
            types.push(reader.u32("parameter type")?);
        }
        reader.finish()?;
        Ok(Self { types })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_u16(self.types.len() as u16);
        for oid in &self.types {
            out.put_u32(*oid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips() {
        let message = ParameterDescription {
            types: vec![23, 25],
        };
        truncations_fail(&message);
        round_trip(Direction::Backend, message);
    }
}
