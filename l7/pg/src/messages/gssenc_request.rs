//! GSSENCRequest: asks the server for GSSAPI encryption before the startup message.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::Reader;

/// The request code that stands where a startup message has its version.
pub const CODE: i32 = 80877104;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GssEncRequest;

impl WireMessage for GssEncRequest {
    const TAG: Option<u8> = None;
    const NAME: &'static str = "GSSENCRequest";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let code = reader.i32("request code")?;
        if code != CODE {
            return Err(reader.invalid("request code", code.into()));
        }
        reader.finish()?;
        Ok(GssEncRequest)
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_i32(CODE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips_as_eight_bytes() {
        assert_eq!(GssEncRequest.encode().len(), 8);
        round_trip(Direction::Frontend, GssEncRequest);
    }
}
