//! NoticeResponse ('N'): a warning or notice, same fields as an error.

use bytes::{Bytes, BytesMut};

use super::{ErrorFields, WireMessage};
use crate::error::ProtocolError;
use crate::wire::Reader;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoticeResponse {
    pub fields: ErrorFields,
}

impl WireMessage for NoticeResponse {
    const TAG: Option<u8> = Some(b'N');
    const NAME: &'static str = "NoticeResponse";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let fields = ErrorFields::parse(&mut reader)?;
        reader.finish()?;
        Ok(Self { fields })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        self.fields.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips() {
        let message = NoticeResponse {
            fields: ErrorFields {
                fields: vec![(b'S', "NOTICE".into()), (b'M', "table exists".into())],
            },
        };
        assert_eq!(message.fields.severity(), Some("NOTICE"));
        round_trip(Direction::Backend, message);
    }
}
