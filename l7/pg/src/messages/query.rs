//! Query ('Q'): the simple query protocol; may hold several statements.

use bytes::{Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub sql: String,
}

impl Query {
    pub fn new(sql: impl Into<String>) -> Self {
        Self { sql: sql.into() }
    }
}

impl WireMessage for Query {
    const TAG: Option<u8> = Some(b'Q');
    const NAME: &'static str = "Query";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let sql = reader.cstr("query string")?;
        reader.finish()?;
        Ok(Self { sql })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_cstr(out, self.sql.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips() {
        round_trip(Direction::Frontend, Query::new("select 1; select 'é'"));
        round_trip(Direction::Frontend, Query::new(""));
    }

    #[test]
    fn refuses_a_missing_terminator_and_trailing_bytes() {
        assert!(matches!(
            Query::parse(Bytes::from_static(b"select 1")),
            Err(ProtocolError::Truncated { .. })
        ));
        assert!(matches!(
            Query::parse(Bytes::from_static(b"select 1\0x")),
            Err(ProtocolError::TrailingBytes { extra: 1, .. })
        ));
        assert!(matches!(
            Query::parse(Bytes::from_static(b"\xff\0")),
            Err(ProtocolError::InvalidUtf8 { .. })
        ));
    }
}
