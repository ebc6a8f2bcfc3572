//! Everything that can be wrong with bytes read from either side.

use crate::frame::Direction;

/// A message that breaks the protocol. The session that produced it should be
/// ended with [`crate::messages::ErrorResponse::protocol_violation`] sent to
/// the client; no other session is affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("{direction} message {tag} declares length {length}, below the minimum of {minimum}")]
    LengthTooSmall {
        direction: Direction,
        tag: Tag,
        length: i64,
        minimum: usize,
    },
    #[error("{direction} message {tag} declares length {length}, above the limit of {limit} bytes")]
    LengthTooLarge {
        direction: Direction,
        tag: Tag,
        length: usize,
        limit: usize,
    },
    #[error("unknown {direction} message type {tag}")]
    UnknownMessageType { direction: Direction, tag: Tag },
    #[error("unsupported protocol version {major}.{minor} in the startup packet")]
    UnsupportedProtocolVersion { major: u16, minor: u16 },
    #[error("{message}: body ends early while reading {field}")]
    Truncated {
        message: &'static str,
        field: &'static str,
    },
    #[error("{message}: {field} is not valid UTF-8")]
    InvalidUtf8 {
        message: &'static str,
        field: &'static str,
    },
    #[error("{message}: invalid {field} ({value})")]
    InvalidField {
        message: &'static str,
        field: &'static str,
        value: i64,
    },
    #[error("{message}: {extra} unexpected bytes after the last field")]
    TrailingBytes { message: &'static str, extra: usize },
    #[error("expected {expected}, got message {tag}")]
    UnexpectedMessage { expected: &'static str, tag: Tag },
    #[error("{direction} sent bytes after the connection should have ended")]
    DataAfterEnd { direction: Direction },
}

/// A message type as seen on the wire: a type byte, or one of the untyped
/// messages that start a frontend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    Byte(u8),
    Startup,
    SslRequest,
    GssEncRequest,
    CancelRequest,
    /// The server's one-byte answer to an SSL or GSSENC request.
    EncryptionResponse,
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tag::Byte(b) if b.is_ascii_graphic() => write!(f, "'{}'", *b as char),
            Tag::Byte(b) => write!(f, "0x{b:02x}"),
            Tag::Startup => f.write_str("StartupMessage"),
            Tag::SslRequest => f.write_str("SSLRequest"),
            Tag::GssEncRequest => f.write_str("GSSENCRequest"),
            Tag::CancelRequest => f.write_str("CancelRequest"),
            Tag::EncryptionResponse => f.write_str("encryption response"),
        }
    }
}
