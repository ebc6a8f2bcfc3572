//! CopyData ('d', both directions): a chunk of COPY data.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyData {
    pub data: Bytes,
}

impl WireMessage for CopyData {
    const TAG: Option<u8> = Some(b'd');
    const NAME: &'static str = "CopyData";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        Ok(Self { data: body })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_slice(&self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips_both_ways() {
        let message = CopyData {
            data: Bytes::from_static(b"1\talice\n"),
        };
        round_trip(Direction::Frontend, message.clone());
        round_trip(Direction::Backend, message);
    }
}
