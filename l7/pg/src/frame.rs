//! Framing: cutting each direction's byte stream into messages, with every
//! declared length bounded before anything is buffered for it.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{ProtocolError, Tag};
use crate::messages::{cancel_request_code, gssenc_request_code, ssl_request_code};

/// Postgres refuses startup packets longer than this (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET_LEN: usize = 10_000;

/// The default bound on any other message: 64 MiB. Postgres accepts messages
/// up to 1 GiB; rows or COPY chunks bigger than this end the session.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 64 * 1024 * 1024;

/// How much room a decoder reserves ahead for a message still arriving: a
/// peer that declares a large length but sends slowly makes us hold only
/// what it actually sent, not what it declared.
const RESERVE_AHEAD: usize = 64 * 1024;

/// Which side sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The client (psql, a driver).
    Frontend,
    /// The server.
    Backend,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Frontend => "frontend",
            Direction::Backend => "backend",
        })
    }
}

/// Bounds applied by the decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest typed message accepted, type byte and length included.
    pub max_message_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
        }
    }
}

/// One message exactly as it was on the wire: forwarding `raw()` reproduces
/// the stream byte for byte. Typed views are parsed on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    raw: Bytes,
    direction: Direction,
    tag: Tag,
}

impl Message {
    /// The whole message: type byte (if any), length, body.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The type byte, for typed messages.
    pub fn type_byte(&self) -> Option<u8> {
        match self.tag {
            Tag::Byte(byte) => Some(byte),
            _ => None,
        }
    }

    /// The body: what follows the type byte and length (for the untyped
    /// startup-phase messages, what follows the length).
    pub fn body(&self) -> Bytes {
        let header = match self.tag {
            Tag::Byte(_) => 5,
            Tag::EncryptionResponse => 0,
            _ => 4,
        };
        self.raw.slice(header..)
    }

    /// Parses the body as `M`.
    pub fn parse<M: crate::messages::WireMessage>(&self) -> Result<M, ProtocolError> {
        M::parse(self.body())
    }
}

/// Decodes what the client sends. The first message of a connection has no
/// type byte (StartupMessage, SSLRequest, GSSENCRequest or CancelRequest);
/// after SSL/GSSENC requests another untyped message follows.
#[derive(Debug)]
pub struct FrontendDecoder {
    limits: Limits,
    state: FrontendState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrontendState {
    Untyped,
    Typed,
    /// After a CancelRequest the connection carries nothing more.
    Ended,
}

impl FrontendDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: FrontendState::Untyped,
        }
    }

    /// For a stream that starts after the startup message (tests, or a
    /// caller that handled the startup itself).
    pub fn skip_startup(&mut self) {
        self.state = FrontendState::Typed;
    }

    /// Takes one whole message off the front of `buf`, or `None` if more
    /// bytes are needed (then reserves some room for the rest, only once its
    /// length has passed the limits).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        match self.state {
            FrontendState::Typed => {
                decode_typed(buf, Direction::Frontend, self.limits, is_frontend_tag)
            }
            FrontendState::Ended if buf.is_empty() => Ok(None),
            FrontendState::Ended => Err(ProtocolError::DataAfterEnd {
                direction: Direction::Frontend,
            }),
            FrontendState::Untyped => {
                let Some(message) = decode_untyped(buf)? else {
                    return Ok(None);
                };
                match message.tag {
                    Tag::Startup => self.state = FrontendState::Typed,
                    Tag::CancelRequest => self.state = FrontendState::Ended,
                    _ => {}
                }
                Ok(Some(message))
            }
        }
    }
}

