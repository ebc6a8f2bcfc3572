//! OIDC access tokens: a JWT signed by the configured issuer with one of the
//! allowed algorithms, for this gateway's audience, valid now. The checks run
//! in a fixed order: shape and header, algorithm (pinned by configuration,
//! never `none` or HMAC), the issuer's key for the token's `kid` and
//! algorithm, the signature, and only then the claims.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::checks::check_claims;
use super::claims::ClaimMapping;
use super::jwks::{JwksCache, JwksError};
/// Tells an OIDC token from a Postern API key (see [`super::jwt`]).
pub use super::jwt::looks_like_jwt;
use super::jwt::parse_header;

pub const DEFAULT_SCOPES: &str = "openid profile email offline_access";
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256];
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
pub const DEFAULT_JWKS_REFRESH_COOLDOWN: Duration = Duration::from_secs(10);

/// How the gateway trusts one OIDC issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcConfig {
    /// Exactly as the issuer writes it in its tokens' `iss` and its discovery document.
    pub issuer: String,
    /// What tokens' `aud` must contain.
    pub audience: String,
    /// The OAuth client the CLI logs in as (advertised, not checked here).
    pub client_id: String,
    /// The scopes the CLI asks for (advertised).
    pub scopes: String,
    /// The `acr_values` the CLI asks for with `postern login --mfa` (advertised).
    pub mfa_acr: Option<String>,
    pub mapping: ClaimMapping,
    /// Never `none` or HS*: [`parse_algorithms`] refuses them.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// The least time between two fetches of the JWKS (an unknown `kid` fetches it).
    pub jwks_refresh_cooldown: Duration,
}

impl OidcConfig {
    /// The defaults for everything but the issuer and the audience.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        let audience = audience.into();
        Self {
            issuer: issuer.into(),
            client_id: audience.clone(),
            audience,
            scopes: DEFAULT_SCOPES.into(),
            mfa_acr: None,
            mapping: ClaimMapping::default(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: DEFAULT_LEEWAY,
            jwks_refresh_cooldown: DEFAULT_JWKS_REFRESH_COOLDOWN,
        }
    }
}

/// A comma- or space-separated list of JWS algorithm names. `none` and the
/// HMAC algorithms are refused: a gateway verifies with the issuer's public
/// keys only, so HS* could only ever be key confusion.
pub fn parse_algorithms(list: &str) -> Result<Vec<Algorithm>, AlgorithmListError> {
    let mut algorithms = Vec::new();
    for name in list
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if name.eq_ignore_ascii_case("none") || name.to_ascii_uppercase().starts_with("HS") {
            return Err(AlgorithmListError::NeverAllowed(name.to_owned()));
        }
        let algorithm =
            Algorithm::from_str(name).map_err(|_| AlgorithmListError::Unknown(name.to_owned()))?;
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    if algorithms.is_empty() {
        return Err(AlgorithmListError::Empty);
    }
    Ok(algorithms)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmListError {
    #[error(
        "{0} is never allowed: tokens must be signed with the issuer's private key (e.g. RS256, ES256)"
    )]
    NeverAllowed(String),
    #[error(
        "unknown algorithm {0:?} (expected RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA)"
    )]
    Unknown(String),
    #[error("no algorithm given")]
    Empty,
}

/// Who a verified token says the person is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    /// `sub`: stable at the issuer.
    pub subject: String,
    /// The username claim (see [`ClaimMapping::username`]).
    pub name: String,
    /// The groups claim, sorted, without duplicates.
    pub groups: Vec<String>,
    /// Authentication methods (`amr`), e.g. `["pwd", "mfa", "otp"]`.
    pub amr: Vec<String>,
    /// Authentication context class (`acr`).
    pub acr: Option<String>,
    /// `exp`, in milliseconds since the epoch.
    pub expires_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("the issuer publishes no key with id {0:?}")]
    UnknownKeyId(Option<String>),
    #[error("the issuer's key {kid:?} is not a key for {alg:?}")]
    KeyMismatch { kid: Option<String>, alg: Algorithm },
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired at {expired_at_ms} ms")]
    Expired { expired_at_ms: i64 },
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token issued by {found:?}, expected {expected:?}")]
    WrongIssuer { expected: String, found: String },
    #[error("token audience is not {expected:?}")]
    WrongAudience { expected: String },
    #[error("token has no {0:?} claim")]
    MissingClaim(&'static str),
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(#[from] JwksError),
}

/// Verifies tokens from one issuer; cheap to share (`Arc`), keys cached inside.
#[derive(Debug)]
pub struct OidcVerifier {
    config: OidcConfig,
    keys: JwksCache,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTPS client for the OIDC issuer: {0}")]
pub struct VerifierSetupError(#[from] pub JwksError);

impl OidcVerifier {
    pub fn new(config: OidcConfig) -> Result<Self, VerifierSetupError> {
        let keys = JwksCache::new(config.issuer.clone(), config.jwks_refresh_cooldown)?;
        Ok(Self { config, keys })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    pub async fn verify(&self, token: &str) -> Result<OidcIdentity, TokenError> {
        let header = parse_header(token)?;
        let alg = Algorithm::from_str(&header.alg)
            .ok()
            .filter(|alg| self.config.algorithms.contains(alg))
            .ok_or_else(|| TokenError::AlgorithmNotAllowed(header.alg.clone()))?;
        let key = self.keys.key_for(header.kid.as_deref(), alg).await?;
        let mut validation = jsonwebtoken::Validation::new(alg);
        // The claims are checked below, with this module's own errors.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::KeyMismatch {
                    kid: header.kid.clone(),
                    alg,
                },
                _ => TokenError::Malformed("the payload is not base64url JSON"),
            })?
            .claims;
        check_claims(&self.config, &claims, now_secs())
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_lists() {
        assert_eq!(
            parse_algorithms("RS256, ES256").unwrap(),
            DEFAULT_ALGORITHMS
        );
        assert_eq!(parse_algorithms("PS256 PS256").unwrap(), [Algorithm::PS256]);
        for (list, err) in [
            (
                "RS256,none",
                AlgorithmListError::NeverAllowed("none".into()),
            ),
            ("HS256", AlgorithmListError::NeverAllowed("HS256".into())),
            ("hs512", AlgorithmListError::NeverAllowed("hs512".into())),
            ("RS257", AlgorithmListError::Unknown("RS257".into())),
            (" , ", AlgorithmListError::Empty),
        ] {
            assert_eq!(parse_algorithms(list).unwrap_err(), err, "{list}");
        }
    }
}
