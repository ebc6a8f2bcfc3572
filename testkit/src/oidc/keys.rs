//! The stand-in's signing keys: RSA from committed fixtures, P-256 made at start.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// (private key PEM, public key PEM, JWK with n and e) of the fixture keys.
pub(crate) const RSA_FIXTURES: [(&str, &str, &str); 3] = [
    (
        include_str!("../../fixtures/oidc/rsa-1.pem"),
        include_str!("../../fixtures/oidc/rsa-1.pub.pem"),
        include_str!("../../fixtures/oidc/rsa-1.jwk.json"),
    ),
    (
        include_str!("../../fixtures/oidc/rsa-2.pem"),
        include_str!("../../fixtures/oidc/rsa-2.pub.pem"),
        include_str!("../../fixtures/oidc/rsa-2.jwk.json"),
    ),
    (
        include_str!("../../fixtures/oidc/rsa-3.pem"),
        include_str!("../../fixtures/oidc/rsa-3.pub.pem"),
        include_str!("../../fixtures/oidc/rsa-3.jwk.json"),
    ),
];

/// The fixture never published: signs tokens that must fail verification.
pub(crate) const UNPUBLISHED_RSA: usize = 2;

#[derive(Clone)]
pub(crate) struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    /// The public key as published in the JWKS.
    pub jwk: Value,
    /// RSA only: the public key PEM (what an HS256 key-confusion attack uses).
    pub public_pem: Option<&'static str>,
}

impl SigningKey {
    pub fn rsa(fixture: usize, kid: String) -> Self {
        let (private, public, jwk) = RSA_FIXTURES[fixture];
        let components: Value = serde_json::from_str(jwk).expect("fixture JWK");
        Self {
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": components["n"], "e": components["e"],
            }),
            kid,
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(private.as_bytes()).expect("fixture RSA key"),
            public_pem: Some(public),
        }
    }

    pub fn p256(kid: String) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        Self {
            jwk: json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
            kid,
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            public_pem: None,
        }
    }
}
