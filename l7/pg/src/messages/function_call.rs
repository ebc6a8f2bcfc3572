//! FunctionCall ('F'): calls a function by OID, outside SQL (fast-path).

use bytes::{BufMut, Bytes, BytesMut};

use super::{WireMessage, parse_formats, put_formats};
use crate::error::ProtocolError;
use crate::wire::{Reader, put_nullable};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    pub function_oid: u32,
    pub arg_formats: Vec<i16>,
    pub args: Vec<Option<Bytes>>,
    pub result_format: i16,
}

impl WireMessage for FunctionCall {
    const TAG: Option<u8> = Some(b'F');
    const NAME: &'static str = "FunctionCall";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let function_oid = reader.u32("function oid")?;
        let arg_formats = parse_formats(&mut reader, "argument format")?;
        let count = reader.count16("argument count")?;
        let mut args = Vec::with_capacity(reader.capacity(count, 4));
        for _ in 0..count {
            args.push(reader.nullable_bytes("argument value")?);
        }
        let result_format = reader.i16("result format")?;
        reader.finish()?;
        Ok(Self {
            function_oid,
            arg_formats,
            args,
            result_format,
        })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_u32(self.function_oid);
        put_formats(out, &self.arg_formats);
        out.put_i16(self.args.len() as i16);
        for arg in &self.args {
            put_nullable(out, arg.as_deref());
        }
        out.put_i16(self.result_format);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips() {
        let message = FunctionCall {
            function_oid: 764,
            arg_formats: vec![1],
            args: vec![Some(Bytes::from_static(&[0, 0, 0, 1])), None],
            result_format: 1,
        };
        truncations_fail(&message);
        round_trip(Direction::Frontend, message);
    }
}
