//! The claim checks that follow a good signature: issuer, audience, times,
//! subject; and the identity the claims then give.

use serde_json::Value;

use super::claims::{claim, string_list};
use super::oidc::{OidcConfig, OidcIdentity, TokenError};

/// The claim checks, after the signature: issuer, audience, times, subject.
pub fn check_claims(
    config: &OidcConfig,
    claims: &Value,
    now: f64,
) -> Result<OidcIdentity, TokenError> {
    if !claims.is_object() {
        return Err(TokenError::Malformed("the claims are not a JSON object"));
    }
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(TokenError::MissingClaim("iss"))?;
    if issuer != config.issuer {
        return Err(TokenError::WrongIssuer {
            expected: config.issuer.clone(),
            found: issuer.to_owned(),
        });
    }
    let audience_ok = match claims.get("aud") {
        None => return Err(TokenError::MissingClaim("aud")),
        Some(Value::String(aud)) => *aud == config.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&config.audience)),
        Some(_) => false,
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience {
            expected: config.audience.clone(),
        });
    }
    let leeway = config.leeway.as_secs_f64();
    let time = |name: &'static str| match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|t| t.is_finite())
            .map(Some)
            .ok_or(TokenError::Malformed("a time claim is not a number")),
    };
    let exp = time("exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if now > exp + leeway {
        return Err(TokenError::Expired {
            expired_at_ms: (exp * 1000.0) as i64,
        });
    }
    if time("nbf")?.is_some_and(|nbf| now + leeway < nbf) {
        return Err(TokenError::NotYetValid);
    }
    // Issued in the future: a broken clock or a forged token.
    if time("iat")?.is_some_and(|iat| now + leeway < iat) {
        return Err(TokenError::NotYetValid);
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::MissingClaim("sub"))?;
    Ok(OidcIdentity {
        subject: subject.to_owned(),
        name: config
            .mapping
            .username(claims)
            .unwrap_or_else(|| subject.to_owned()),
        groups: config.mapping.groups(claims),
        amr: string_list(claims, "amr"),
        acr: claim(claims, "acr")
            .and_then(Value::as_str)
            .map(str::to_owned),
        expires_at_ms: (exp * 1000.0) as i64,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn claims_are_checked_in_order() {
        let config = OidcConfig::new("https://idp.example", "postern");
        let now = 1_000_000.0;
        let good = json!({"iss": "https://idp.example", "aud": ["x", "postern"], "sub": "u1",
            "exp": now + 60.0, "iat": now, "email": "a@x.io", "amr": ["pwd", "mfa"], "acr": "gold"});
        let identity = check_claims(&config, &good, now).unwrap();
        assert_eq!(identity.name, "a@x.io");
        assert_eq!(identity.amr, ["pwd", "mfa"]);
        assert_eq!(identity.acr.as_deref(), Some("gold"));
        assert_eq!(identity.expires_at_ms, 1_000_060_000);
        let with = |patch: Value| {
            let mut claims = good.clone();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            check_claims(&config, &claims, now)
        };
        assert!(matches!(
            with(json!({"iss": "https://evil"})),
            Err(TokenError::WrongIssuer { .. })
        ));
        assert!(matches!(
            with(json!({"iss": null})),
            Err(TokenError::MissingClaim("iss"))
        ));
        assert!(matches!(
            with(json!({"aud": "other"})),
            Err(TokenError::WrongAudience { .. })
        ));
        assert!(matches!(
            with(json!({"aud": 5})),
            Err(TokenError::WrongAudience { .. })
        ));
        assert!(matches!(
            with(json!({"aud": null})),
            Err(TokenError::MissingClaim("aud"))
        ));
        assert!(matches!(
            with(json!({"exp": now - 31.0})),
            Err(TokenError::Expired { .. })
        ));
        assert!(
            with(json!({"exp": now - 29.0})).is_ok(),
            "within the leeway"
        );
        assert!(matches!(
            with(json!({"exp": null})),
            Err(TokenError::MissingClaim("exp"))
        ));
        assert!(matches!(
            with(json!({"exp": "soon"})),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            with(json!({"nbf": now + 31.0})),
            Err(TokenError::NotYetValid)
        ));
        assert!(matches!(
            with(json!({"iat": now + 3600.0})),
            Err(TokenError::NotYetValid)
        ));
        assert!(matches!(
            with(json!({"sub": ""})),
            Err(TokenError::MissingClaim("sub"))
        ));
    }
}
