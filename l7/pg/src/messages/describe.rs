//! Describe ('D'): asks for the description of a statement or portal.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Target, WireMessage};
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    pub target: Target,
    pub name: String,
}

impl WireMessage for Describe {
    const TAG: Option<u8> = Some(b'D');
    const NAME: &'static str = "Describe";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let target = Target::parse(&mut reader)?;
        let name = reader.cstr("name")?;
        reader.finish()?;
        Ok(Self { target, name })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_u8(self.target.byte());
        put_cstr(out, self.name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips_both_targets_and_refuses_others() {
        for target in [Target::Statement, Target::Portal] {
            round_trip(
                Direction::Frontend,
                Describe {
                    target,
                    name: "x".into(),
                },
            );
        }
        assert!(Describe::parse(Bytes::from_static(b"Qx\0")).is_err());
    }
}
