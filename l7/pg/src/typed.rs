//! Typed views of a framed [`Message`], parsed on demand.

use bytes::Bytes;

use crate::error::{ProtocolError, Tag};
use crate::frame::{Direction, Message};
use crate::messages::*;

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    Startup(StartupMessage),
    SslRequest,
    GssEncRequest,
    CancelRequest(CancelRequest),
    /// 'p': a PasswordMessage, SASLInitialResponse or SASLResponse; which
    /// one depends on the last authentication request (see
    /// [`crate::session::PasswordKind`]), so the body is left raw.
    Password(Bytes),
    Query(Query),
    Parse(Parse),
    Bind(Bind),
    Describe(Describe),
    Execute(Execute),
    Sync,
    Flush,
    Close(Close),
    CopyData(CopyData),
    CopyDone,
    CopyFail(CopyFail),
    FunctionCall(FunctionCall),
    Terminate,
}

impl FrontendMessage {
    pub fn parse(message: &Message) -> Result<Self, ProtocolError> {
        let body = message.body();
        let tag = message.tag();
        if message.direction() != Direction::Frontend {
            return Err(ProtocolError::UnexpectedMessage {
                expected: "a frontend message",
                tag,
            });
        }
        Ok(match tag {
            Tag::Startup => Self::Startup(StartupMessage::parse(body)?),
            Tag::SslRequest => {
                SslRequest::parse(body)?;
                Self::SslRequest
            }
            Tag::GssEncRequest => {
                GssEncRequest::parse(body)?;
                Self::GssEncRequest
            }
            Tag::CancelRequest => Self::CancelRequest(CancelRequest::parse(body)?),
            Tag::Byte(b'p') => Self::Password(body),
            Tag::Byte(b'Q') => Self::Query(Query::parse(body)?),
            Tag::Byte(b'P') => Self::Parse(Parse::parse(body)?),
            Tag::Byte(b'B') => Self::Bind(Bind::parse(body)?),
            Tag::Byte(b'D') => Self::Describe(Describe::parse(body)?),
            Tag::Byte(b'E') => Self::Execute(Execute::parse(body)?),
            Tag::Byte(b'S') => {
                Sync::parse(body)?;
                Self::Sync
            }
            Tag::Byte(b'H') => {
                Flush::parse(body)?;
                Self::Flush
            }
            Tag::Byte(b'C') => Self::Close(Close::parse(body)?),
            Tag::Byte(b'd') => Self::CopyData(CopyData::parse(body)?),
            Tag::Byte(b'c') => {
                CopyDone::parse(body)?;
                Self::CopyDone
            }
            Tag::Byte(b'f') => Self::CopyFail(CopyFail::parse(body)?),
            Tag::Byte(b'F') => Self::FunctionCall(FunctionCall::parse(body)?),
            Tag::Byte(b'X') => {
                Terminate::parse(body)?;
                Self::Terminate
            }
            tag => {
                return Err(ProtocolError::UnknownMessageType {
                    direction: Direction::Frontend,
                    tag,
                });
            }
        })
    }
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage {
    /// The one-byte answer to an SSL or GSSENC request ('S', 'G' or 'N').
    EncryptionResponse(u8),
    Authentication(Authentication),
    ParameterStatus(ParameterStatus),
    BackendKeyData(BackendKeyData),
    ReadyForQuery(ReadyForQuery),
    RowDescription(RowDescription),
    DataRow(DataRow),
    CommandComplete(CommandComplete),
    EmptyQueryResponse,
    ErrorResponse(ErrorResponse),
    NoticeResponse(NoticeResponse),
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    ParameterDescription(ParameterDescription),
    PortalSuspended,
    CopyInResponse(CopyInResponse),
    CopyOutResponse(CopyOutResponse),
    CopyBothResponse(CopyBothResponse),
    CopyData(CopyData),
    CopyDone,
    NotificationResponse(NotificationResponse),
    NegotiateProtocolVersion(NegotiateProtocolVersion),
    FunctionCallResponse(FunctionCallResponse),
}

impl BackendMessage {
    pub fn parse(message: &Message) -> Result<Self, ProtocolError> {
        let body = message.body();
        let tag = message.tag();
        if message.direction() != Direction::Backend {
            return Err(ProtocolError::UnexpectedMessage {
                expected: "a backend message",
                tag,
            });
        }
        fn empty<M: WireMessage>(
            body: Bytes,
            value: BackendMessage,
        ) -> Result<BackendMessage, ProtocolError> {
            M::parse(body)?;
            Ok(value)
        }
        Ok(match tag {
            Tag::EncryptionResponse => Self::EncryptionResponse(message.raw()[0]),
            Tag::Byte(b'R') => Self::Authentication(Authentication::parse(body)?),
            Tag::Byte(b'S') => Self::ParameterStatus(ParameterStatus::parse(body)?),
            Tag::Byte(b'K') => Self::BackendKeyData(BackendKeyData::parse(body)?),
            Tag::Byte(b'Z') => Self::ReadyForQuery(ReadyForQuery::parse(body)?),
            Tag::Byte(b'T') => Self::RowDescription(RowDescription::parse(body)?),
            Tag::Byte(b'D') => Self::DataRow(DataRow::parse(body)?),
            Tag::Byte(b'C') => Self::CommandComplete(CommandComplete::parse(body)?),
            Tag::Byte(b'I') => empty::<EmptyQueryResponse>(body, Self::EmptyQueryResponse)?,
            Tag::Byte(b'E') => Self::ErrorResponse(ErrorResponse::parse(body)?),
            Tag::Byte(b'N') => Self::NoticeResponse(NoticeResponse::parse(body)?),
            Tag::Byte(b'1') => empty::<ParseComplete>(body, Self::ParseComplete)?,
            Tag::Byte(b'2') => empty::<BindComplete>(body, Self::BindComplete)?,
            Tag::Byte(b'3') => empty::<CloseComplete>(body, Self::CloseComplete)?,
            Tag::Byte(b'n') => empty::<NoData>(body, Self::NoData)?,
            Tag::Byte(b't') => Self::ParameterDescription(ParameterDescription::parse(body)?),
            Tag::Byte(b's') => empty::<PortalSuspended>(body, Self::PortalSuspended)?,
            Tag::Byte(b'G') => Self::CopyInResponse(CopyInResponse::parse(body)?),
            Tag::Byte(b'H') => Self::CopyOutResponse(CopyOutResponse::parse(body)?),
            Tag::Byte(b'W') => Self::CopyBothResponse(CopyBothResponse::parse(body)?),
            Tag::Byte(b'd') => Self::CopyData(CopyData::parse(body)?),
            Tag::Byte(b'c') => empty::<CopyDone>(body, Self::CopyDone)?,
            Tag::Byte(b'A') => Self::NotificationResponse(NotificationResponse::parse(body)?),
            Tag::Byte(b'v') => {
                Self::NegotiateProtocolVersion(NegotiateProtocolVersion::parse(body)?)
            }
            Tag::Byte(b'V') => Self::FunctionCallResponse(FunctionCallResponse::parse(body)?),
            tag => {
                return Err(ProtocolError::UnknownMessageType {
                    direction: Direction::Backend,
                    tag,
                });
            }
        })
    }
}

impl FrontendMessage {
    /// Encodes the message whole, as `parse` read it.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Startup(m) => m.encode(),
            Self::SslRequest => SslRequest.encode(),
            Self::GssEncRequest => GssEncRequest.encode(),
            Self::CancelRequest(m) => m.encode(),
            Self::Password(body) => SaslResponse { data: body.clone() }.encode(),
            Self::Query(m) => m.encode(),
            Self::Parse(m) => m.encode(),
            Self::Bind(m) => m.encode(),
            Self::Describe(m) => m.encode(),
            Self::Execute(m) => m.encode(),
            Self::Sync => Sync.encode(),
            Self::Flush => Flush.encode(),
            Self::Close(m) => m.encode(),
            Self::CopyData(m) => m.encode(),
            Self::CopyDone => CopyDone.encode(),
            Self::CopyFail(m) => m.encode(),
            Self::FunctionCall(m) => m.encode(),
            Self::Terminate => Terminate.encode(),
        }
    }
}

