//! FunctionCallResponse ('V'): the result of a FunctionCall.

use bytes::{Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_nullable};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCallResponse {
    /// `None` is SQL NULL.
    pub result: Option<Bytes>,
}

impl WireMessage for FunctionCallResponse {
    const TAG: Option<u8> = Some(b'V');
    const NAME: &'static str = "FunctionCallResponse";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let result = reader.nullable_bytes("result")?;
        reader.finish()?;
        Ok(Self { result })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_nullable(out, self.result.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips_a_value_and_null() {
        round_trip(
            Direction::Backend,
            FunctionCallResponse {
                result: Some(Bytes::from_static(b"\0\0\0\x01")),
            },
        );
        round_trip(Direction::Backend, FunctionCallResponse { result: None });
    }
}
