//! NegotiateProtocolVersion ('v'): the server supports an older minor version
//! or not all the `_pq_.` options the startup message asked for.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateProtocolVersion {
    pub newest_minor: i32,
    pub unrecognized_options: Vec<String>,
}

impl WireMessage for NegotiateProtocolVersion {
    const TAG: Option<u8> = Some(b'v');
    const NAME: &'static str = "NegotiateProtocolVersion";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let newest_minor = reader.i32("newest minor version")?;
        let count = reader.i32("option count")?;
        let count =
            usize::try_from(count).map_err(|_| reader.invalid("option count", count.into()))?;
        let mut unrecognized_options = Vec::with_capacity(reader.capacity(count, 1));
        for _ in 0..count {
            unrecognized_options.push(reader.cstr_lossy("option name")?);
        }
        reader.finish()?;
        Ok(Self {
            newest_minor,
            unrecognized_options,
        })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_i32(self.newest_minor);
        out.put_i32(self.unrecognized_options.len() as i32);
        for option in &self.unrecognized_options {
            put_cstr(out, option.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips() {
        let message = NegotiateProtocolVersion {
            newest_minor: 0,
            unrecognized_options: vec!["_pq_.compression".into()],
        };
        truncations_fail(&message);
        round_trip(Direction::Backend, message);
    }
}
