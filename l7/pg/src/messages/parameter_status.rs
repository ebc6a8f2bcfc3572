//! ParameterStatus ('S'): a run-time parameter's current value.

use bytes::{Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStatus {
    pub name: String,
    pub value: String,
}

impl WireMessage for ParameterStatus {
    const TAG: Option<u8> = Some(b'S');
    const NAME: &'static str = "ParameterStatus";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let name = reader.cstr_lossy("name")?;
        let value = reader.cstr_lossy("value")?;
        reader.finish()?;
        Ok(Self { name, value })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_cstr(out, self.name.as_bytes());
        put_cstr(out, self.value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips() {
        let message = ParameterStatus {
            name: "client_encoding".into(),
            value: "UTF8".into(),
        };
        truncations_fail(&message);
        round_trip(Direction::Backend, message);
    }
}
