//! CancelRequest: sent on a new connection to cancel the query running on
//! the session identified by BackendKeyData.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::Reader;

pub const CODE: i32 = 80877102;

/// The secret key is 4 bytes in protocol 3.0 and up to 256 in 3.2.
pub const MAX_SECRET_KEY_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    pub process_id: i32,
    pub secret_key: Bytes,
}

impl WireMessage for CancelRequest {
    const TAG: Option<u8> = None;
    const NAME: &'static str = "CancelRequest";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let code = reader.i32("request code")?;
        if code != CODE {
            return Err(reader.invalid("request code", code.into()));
        }
        let process_id = reader.i32("process id")?;
        let secret_key = reader.rest();
        if !(4..=MAX_SECRET_KEY_LEN).contains(&secret_key.len()) {
            return Err(ProtocolError::InvalidField {
                message: Self::NAME,
                field: "secret key length",
                value: secret_key.len() as i64,
            });
        }
        Ok(Self {
            process_id,
            secret_key,
        })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_i32(CODE);
        out.put_i32(self.process_id);
        out.put_slice(&self.secret_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips_with_a_protocol_3_0_key() {
        let message = CancelRequest {
            process_id: 4242,
            secret_key: Bytes::from_static(&[1, 2, 3, 4]),
        };
        assert_eq!(message.encode().len(), 16);
        truncations_fail(&message);
        round_trip(Direction::Frontend, message);
    }

    #[test]
    fn refuses_a_short_key() {
        let mut body = BytesMut::new();
        body.put_i32(CODE);
        body.put_i32(1);
        body.put_u8(9);
        assert!(matches!(
            CancelRequest::parse(body.freeze()),
            Err(ProtocolError::InvalidField {
                field: "secret key length",
                value: 1,
                ..
            })
        ));
    }
}
