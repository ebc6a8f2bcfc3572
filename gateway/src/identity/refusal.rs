//! What a person is told when their token is refused: what happened and
//! what to do about it, without internals.

use super::oidc::TokenError;
use crate::metrics::ErrorKind;
use crate::refusal::Refusal;

const LOGIN_AGAIN: &str = "run `postern login <gateway-url>` again";

impl From<TokenError> for Refusal {
    fn from(err: TokenError) -> Self {
        let unauthenticated = |message: String| Refusal::new(ErrorKind::Unauthenticated, message);
        match err {
            TokenError::Expired { .. } => {
                unauthenticated(format!("your login expired: {LOGIN_AGAIN}"))
            }
            TokenError::NotYetValid => unauthenticated(
                "your token is not valid yet: check this computer's clock, then retry or run `postern login <gateway-url>` again".into(),
            ),
            TokenError::WrongIssuer { expected, found } => unauthenticated(format!(
                "your token was issued by {found}, but this gateway trusts {expected}: {LOGIN_AGAIN}"
            )),
            TokenError::WrongAudience { expected } => unauthenticated(format!(
                "your token is meant for another service (its audience is not {expected:?}): {LOGIN_AGAIN}"
            )),
            TokenError::MissingClaim(name) => unauthenticated(format!(
                "your token has no {name:?} claim, which this gateway needs: ask your identity provider's administrator, then {LOGIN_AGAIN}"
            )),
            TokenError::Malformed(_) => unauthenticated(format!(
                "the token is neither a valid login nor an API token: {LOGIN_AGAIN}"
            )),
            TokenError::AlgorithmNotAllowed(_)
            | TokenError::UnknownKeyId(_)
            | TokenError::KeyMismatch { .. }
            | TokenError::BadSignature => {
                tracing::warn!(error = %err, "token refused");
                unauthenticated(format!(
                    "the token's signature cannot be verified with the identity provider's keys: {LOGIN_AGAIN}"
                ))
            }
            TokenError::Unavailable(e) => {
                tracing::error!(error = %e, "cannot verify tokens: identity provider unavailable");
                Refusal::new(
                    ErrorKind::IdentityUnavailable,
                    "the gateway cannot reach the identity provider to check your login; try again shortly",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::jwks::JwksError;

    #[test]
    fn refusals_say_what_to_do() {
        let refusal = Refusal::from(TokenError::Expired { expired_at_ms: 0 });
        assert_eq!(refusal.kind, ErrorKind::Unauthenticated);
        assert!(
            refusal.message.contains("postern login"),
            "{}",
            refusal.message
        );
        let refusal = Refusal::from(TokenError::Unavailable(JwksError::NoUsableKeys));
        assert_eq!(refusal.kind, ErrorKind::IdentityUnavailable);
        assert_eq!(refusal.http_status().as_u16(), 503);
    }
}
