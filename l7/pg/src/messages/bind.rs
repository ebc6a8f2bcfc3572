//! Bind ('B'): binds parameter values to a prepared statement, making a portal.

use bytes::{BufMut, Bytes, BytesMut};

use super::{WireMessage, parse_formats, put_formats};
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr, put_nullable};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bind {
    /// Empty for the unnamed portal.
    pub portal: String,
    /// Empty for the unnamed statement.
    pub statement: String,
    /// None (all text), one (for all), or one per parameter.
    pub param_formats: Vec<i16>,
    /// Values; `None` is SQL NULL.
    pub params: Vec<Option<Bytes>>,
    /// None (all text), one (for all), or one per result column.
    pub result_formats: Vec<i16>,
}

impl WireMessage for Bind {
    const TAG: Option<u8> = Some(b'B');
    const NAME: &'static str = "Bind";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let portal = reader.cstr("portal name")?;
        let statement = reader.cstr("statement name")?;
        let param_formats = parse_formats(&mut reader, "parameter format")?;
        let count = reader.count16("parameter count")?;
        let mut params = Vec::with_capacity(reader.capacity(count, 4));
        for _ in 0..count {
            params.push(reader.nullable_bytes("parameter value")?);
        }
        let result_formats = parse_formats(&mut reader, "result format")?;
        reader.finish()?;
        Ok(Self {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_cstr(out, self.portal.as_bytes());
        put_cstr(out, self.statement.as_bytes());
        put_formats(out, &self.param_formats);
        out.put_i16(self.params.len() as i16);
        for value in &self.params {
            put_nullable(out, value.as_deref());
        }
        put_formats(out, &self.result_formats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips_formats_nulls_and_values() {
        let message = Bind {
            portal: "p1".into(),
            statement: "s1".into(),
            param_formats: vec![0, 1],
            params: vec![Some(Bytes::from_static(b"42")), None, Some(Bytes::new())],
            result_formats: vec![1],
        };
        truncations_fail(&message);
        round_trip(Direction::Frontend, message);
        round_trip(Direction::Frontend, Bind::default());
    }

    #[test]
    fn refuses_a_value_longer_than_the_body() {
        let mut body = BytesMut::from(&b"\0\0"[..]);
        body.put_i16(0);
        body.put_i16(1);
        body.put_i32(1_000_000);
        assert!(matches!(
            Bind::parse(body.freeze()),
            Err(ProtocolError::Truncated {
                field: "parameter value",
                ..
            })
        ));
    }
}
