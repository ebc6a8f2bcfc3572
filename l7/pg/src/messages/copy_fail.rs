//! CopyFail ('f'): the client aborts a COPY FROM STDIN.

use bytes::{Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFail {
    pub message: String,
}

impl WireMessage for CopyFail {
    const TAG: Option<u8> = Some(b'f');
    const NAME: &'static str = "CopyFail";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let message = reader.cstr_lossy("error message")?;
        reader.finish()?;
        Ok(Self { message })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_cstr(out, self.message.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips() {
        round_trip(
            Direction::Frontend,
            CopyFail {
                message: "aborted by user".into(),
            },
        );
    }
}
