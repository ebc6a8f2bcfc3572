//! The parts of a compact JWS read before its signature is checked: its shape
//! and its protected header. Everything here sees untrusted input and is
//! bounded; [`fuzz_token`] is the fuzz target's entry point.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::oidc::TokenError;

/// Longer tokens are refused before any decoding (IdPs' tokens with many
/// groups stay well below this).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Whether `token` has the shape of a compact JWS (three base64url segments,
/// the third, the signature, possibly empty as in `alg: none`): tells an OIDC
/// token from a Postern API key (`pst_user_…`, no dots) without decoding it.
pub fn looks_like_jwt(token: &str) -> bool {
    if token.len() > MAX_TOKEN_LEN {
        return false;
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !header.is_empty()
        && !payload.is_empty()
        && base64url(header)
        && base64url(payload)
        && base64url(signature)
}

/// The protected header fields the verifier acts on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenHeader {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    /// Critical extensions: none are understood, so any makes the token invalid
    /// (RFC 7515 §4.1.11).
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// Checks the token's shape and decodes its header (nothing is trusted yet).
pub fn parse_header(token: &str) -> Result<TokenHeader, TokenError> {
    if !looks_like_jwt(token) {
        return Err(TokenError::Malformed(
            "not a JWT (expected three base64url segments)",
        ));
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| TokenError::Malformed("the header is not base64url"))?;
    let not_a_header = || TokenError::Malformed("the header is not a JSON object with `alg`");
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| not_a_header())?;
    if !value.is_object() {
        return Err(not_a_header());
    }
    let header: TokenHeader = serde_json::from_value(value).map_err(|_| not_a_header())?;
    if header.crit.is_some() {
        return Err(TokenError::Malformed(
            "the header names critical extensions, which are not supported",
        ));
    }
    Ok(header)
}

/// Fuzz entry point: arbitrary bytes as a token and as a claims document.
/// Must never panic; a header that parses must come from a token that looks
/// like a JWT.
pub fn fuzz_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let shaped = looks_like_jwt(&text);
    if parse_header(&text).is_ok() {
        assert!(
            shaped,
            "parsed the header of a token that is not JWT-shaped"
        );
    }
    if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) {
        let mapping = super::claims::ClaimMapping::default();
        let _ = mapping.groups(&claims);
        let _ = mapping.username(&claims);
        let _ = super::claims::string_list(&claims, "amr");
    }
    let _ = crate::config::oidc::parse_duration(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn tells_jwts_from_api_keys() {
        let key = postern_tunnel::auth::generate_token(postern_tunnel::auth::TokenKind::User);
        assert!(!looks_like_jwt(key.expose()));
        let jwt = format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64("{}"));
        assert!(looks_like_jwt(&jwt));
        assert!(looks_like_jwt(&format!("{}.{}.", b64("{}"), b64("{}"))));
        for bad in [
            "", "a.b", "a.b.c.d", ".b.c", "a..c", "a+b.c.d", "a.b.c=", "a b.c.d",
        ] {
            assert!(!looks_like_jwt(bad), "{bad}");
        }
        assert!(!looks_like_jwt(&format!(
            "{}.b.c",
            "a".repeat(MAX_TOKEN_LEN)
        )));
    }

    #[test]
    fn headers_are_parsed_and_checked() {
        let token = |header: &str| format!("{}.{}.sig", b64(header), b64("{}"));
        let header = parse_header(&token(r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#)).unwrap();
        assert_eq!(
            (header.alg.as_str(), header.kid.as_deref()),
            ("ES256", Some("k1"))
        );
        assert_eq!(
            parse_header(&token(r#"{"alg":"none"}"#)).unwrap().alg,
            "none"
        );
        for bad in [
            r#"{"kid":"k1"}"#,
            r#"["alg"]"#,
            r#"{"alg":"RS256","crit":["exp"]}"#,
            r#"{"alg":7}"#,
            "not json",
        ] {
            assert!(
                matches!(parse_header(&token(bad)), Err(TokenError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_header("pst_user_abc"),
            Err(TokenError::Malformed(_))
        ));
    }

    /// The fuzz target's corpus, run as a unit test so it cannot rot.
    #[test]
    fn fuzz_corpus() {
        let seeds: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"a.b.c".to_vec(),
            format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}")).into_bytes(),
            format!("{}.{}.x", b64(r#"{"alg":"RS256","crit":1}"#), b64("{}")).into_bytes(),
            br#"{"groups":"admins","email":"a@b","sub":"1","amr":["mfa"]}"#.to_vec(),
            br#"{"groups":[1,"x",null,{"a":1}],"email_verified":false}"#.to_vec(),
            b"10s".to_vec(),
            b"18446744073709551615m".to_vec(),
            vec![0xff, b'.', 0xfe, b'.', 0x00],
        ];
        for seed in seeds {
            fuzz_token(&seed);
        }
    }
}
