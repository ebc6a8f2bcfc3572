//! SASLInitialResponse ('p'): the chosen mechanism and the client-first message.

use bytes::{Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr, put_nullable};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitialResponse {
    pub mechanism: String,
    /// The initial response; `None` is encoded as length -1.
    pub data: Option<Bytes>,
}

impl WireMessage for SaslInitialResponse {
    const TAG: Option<u8> = Some(b'p');
    const NAME: &'static str = "SASLInitialResponse";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let mechanism = reader.cstr("mechanism")?;
        let data = reader.nullable_bytes("initial response")?;
        reader.finish()?;
        Ok(Self { mechanism, data })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_cstr(out, self.mechanism.as_bytes());
        put_nullable(out, self.data.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips_with_and_without_data() {
        let message = SaslInitialResponse {
            mechanism: "SCRAM-SHA-256".into(),
            data: Some(Bytes::from_static(b"n,,n=,r=abc")),
        };
        truncations_fail(&message);
        round_trip(Direction::Frontend, message);
        round_trip(
            Direction::Frontend,
            SaslInitialResponse {
                mechanism: "X".into(),
                data: None,
            },
        );
    }
}
