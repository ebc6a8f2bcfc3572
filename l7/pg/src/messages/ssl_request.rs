//! SSLRequest: asks the server for TLS before the startup message.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::Reader;

/// The request code that stands where a startup message has its version.
pub const CODE: i32 = 80877103;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SslRequest;

impl WireMessage for SslRequest {
    const TAG: Option<u8> = None;
    const NAME: &'static str = "SSLRequest";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let code = reader.i32("request code")?;
        if code != CODE {
            return Err(reader.invalid("request code", code.into()));
        }
        reader.finish()?;
        Ok(SslRequest)
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
        assert_eq!(SslRequest.encode().len(), 8);
        round_trip(Direction::Frontend, SslRequest);
    }
}
