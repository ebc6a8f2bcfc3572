//! One file per wire message: a typed struct with `parse` (from the body,
//! i.e. the bytes after the type byte and length) and `encode`.
//!
//! Typed parsing is only done on demand: the session forwards the raw bytes of
//! every message it does not change (see [`crate::Message`]).

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::wire;

macro_rules! empty_message {
    ($(#[$doc:meta])* $name:ident, $tag:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl crate::messages::WireMessage for $name {
            const TAG: Option<u8> = Some($tag);
            const NAME: &'static str = stringify!($name);

            fn parse(body: bytes::Bytes) -> Result<Self, crate::error::ProtocolError> {
                crate::wire::Reader::new(body, Self::NAME).finish()?;
                Ok($name)
            }

            fn encode_body(&self, _out: &mut bytes::BytesMut) {}
        }
    };
}

// Frontend.
mod bind;
mod cancel_request;
mod close;
mod copy_data;
mod copy_done;
mod copy_fail;
mod describe;
mod execute;
mod flush;
mod function_call;
mod gssenc_request;
mod parse;
mod password_message;
mod query;
mod sasl_initial_response;
mod sasl_response;
mod ssl_request;
mod startup_message;
mod sync;
mod terminate;

// Backend.
mod authentication;
mod backend_key_data;
mod bind_complete;
mod close_complete;
mod command_complete;
mod copy_both_response;
mod copy_in_response;
mod copy_out_response;
mod copy_response;
mod data_row;
mod empty_query_response;
mod error_response;
mod function_call_response;
mod negotiate_protocol_version;
mod no_data;
mod notice_response;
mod notification_response;
mod parameter_description;
mod parameter_status;
mod parse_complete;
mod portal_suspended;
mod ready_for_query;
pub(crate) mod row_description;

pub use authentication::Authentication;
pub use backend_key_data::BackendKeyData;
pub use bind::Bind;
pub use bind_complete::BindComplete;
pub use cancel_request::CancelRequest;
pub use close::Close;
pub use close_complete::CloseComplete;
pub use command_complete::CommandComplete;
pub use copy_both_response::CopyBothResponse;
pub use copy_data::CopyData;
pub use copy_done::CopyDone;
pub use copy_fail::CopyFail;
pub use copy_in_response::CopyInResponse;
pub use copy_out_response::CopyOutResponse;
pub use copy_response::CopyFormat;
pub use data_row::DataRow;
pub use describe::Describe;
pub use empty_query_response::EmptyQueryResponse;
pub use error_response::{ErrorFields, ErrorResponse, field};
pub use execute::Execute;
pub use flush::Flush;
pub use function_call::FunctionCall;
pub use function_call_response::FunctionCallResponse;
pub use gssenc_request::GssEncRequest;
pub use negotiate_protocol_version::NegotiateProtocolVersion;
pub use no_data::NoData;
pub use notice_response::NoticeResponse;
pub use notification_response::NotificationResponse;
pub use parameter_description::ParameterDescription;
pub use parameter_status::ParameterStatus;
pub use parse::Parse;
pub use parse_complete::ParseComplete;
pub use password_message::PasswordMessage;
pub use portal_suspended::PortalSuspended;
pub use query::Query;
pub use ready_for_query::{ReadyForQuery, TransactionStatus};
pub use row_description::{FieldDescription, RowDescription};
pub use sasl_initial_response::SaslInitialResponse;
pub use sasl_response::SaslResponse;
pub use ssl_request::SslRequest;
pub use startup_message::{ProtocolVersion, StartupMessage};
pub use sync::Sync;
pub use terminate::Terminate;

/// The request codes that stand where a startup message has its version.
pub(crate) fn ssl_request_code() -> i32 {
    ssl_request::CODE
}

pub(crate) fn gssenc_request_code() -> i32 {
    gssenc_request::CODE
}

pub(crate) fn cancel_request_code() -> i32 {
    cancel_request::CODE
}

