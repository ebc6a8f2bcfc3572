//! ReadyForQuery ('Z'): the server waits for a new query; carries the
//! transaction status.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::Reader;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransactionStatus {
    /// 'I': not in a transaction block.
    #[default]
    Idle,
    /// 'T': in a transaction block.
    InTransaction,
    /// 'E': in a failed transaction block (queries refused until its end).
    Failed,
}

impl TransactionStatus {
    pub fn byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadyForQuery {
    pub status: TransactionStatus,
}

impl WireMessage for ReadyForQuery {
    const TAG: Option<u8> = Some(b'Z');
    const NAME: &'static str = "ReadyForQuery";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let status = match reader.u8("transaction status")? {
            b'I' => TransactionStatus::Idle,
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            other => return Err(reader.invalid("transaction status", other.into())),
        };
        reader.finish()?;
        Ok(Self { status })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_u8(self.status.byte());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips_every_status() {
        for status in [
            TransactionStatus::Idle,
            TransactionStatus::InTransaction,
            TransactionStatus::Failed,
        ] {
            round_trip(Direction::Backend, ReadyForQuery { status });
        }
        assert!(ReadyForQuery::parse(Bytes::from_static(b"X")).is_err());
    }
}
