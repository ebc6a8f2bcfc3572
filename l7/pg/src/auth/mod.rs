//! Pure helpers for the agent's own login to the database: SCRAM-SHA-256
//! (RFC 5802 / RFC 7677, no channel binding), md5 and cleartext, and a small
//! state machine ([`Login`]) that answers the server's authentication
//! requests with the right messages.

mod login;
mod md5;
mod scram;

pub use login::{Login, LoginStep};
pub use md5::md5_password;
pub use scram::{MAX_ITERATIONS, ScramClient, ScramFinal};

/// Why a login could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the server asked for {0} authentication, which is not supported")]
    Unsupported(&'static str),
    #[error("the server offers no supported SASL mechanism (offered: {0})")]
    NoSupportedMechanism(String),
    #[error("malformed SCRAM message from the server: {0}")]
    MalformedServerMessage(&'static str),
    #[error("the server's SCRAM nonce does not extend ours")]
    NonceMismatch,
    #[error("SCRAM iteration count {0} is outside 1..={MAX_ITERATIONS}")]
    IterationCount(u64),
    #[error("the server reported a SCRAM error: {0}")]
    ServerError(String),
    #[error("the server's SCRAM signature is wrong: it does not know the password")]
    ServerSignatureMismatch,
    #[error("the server sent {0} out of order")]
    OutOfOrder(&'static str),
}

/// The PasswordMessage body for cleartext authentication.
pub fn cleartext_password(password: &str) -> crate::messages::PasswordMessage {
    crate::messages::PasswordMessage {
        password: bytes::Bytes::copy_from_slice(password.as_bytes()),
    }
}