/// A message that can be parsed from its body and encoded whole.
pub trait WireMessage: Sized {
    /// The type byte; `None` for the untyped messages that open a connection.
    const TAG: Option<u8>;
    /// The protocol's name for the message, used in errors.
    const NAME: &'static str;

    /// Parses the body: the bytes after the type byte and the length.
    fn parse(body: Bytes) -> Result<Self, ProtocolError>;

    /// Writes the body only.
    fn encode_body(&self, out: &mut BytesMut);

    /// Writes the whole message: type byte (if any), length, body.
    fn encode_into(&self, out: &mut BytesMut) {
        match Self::TAG {
            Some(tag) => wire::put_message(out, tag, |out| self.encode_body(out)),
            None => wire::put_untyped(out, |out| self.encode_body(out)),
        }
    }

    fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.freeze()
    }
}

/// Whether Describe and Close name a prepared statement or a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Statement,
    Portal,
}

impl Target {
    pub(crate) fn parse(reader: &mut wire::Reader) -> Result<Self, ProtocolError> {
        match reader.u8("target")? {
            b'S' => Ok(Target::Statement),
            b'P' => Ok(Target::Portal),
            other => Err(reader.invalid("target", other.into())),
        }
    }

    pub(crate) fn byte(self) -> u8 {
        match self {
            Target::Statement => b'S',
            Target::Portal => b'P',
        }
    }
}

/// Format codes (Bind, FunctionCall, COPY responses): 0 text, 1 binary.
pub(crate) fn parse_formats(
    reader: &mut wire::Reader,
    field: &'static str,
) -> Result<Vec<i16>, ProtocolError> {
    let count = reader.count16(field)?;
    let mut formats = Vec::with_capacity(reader.capacity(count, 2));
    for _ in 0..count {
        formats.push(reader.i16(field)?);
    }
    Ok(formats)
}

pub(crate) fn put_formats(out: &mut BytesMut, formats: &[i16]) {
    use bytes::BufMut;
    out.put_i16(formats.len() as i16);
    for format in formats {
        out.put_i16(*format);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use bytes::BytesMut;

    use super::WireMessage;
    use crate::frame::{BackendDecoder, Direction, FrontendDecoder, Limits};

    /// Encodes `message`, frames it back with the decoder of `direction`, and
    /// checks that the frame keeps the exact bytes and parses to the same value.
    pub(crate) fn round_trip<M>(direction: Direction, message: M)
    where
        M: WireMessage + PartialEq + std::fmt::Debug,
    {
        let encoded = message.encode();
        let mut buf = BytesMut::from(&encoded[..]);
        let frame = match direction {
            Direction::Frontend => {
                let mut decoder = FrontendDecoder::new(Limits::default());
                if M::TAG.is_some() {
                    decoder.skip_startup();
                }
                decoder.decode(&mut buf)
            }
            Direction::Backend => BackendDecoder::new(Limits::default()).decode(&mut buf),
        }
        .expect("frames")
        .expect("a whole message");
        assert!(buf.is_empty(), "the decoder consumed the whole message");
        assert_eq!(frame.raw(), &encoded, "raw bytes are kept as they were");
        assert_eq!(frame.direction(), direction);
        if let Some(tag) = M::TAG {
            assert_eq!(frame.tag(), crate::Tag::Byte(tag));
        }
        let parsed = M::parse(frame.body()).expect("parses");
        assert_eq!(parsed, message);
        assert_eq!(parsed.encode(), encoded, "re-encoding gives the same bytes");
    }

    /// Parsing every strict prefix of the body fails cleanly (no panic).
    pub(crate) fn truncations_fail<M: WireMessage + std::fmt::Debug>(message: &M) {
        let encoded = message.encode();
        let header = if M::TAG.is_some() { 5 } else { 4 };
        let body = encoded.slice(header..);
        for len in 0..body.len() {
            let _ = M::parse(body.slice(..len));
        }
    }
}
