//! CopyInResponse ('G'): the server is ready for COPY FROM STDIN data.

use bytes::{Bytes, BytesMut};

use super::{CopyFormat, WireMessage};
use crate::error::ProtocolError;
use crate::wire::Reader;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyInResponse {
    pub format: CopyFormat,
}

impl WireMessage for CopyInResponse {
    const TAG: Option<u8> = Some(b'G');
    const NAME: &'static str = "CopyInResponse";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let format = CopyFormat::parse(&mut reader)?;
        reader.finish()?;
        Ok(Self { format })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        self.format.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips() {
        let message = CopyInResponse {
            format: CopyFormat {
                overall: 0,
                columns: vec![0, 0, 0],
            },
        };
        truncations_fail(&message);
        round_trip(Direction::Backend, message);
        assert!(CopyInResponse::parse(Bytes::from_static(&[7, 0, 0])).is_err());
    }
}