impl BackendMessage {
    /// Encodes the message whole, as `parse` read it.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::EncryptionResponse(byte) => Bytes::copy_from_slice(&[*byte]),
            Self::Authentication(m) => m.encode(),
            Self::ParameterStatus(m) => m.encode(),
            Self::BackendKeyData(m) => m.encode(),
            Self::ReadyForQuery(m) => m.encode(),
            Self::RowDescription(m) => m.encode(),
            Self::DataRow(m) => m.encode(),
            Self::CommandComplete(m) => m.encode(),
            Self::EmptyQueryResponse => EmptyQueryResponse.encode(),
            Self::ErrorResponse(m) => m.encode(),
            Self::NoticeResponse(m) => m.encode(),
            Self::ParseComplete => ParseComplete.encode(),
            Self::BindComplete => BindComplete.encode(),
            Self::CloseComplete => CloseComplete.encode(),
            Self::NoData => NoData.encode(),
            Self::ParameterDescription(m) => m.encode(),
            Self::PortalSuspended => PortalSuspended.encode(),
            Self::CopyInResponse(m) => m.encode(),
            Self::CopyOutResponse(m) => m.encode(),
            Self::CopyBothResponse(m) => m.encode(),
            Self::CopyData(m) => m.encode(),
            Self::CopyDone => CopyDone.encode(),
            Self::NotificationResponse(m) => m.encode(),
            Self::NegotiateProtocolVersion(m) => m.encode(),
            Self::FunctionCallResponse(m) => m.encode(),
        }
    }
}
