//! The keys of a JWKS document and which one checks a given token.

use std::time::Instant;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

use super::jwks::JwksError;

/// One signing key from the JWKS, with the parameters that say what it is for.
#[derive(Clone)]
pub struct PublishedKey {
    pub kid: Option<String>,
    pub kty: String,
    pub alg: Option<String>,
    pub use_: Option<String>,
    pub crv: Option<String>,
    key: DecodingKey,
}

impl std::fmt::Debug for PublishedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedKey")
            .field("kid", &self.kid)
            .field("kty", &self.kty)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl PublishedKey {
    /// Whether this key may check a signature made with `alg`: its type (and
    /// curve) must be that algorithm's, its `alg`, if given, that algorithm,
    /// and its `use`, if given, `sig`. Anything else is key confusion.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let (kty, crv) = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => ("RSA", None),
            Algorithm::ES256 => ("EC", Some("P-256")),
            Algorithm::ES384 => ("EC", Some("P-384")),
            Algorithm::EdDSA => ("OKP", Some("Ed25519")),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return false,
        };
        self.kty == kty
            && (crv.is_none() || self.crv.as_deref() == crv)
            && self.alg.as_deref().is_none_or(|a| a == format!("{alg:?}"))
            && self.use_.as_deref().is_none_or(|u| u == "sig")
    }
}

/// The usable keys of a JWKS document; keys of other types (symmetric,
/// encryption-only, malformed) are skipped rather than failing the set.
pub fn parse_jwks(bytes: &[u8], url: &str) -> Result<Vec<PublishedKey>, JwksError> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let document: Document = serde_json::from_slice(bytes).map_err(|source| JwksError::Parse {
        url: url.to_owned(),
        what: "JWKS",
        source,
    })?;
    let text = |key: &Value, name: &str| key.get(name).and_then(Value::as_str).map(str::to_owned);
    let keys: Vec<PublishedKey> = document
        .keys
        .iter()
        .filter_map(|key| {
            let kty = text(key, "kty")?;
            let decoding = match kty.as_str() {
                "RSA" => DecodingKey::from_rsa_components(&text(key, "n")?, &text(key, "e")?),
                "EC" => DecodingKey::from_ec_components(&text(key, "x")?, &text(key, "y")?),
                "OKP" => DecodingKey::from_ed_components(&text(key, "x")?),
                _ => return None,
            }
            .ok()?;
            Some(PublishedKey {
                kid: text(key, "kid"),
                kty,
                alg: text(key, "alg"),
                use_: text(key, "use"),
                crv: text(key, "crv"),
                key: decoding,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(keys)
}

/// A fetched JWKS.
#[derive(Debug)]
pub(crate) struct KeySet {
    pub keys: Vec<PublishedKey>,
    pub fetched: Instant,
}

pub(crate) enum Lookup {
    Found(DecodingKey),
    /// The key id is there, but not for this algorithm.
    Mismatch,
    Missing,
}

impl KeySet {
    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let candidates: Vec<&PublishedKey> = match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => self.keys.iter().collect(),
        };
        let fitting: Vec<&PublishedKey> =
            candidates.iter().copied().filter(|k| k.fits(alg)).collect();
        match (fitting.as_slice(), kid) {
            ([key], _) => Lookup::Found(key.key.clone()),
            // With a kid, duplicates fitting the same algorithm are the same key.
            ([key, ..], Some(_)) => Lookup::Found(key.key.clone()),
            // Without a kid, which of several keys is meant is unknown.
            ([_, ..], None) => Lookup::Missing,
            ([], _) if candidates.is_empty() => Lookup::Missing,
            ([], _) => Lookup::Mismatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::identity::jwks::discovery_url;

    const RSA_JWK: &str = include_str!("../../../testkit/fixtures/oidc/rsa-1.jwk.json");

    fn rsa(extra: &str) -> String {
        let jwk: Value = serde_json::from_str(RSA_JWK).unwrap();
        format!(
            r#"{{"kty":"RSA","n":"{}","e":"{}"{extra}}}"#,
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap()
        )
    }

    #[test]
    fn keys_fit_only_their_algorithm() {
        let doc = format!(
            r#"{{"keys":[{},{},{},{{"kty":"oct","k":"c2VjcmV0","kid":"h"}},{{"kty":"RSA","kid":"broken"}},{{"kty":"EC","kid":"e","crv":"P-256","x":"!","y":"!"}}]}}"#,
            rsa(r#","kid":"r1","use":"sig","alg":"RS256""#),
            rsa(r#","kid":"enc","use":"enc""#),
            rsa(r#","kid":"ps","alg":"PS256""#),
        );
        let keys = parse_jwks(doc.as_bytes(), "https://idp/jwks").unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        assert_eq!(
            kids,
            ["r1", "enc", "ps"],
            "the symmetric and malformed keys are skipped"
        );
        let set = KeySet {
            keys,
            fetched: Instant::now(),
        };
        assert!(matches!(
            set.lookup(Some("r1"), Algorithm::RS256),
            Lookup::Found(_)
        ));
        for (kid, alg) in [
            ("r1", Algorithm::ES256),
            ("r1", Algorithm::RS384),
            ("r1", Algorithm::HS256),
            ("enc", Algorithm::RS256),
            ("ps", Algorithm::RS256),
        ] {
            assert!(
                matches!(set.lookup(Some(kid), alg), Lookup::Mismatch),
                "{kid} {alg:?}"
            );
        }
        assert!(matches!(
            set.lookup(Some("nope"), Algorithm::RS256),
            Lookup::Missing
        ));
        // Without a kid, one fitting key is used; two would be ambiguous.
        assert!(matches!(
            set.lookup(None, Algorithm::PS256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(None, Algorithm::RS256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(None, Algorithm::RS512),
            Lookup::Mismatch
        ));
    }

    #[test]
    fn documents_without_usable_keys_are_refused() {
        assert!(matches!(
            parse_jwks(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#, "u"),
            Err(JwksError::NoUsableKeys)
        ));
        assert!(matches!(
            parse_jwks(b"[]", "u"),
            Err(JwksError::Parse { .. })
        ));
        assert_eq!(
            discovery_url("https://idp.example/realms/x/"),
            "https://idp.example/realms/x/.well-known/openid-configuration"
        );
    }
}
