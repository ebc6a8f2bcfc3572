//! PasswordMessage ('p'): a cleartext or md5-hashed password. SASL messages
//! share the type byte; which one a 'p' is depends on the authentication
//! request the server sent last (see [`crate::session::PasswordKind`]).

use bytes::{Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Clone, PartialEq, Eq)]
pub struct PasswordMessage {
    /// Cleartext, or `md5` followed by 32 hex digits. Not UTF-8 checked.
    pub password: Bytes,
}

// A password never goes to logs, even in debug output.
impl std::fmt::Debug for PasswordMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordMessage")
            .field("password", &"<redacted>")
            .finish()
    }
}

impl WireMessage for PasswordMessage {
    const TAG: Option<u8> = Some(b'p');
    const NAME: &'static str = "PasswordMessage";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let password = reader.cstr_bytes("password")?;
        reader.finish()?;
        Ok(Self { password })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_cstr(out, &self.password);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::round_trip;

    #[test]
    fn round_trips_and_hides_the_password() {
        let message = PasswordMessage {
            password: Bytes::from_static(b"md5abcdef"),
        };
        assert!(!format!("{message:?}").contains("abcdef"));
        round_trip(Direction::Frontend, message);
    }
}
