//! Who a request comes from: OIDC access tokens (JWTs) checked against the
//! issuer's published keys.

pub mod auth_config;
pub mod checks;
pub mod claims;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod oidc;
mod refusal;
