//! Execute ('E'): runs a portal.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Execute {
    /// Empty for the unnamed portal.
    pub portal: String,
    /// 0: no limit; else the portal is suspended after this many rows.
    pub max_rows: i32,
}

impl WireMessage for Execute {
    const TAG: Option<u8> = Some(b'E');
    const NAME: &'static str = "Execute";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let portal = reader.cstr("portal name")?;
        let max_rows = reader.i32("maximum rows")?;
        reader.finish()?;
        Ok(Self { portal, max_rows })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_cstr(out, self.portal.as_bytes());
        out.put_i32(self.max_rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips() {
        round_trip(Direction::Frontend, Execute::default());
        round_trip(
            Direction::Frontend,
            Execute {
                portal: "c".into(),
                max_rows: 100,
            },
        );
    }
}
