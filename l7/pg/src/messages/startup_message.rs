//! StartupMessage: the untyped first message of a session (protocol 3.x).

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

/// Protocol 3.0, the version every supported server speaks.
pub const PROTOCOL_3_0: ProtocolVersion = ProtocolVersion { major: 3, minor: 0 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolVersion {
    pub major: u16,
    pub minor: u16,
}

impl ProtocolVersion {
    pub(crate) fn code(self) -> i32 {
        (i32::from(self.major) << 16) | i32::from(self.minor)
    }

    pub(crate) fn from_code(code: i32) -> Self {
        Self {
            major: (code as u32 >> 16) as u16,
            minor: code as u16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// Major 3; a newer minor is answered by NegotiateProtocolVersion.
    pub version: ProtocolVersion,
    /// `user` (required), `database`, `application_name`, `options`, … in order.
    pub parameters: Vec<(String, String)>,
}

impl StartupMessage {
    pub fn new(parameters: Vec<(String, String)>) -> Self {
        Self {
            version: PROTOCOL_3_0,
            parameters,
        }
    }

    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn user(&self) -> Option<&str> {
        self.parameter("user")
    }

    /// The database; Postgres defaults it to the user name.
    pub fn database(&self) -> Option<&str> {
        self.parameter("database").or(self.user())
    }
}

impl WireMessage for StartupMessage {
    const TAG: Option<u8> = None;
    const NAME: &'static str = "StartupMessage";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let version = ProtocolVersion::from_code(reader.i32("protocol version")?);
        if version.major != 3 {
            return Err(ProtocolError::UnsupportedProtocolVersion {
                major: version.major,
                minor: version.minor,
            });
        }
        let mut parameters = Vec::new();
        loop {
            let name = reader.cstr("parameter name")?;
            if name.is_empty() {
                break;
            }
            let value = reader.cstr("parameter value")?;
            parameters.push((name, value));
        }
        reader.finish()?;
        Ok(Self {
            version,
            parameters,
        })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_i32(self.version.code());
        for (name, value) in &self.parameters {
            put_cstr(out, name.as_bytes());
            put_cstr(out, value.as_bytes());
        }
        out.put_u8(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips_with_parameters() {
        let message = StartupMessage::new(vec![
            ("user".into(), "alice".into()),
            ("database".into(), "orders".into()),
            ("application_name".into(), "psql".into()),
        ]);
        assert_eq!(message.user(), Some("alice"));
        assert_eq!(message.database(), Some("orders"));
        truncations_fail(&message);
        round_trip(Direction::Frontend, message);
    }

    #[test]
    fn database_defaults_to_user_and_newer_minor_is_kept() {
        let mut message = StartupMessage::new(vec![("user".into(), "bob".into())]);
        message.version.minor = 2;
        assert_eq!(message.database(), Some("bob"));
        round_trip(Direction::Frontend, message);
    }

    #[test]
    fn refuses_protocol_2() {
        let body = Bytes::from_static(&[0, 2, 0, 0, 0]);
        assert_eq!(
            StartupMessage::parse(body),
            Err(ProtocolError::UnsupportedProtocolVersion { major: 2, minor: 0 })
        );
    }
}
