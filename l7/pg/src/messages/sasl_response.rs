//! SASLResponse ('p'): a later SASL message (SCRAM's client-final).

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::Reader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslResponse {
    pub data: Bytes,
}

impl WireMessage for SaslResponse {
    const TAG: Option<u8> = Some(b'p');
    const NAME: &'static str = "SASLResponse";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        Ok(Self {
            data: Reader::new(body, Self::NAME).rest(),
        })
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
    fn round_trips() {
        round_trip(
            Direction::Frontend,
            SaslResponse {
                data: Bytes::from_static(b"c=biws,r=abc,p=xyz"),
            },
        );
    }
}
