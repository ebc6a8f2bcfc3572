//! BackendKeyData ('K'): what a CancelRequest for this session must quote.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use super::cancel_request::MAX_SECRET_KEY_LEN;
use crate::error::ProtocolError;
use crate::wire::Reader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendKeyData {
    pub process_id: i32,
    /// 4 bytes in protocol 3.0, up to 256 in 3.2.
    pub secret_key: Bytes,
}

impl WireMessage for BackendKeyData {
    const TAG: Option<u8> = Some(b'K');
    const NAME: &'static str = "BackendKeyData";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let process_id = reader.i32("process id")?;
        let secret_key = reader.rest();
        if !(4..=MAX_SECRET_KEY_LEN).contains(&secret_key.len()) {
            return Err(reader.invalid("secret key length", secret_key.len() as i64));
        }
        Ok(Self {
            process_id,
            secret_key,
        })
    }

    fn encode_body(&self, out: &mut BytesMut) {
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
    fn round_trips() {
        let message = BackendKeyData {
            process_id: 77,
            secret_key: Bytes::from_static(&[9, 8, 7, 6]),
        };
        truncations_fail(&message);
        round_trip(Direction::Backend, message);
    }
}
