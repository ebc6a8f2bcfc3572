//! Parse ('P'): prepares a statement (extended query protocol).

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    /// Empty for the unnamed statement.
    pub name: String,
    pub sql: String,
    /// Parameter type OIDs the client fixes (0: let the server infer).
    pub param_types: Vec<u32>,
}

impl WireMessage for Parse {
    const TAG: Option<u8> = Some(b'P');
    const NAME: &'static str = "Parse";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let name = reader.cstr("statement name")?;
        let sql = reader.cstr("query string")?;
        let count = reader.count16("parameter type count")?;
        let mut param_types = Vec::with_capacity(reader.capacity(count, 4));
        for _ in 0..count {
            param_types.push(reader.u32("parameter type")?);
        }
        reader.finish()?;
        Ok(Self {
            name,
            sql,
            param_types,
        })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_cstr(out, self.name.as_bytes());
        put_cstr(out, self.sql.as_bytes());
        out.put_i16(self.param_types.len() as i16);
        for oid in &self.param_types {
            out.put_u32(*oid);
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
        let message = Parse {
            name: "s1".into(),
            sql: "select $1::int + $2".into(),
            param_types: vec![23, 0],
        };
        truncations_fail(&message);
        round_trip(Direction::Frontend, message);
    }

    #[test]
    fn refuses_a_negative_count_and_a_count_beyond_the_body() {
        let mut body = BytesMut::from(&b"\0select 1\0"[..]);
        body.put_i16(-1);
        assert!(matches!(
            Parse::parse(body.freeze()),
            Err(ProtocolError::InvalidField { value: -1, .. })
        ));
        let mut body = BytesMut::from(&b"\0select 1\0"[..]);
        body.put_i16(i16::MAX);
        assert!(matches!(
            Parse::parse(body.freeze()),
            Err(ProtocolError::Truncated { .. })
        ));
    }
}