fn decode_untyped(buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let declared = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    // Length and request code (or protocol version): 8 bytes at least.
    let len = match usize::try_from(declared) {
        Ok(len) if len >= 8 => len,
        _ => {
            return Err(ProtocolError::LengthTooSmall {
                direction: Direction::Frontend,
                tag: Tag::Startup,
                length: declared.into(),
                minimum: 8,
            });
        }
    };
    if len > MAX_STARTUP_PACKET_LEN {
        return Err(ProtocolError::LengthTooLarge {
            direction: Direction::Frontend,
            tag: Tag::Startup,
            length: len,
            limit: MAX_STARTUP_PACKET_LEN,
        });
    }
    if buf.len() < 8 {
        return Ok(None);
    }
    let code = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let tag = match code {
        c if c == ssl_request_code() => Tag::SslRequest,
        c if c == gssenc_request_code() => Tag::GssEncRequest,
        c if c == cancel_request_code() => Tag::CancelRequest,
        _ => Tag::Startup,
    };
    if buf.len() < len {
        buf.reserve(len - buf.len());
        return Ok(None);
    }
    Ok(Some(Message {
        raw: buf.split_to(len).freeze(),
        direction: Direction::Frontend,
        tag,
    }))
}

/// Decodes what the server sends. Right after the client's SSLRequest or
/// GSSENCRequest the server answers with one unframed byte; the session
/// calls [`BackendDecoder::expect_encryption_response`] so it is read as such.
#[derive(Debug)]
pub struct BackendDecoder {
    limits: Limits,
    expect_encryption_response: bool,
}

impl BackendDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            expect_encryption_response: false,
        }
    }

    /// The next byte is the answer to an SSL or GSSENC request: 'S' or 'G'
    /// (accepted), 'N' (refused), or an ErrorResponse from an old server.
    pub fn expect_encryption_response(&mut self) {
        self.expect_encryption_response = true;
    }

    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        if self.expect_encryption_response {
            match buf.first() {
                None => return Ok(None),
                Some(b'S' | b'N' | b'G') => {
                    self.expect_encryption_response = false;
                    return Ok(Some(Message {
                        raw: buf.split_to(1).freeze(),
                        direction: Direction::Backend,
                        tag: Tag::EncryptionResponse,
                    }));
                }
                Some(b'E') => self.expect_encryption_response = false,
                Some(&other) => {
                    return Err(ProtocolError::UnexpectedMessage {
                        expected: "an answer to the encryption request",
                        tag: Tag::Byte(other),
                    });
                }
            }
        }
        decode_typed(buf, Direction::Backend, self.limits, is_backend_tag)
    }
}

fn decode_typed(
    buf: &mut BytesMut,
    direction: Direction,
    limits: Limits,
    known: fn(u8) -> bool,
) -> Result<Option<Message>, ProtocolError> {
    let Some(&byte) = buf.first() else {
        return Ok(None);
    };
    let tag = Tag::Byte(byte);
    if !known(byte) {
        return Err(ProtocolError::UnknownMessageType { direction, tag });
    }
    if buf.len() < 5 {
        return Ok(None);
    }
    let declared = (&buf[1..5]).get_i32();
    let len = match usize::try_from(declared) {
        Ok(len) if len >= 4 => len,
        _ => {
            return Err(ProtocolError::LengthTooSmall {
                direction,
                tag,
                length: declared.into(),
                minimum: 4,
            });
        }
    };
    // The limit counts the type byte too.
    if len + 1 > limits.max_message_len {
        return Err(ProtocolError::LengthTooLarge {
            direction,
            tag,
            length: len + 1,
            limit: limits.max_message_len,
        });
    }
    if buf.len() < len + 1 {
        buf.reserve((len + 1 - buf.len()).min(RESERVE_AHEAD));
        return Ok(None);
    }
    Ok(Some(Message {
        raw: buf.split_to(len + 1).freeze(),
        direction,
        tag,
    }))
}

fn is_frontend_tag(byte: u8) -> bool {
    matches!(
        byte,
        b'Q' | b'P'
            | b'B'
            | b'D'
            | b'E'
            | b'S'
            | b'H'
            | b'C'
            | b'd'
            | b'c'
            | b'f'
            | b'F'
            | b'X'
            | b'p'
    )
}

fn is_backend_tag(byte: u8) -> bool {
    matches!(
        byte,
        b'R' | b'S'
            | b'K'
            | b'Z'
            | b'T'
            | b'D'
            | b'C'
            | b'I'
            | b'E'
            | b'N'
            | b'1'
            | b'2'
            | b'3'
            | b'n'
            | b't'
            | b's'
            | b'G'
            | b'H'
            | b'W'
            | b'd'
            | b'c'
            | b'A'
            | b'v'
            | b'V'
    )
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
