//! Bearer tokens: generation, hashing for storage, and the gRPC metadata keys.

use rand::RngCore;
use sha2::{Digest, Sha256};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use crate::Secret;

/// gRPC metadata naming the connection a session is for (`Sessions.Open`).
pub const CONNECTION_HEADER: &str = "x-postern-connection";
/// gRPC metadata naming the session an agent attaches to (`AgentTunnel.Attach`).
pub const SESSION_HEADER: &str = "x-postern-session-id";
/// Set on a refusal that is safe and likely to succeed when retried (the
/// replica is draining, a peer or the route store hiccupped): nothing reached
/// the target, so clients retry, on a fresh connection, before giving up.
pub const RETRY_HEADER: &str = "x-postern-retry";

/// Whether a failed call is worth retrying on a fresh connection: the server
/// said so, or the request never got an answer (the connection failed).
pub fn is_retryable(status: &tonic::Status) -> bool {
    // A status with a source was made on this side from a transport failure
    // (refused, reset, GOAWAY): the gateway never answered the call.
    status.metadata().contains_key(RETRY_HEADER) || std::error::Error::source(status).is_some()
}

/// What kind of principal a token belongs to; part of the token's visible prefix
/// so a token pasted in the wrong place is recognised at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Agent,
    User,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Agent => "pst_agent_",
            TokenKind::User => "pst_user_",
        }
    }
}

/// A fresh token with 256 bits of randomness.
pub fn generate_token(kind: TokenKind) -> Secret {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    Secret::new(format!("{}{}", kind.prefix(), hex::encode(raw)))
}

/// The form a token is stored in. Tokens carry 256 random bits, so a plain
/// SHA-256 is enough: there is nothing to brute-force, unlike a password.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BearerError {
    #[error("missing `authorization: Bearer <token>` metadata")]
    Missing,
    #[error("the `authorization` metadata is not of the form `Bearer <token>`")]
    Malformed,
}

/// Reads `authorization: Bearer <token>` from request metadata.
pub fn bearer_token(metadata: &MetadataMap) -> Result<Secret, BearerError> {
    let value = metadata.get("authorization").ok_or(BearerError::Missing)?;
    parse_bearer(value.to_str().map_err(|_| BearerError::Malformed)?)
}

/// Parses the value of an `authorization` header (gRPC metadata or HTTP).
pub fn parse_bearer(value: &str) -> Result<Secret, BearerError> {
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(BearerError::Malformed)?
        .trim();
    if token.is_empty() {
        return Err(BearerError::Malformed);
    }
    Ok(Secret::new(token))
}

/// Puts `authorization: Bearer <token>` into request metadata.
pub fn set_bearer(metadata: &mut MetadataMap, token: &Secret) -> Result<(), BearerError> {
    let value = AsciiMetadataValue::try_from(format!("Bearer {}", token.expose()))
        .map_err(|_| BearerError::Malformed)?;
    metadata.insert("authorization", value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_distinct_and_prefixed() {
        let a = generate_token(TokenKind::Agent);
        let b = generate_token(TokenKind::Agent);
        assert_ne!(a, b);
        assert!(a.expose().starts_with("pst_agent_"));
        assert_eq!(a.expose().len(), "pst_agent_".len() + 64);
        assert!(
            generate_token(TokenKind::User)
                .expose()
                .starts_with("pst_user_")
        );
    }

    #[test]
    fn hash_is_stable_hex_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_round_trip_and_errors() {
        let mut metadata = MetadataMap::new();
        assert_eq!(bearer_token(&metadata), Err(BearerError::Missing));
        metadata.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&metadata), Err(BearerError::Malformed));
        metadata.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&metadata), Err(BearerError::Malformed));
        let token = Secret::new("pst_user_1");
        set_bearer(&mut metadata, &token).unwrap();
        assert_eq!(bearer_token(&metadata).unwrap(), token);
    }
}
