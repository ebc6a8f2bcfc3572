//! ErrorResponse ('E'): fields identified by a one-byte code. NoticeResponse
//! has the same body (see `notice_response.rs`).

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

/// Field codes, as in the protocol's "Error and Notice Message Fields".
pub mod field {
    pub const SEVERITY: u8 = b'S';
    /// Never localized (protocol 3.0 servers from 9.6 on).
    pub const SEVERITY_NONLOCALIZED: u8 = b'V';
    pub const CODE: u8 = b'C';
    pub const MESSAGE: u8 = b'M';
    pub const DETAIL: u8 = b'D';
    pub const HINT: u8 = b'H';
    pub const POSITION: u8 = b'P';
    pub const SCHEMA: u8 = b's';
    pub const TABLE: u8 = b't';
    pub const COLUMN: u8 = b'c';
    pub const CONSTRAINT: u8 = b'n';
    pub const ROUTINE: u8 = b'R';
}

/// SQLSTATE for "insufficient privilege": what a blocked statement gets.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// SQLSTATE for "protocol violation".
pub const PROTOCOL_VIOLATION: &str = "08P01";

/// The fields of an ErrorResponse or NoticeResponse, in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    pub fields: Vec<(u8, String)>,
}

impl ErrorFields {
    pub fn get(&self, code: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, value)| value.as_str())
    }

    /// The non-localized severity when present (ERROR, FATAL, PANIC, WARNING, …).
    pub fn severity(&self) -> Option<&str> {
        self.get(field::SEVERITY_NONLOCALIZED)
            .or_else(|| self.get(field::SEVERITY))
    }

    /// The SQLSTATE.
    pub fn code(&self) -> Option<&str> {
        self.get(field::CODE)
    }

    pub fn message(&self) -> Option<&str> {
        self.get(field::MESSAGE)
    }

    pub fn detail(&self) -> Option<&str> {
        self.get(field::DETAIL)
    }

    pub fn hint(&self) -> Option<&str> {
        self.get(field::HINT)
    }

    pub(crate) fn parse(reader: &mut Reader) -> Result<Self, ProtocolError> {
        let mut fields = Vec::new();
        loop {
            match reader.u8("field code")? {
                0 => break,
                code => fields.push((code, reader.cstr_lossy("field value")?)),
            }
        }
        Ok(Self { fields })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        for (code, value) in &self.fields {
            out.put_u8(*code);
            put_cstr(out, value.as_bytes());
        }
        out.put_u8(0);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorResponse {
    pub fields: ErrorFields,
}

impl ErrorResponse {
    /// An error as a server would write it: severity (both forms), SQLSTATE
    /// and message.
    pub fn new(severity: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            fields: ErrorFields {
                fields: vec![
                    (field::SEVERITY, severity.into()),
                    (field::SEVERITY_NONLOCALIZED, severity.into()),
                    (field::CODE, code.into()),
                    (field::MESSAGE, message.into()),
                ],
            },
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.fields.fields.push((field::DETAIL, detail.into()));
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.fields.fields.push((field::HINT, hint.into()));
        self
    }

    /// What a client gets for a statement a rule refused (SQLSTATE 42501).
    pub fn blocked(rule: &str, reason: &str) -> Self {
        Self::new(
            "ERROR",
            INSUFFICIENT_PRIVILEGE,
            format!("statement blocked by rule \"{rule}\""),
        )
        .with_detail(reason.to_string())
    }

    /// What a client gets before its session is ended for a malformed or
    /// oversized message (FATAL, SQLSTATE 08P01).
    pub fn protocol_violation(error: &ProtocolError) -> Self {
        Self::new("FATAL", PROTOCOL_VIOLATION, error.to_string())
    }

    pub fn severity(&self) -> Option<&str> {
        self.fields.severity()
    }

    pub fn code(&self) -> Option<&str> {
        self.fields.code()
    }

    pub fn message(&self) -> Option<&str> {
        self.fields.message()
    }

    pub fn detail(&self) -> Option<&str> {
        self.fields.detail()
    }

    pub fn hint(&self) -> Option<&str> {
        self.fields.hint()
    }
}

impl WireMessage for ErrorResponse {
    const TAG: Option<u8> = Some(b'E');
    const NAME: &'static str = "ErrorResponse";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let fields = ErrorFields::parse(&mut reader)?;
        reader.finish()?;
        Ok(Self { fields })
    }

    fn encode_body(&self, out: &mut BytesMut) {
        self.fields.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn round_trips_with_detail_and_hint() {
        let message = ErrorResponse::new("ERROR", "42P01", "relation \"x\" does not exist")
            .with_detail("d")
            .with_hint("h");
        assert_eq!(message.code(), Some("42P01"));
        assert_eq!(message.severity(), Some("ERROR"));
        assert_eq!(message.detail(), Some("d"));
        assert_eq!(message.hint(), Some("h"));
        truncations_fail(&message);
        round_trip(Direction::Backend, message);
    }

    #[test]
    fn blocked_names_the_rule_with_sqlstate_42501() {
        let message = ErrorResponse::blocked("no-drop", "DROP is not allowed");
        assert_eq!(message.code(), Some("42501"));
        assert_eq!(
            message.message(),
            Some("statement blocked by rule \"no-drop\"")
        );
        assert_eq!(message.detail(), Some("DROP is not allowed"));
        let parsed = ErrorResponse::parse(message.encode().slice(5..)).unwrap();
        assert_eq!(parsed, message);
    }

    #[test]
    fn protocol_violation_is_fatal_08p01() {
        let error = ProtocolError::UnexpectedMessage {
            expected: "a startup message",
            tag: crate::Tag::Byte(b'Q'),
        };
        let message = ErrorResponse::protocol_violation(&error);
        assert_eq!(message.severity(), Some("FATAL"));
        assert_eq!(message.code(), Some("08P01"));
        assert!(message.message().unwrap().contains("'Q'"));
    }

    #[test]
    fn prefers_the_nonlocalized_severity() {
        let fields = ErrorFields {
            fields: vec![(b'S', "FEHLER".into()), (b'V', "ERROR".into())],
        };
        assert_eq!(fields.severity(), Some("ERROR"));
    }
}
