//! NotificationResponse ('A'): a NOTIFY on a channel the session LISTENs to.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationResponse {
    pub process_id: i32,
    pub channel: String,
    pub payload: String,
}

impl WireMessage for NotificationResponse {
    const TAG: Option<u8> = Some(b'A');
    const NAME: &'static str = "NotificationResponse";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let process_id = reader.i32("process id")?;
        let channel = reader.cstr_lossy("channel")?;
        let payload = reader.cstr_lossy("payload")?;
        reader.finish()?;
        Ok(Self {
            process_id,
            channel,
            payload,
        })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_i32(self.process_id);
        put_cstr(out, self.channel.as_bytes());
        put_cstr(out, self.payload.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips() {
        let message = NotificationResponse {
            process_id: 12,
            channel: "jobs".into(),
            payload: "{\"id\":1}".into(),
        };
        truncations_fail(&message);
        round_trip(Direction::Backend, message);
    }
}
