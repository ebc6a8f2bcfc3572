//! `POSTERN_OIDC_*`: the identity provider whose tokens the gateway accepts.

use std::time::Duration;

use postern_tunnel::env::{ConfigError, Env};

use crate::identity::claims::ClaimMapping;
use crate::identity::oidc::{DEFAULT_JWKS_REFRESH_COOLDOWN, OidcConfig, parse_algorithms};

pub const VARS: &[&str] = &[
    "POSTERN_OIDC_ISSUER",
    "POSTERN_OIDC_AUDIENCE",
    "POSTERN_OIDC_CLIENT_ID",
    "POSTERN_OIDC_SCOPES",
    "POSTERN_OIDC_GROUPS_CLAIM",
    "POSTERN_OIDC_USERNAME_CLAIM",
    "POSTERN_OIDC_ALGORITHMS",
    "POSTERN_OIDC_JWKS_REFRESH_COOLDOWN",
    "POSTERN_OIDC_MFA_ACR",
];

/// `None` when `POSTERN_OIDC_ISSUER` is unset (API tokens only).
pub fn from_env(env: &Env) -> Result<Option<OidcConfig>, ConfigError> {
    let Some(issuer) = env.raw("POSTERN_OIDC_ISSUER").map(|s| s.trim().to_owned()) else {
        if let Some(var) = VARS[1..].iter().find(|var| env.raw(var).is_some()) {
            return Err(ConfigError {
                var: (*var).into(),
                message: "is set but POSTERN_OIDC_ISSUER is not: set the issuer too, or unset it"
                    .into(),
            });
        }
        return Ok(None);
    };
    check_issuer(&issuer).map_err(|message| ConfigError {
        var: "POSTERN_OIDC_ISSUER".into(),
        message,
    })?;
    let audience: String = env.required(
        "POSTERN_OIDC_AUDIENCE",
        "the `aud` the gateway's tokens carry (often the OAuth client id) when POSTERN_OIDC_ISSUER is set",
    )?;
    let mut config = OidcConfig::new(issuer, audience);
    let text = |name: &str| env.raw(name).map(|s| s.trim().to_owned());
    if let Some(client_id) = text("POSTERN_OIDC_CLIENT_ID") {
        config.client_id = client_id;
    }
    if let Some(scopes) = text("POSTERN_OIDC_SCOPES") {
        config.scopes = scopes;
    }
    config.mfa_acr = text("POSTERN_OIDC_MFA_ACR");
    let defaults = ClaimMapping::default();
    config.mapping = ClaimMapping {
        groups_claim: text("POSTERN_OIDC_GROUPS_CLAIM").unwrap_or(defaults.groups_claim),
        username_claim: text("POSTERN_OIDC_USERNAME_CLAIM").unwrap_or(defaults.username_claim),
    };
    if let Some(list) = env.raw("POSTERN_OIDC_ALGORITHMS") {
        config.algorithms = parse_algorithms(list).map_err(|e| ConfigError {
            var: "POSTERN_OIDC_ALGORITHMS".into(),
            message: e.to_string(),
        })?;
    }
    config.jwks_refresh_cooldown = match env.raw("POSTERN_OIDC_JWKS_REFRESH_COOLDOWN") {
        None => DEFAULT_JWKS_REFRESH_COOLDOWN,
        Some(value) => parse_duration(value).ok_or_else(|| ConfigError {
            var: "POSTERN_OIDC_JWKS_REFRESH_COOLDOWN".into(),
            message: format!(
                "invalid value {value:?}: expected a duration such as 10s, 500ms or 1m"
            ),
        })?,
    };
    Ok(Some(config))
}

/// An https URL; plain http only to a loopback address (a local test issuer).
fn check_issuer(issuer: &str) -> Result<(), String> {
    let url = url::Url::parse(issuer).map_err(|e| format!("invalid URL {issuer:?}: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(host)) => host == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "{issuer:?} is plain http: an issuer must be https (http only on loopback, for tests)"
        )),
        _ => Err(format!("{issuer:?} is not an https URL")),
    }
    .and_then(|()| {
        if url.query().is_some() || url.fragment().is_some() {
            Err(format!("{issuer:?} must not have a query or fragment"))
        } else {
            Ok(())
        }
    })
}

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(number)),
        "ms" => Some(Duration::from_millis(number)),
        "m" => number.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::oidc::{Algorithm, DEFAULT_SCOPES};

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn oidc_is_off_unless_an_issuer_is_set() {
        assert_eq!(from_env(&env(&[])).unwrap(), None);
        let err = from_env(&env(&[("POSTERN_OIDC_AUDIENCE", "x")])).unwrap_err();
        assert_eq!(err.var, "POSTERN_OIDC_AUDIENCE");
    }

    #[test]
    fn defaults_and_overrides() {
        let config = from_env(&env(&[
            ("POSTERN_OIDC_ISSUER", "https://idp.example/realms/corp"),
            ("POSTERN_OIDC_AUDIENCE", "postern"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(config.client_id, "postern");
        assert_eq!(config.scopes, DEFAULT_SCOPES);
        assert_eq!(config.mapping, ClaimMapping::default());
        assert_eq!(config.algorithms, [Algorithm::RS256, Algorithm::ES256]);
        assert_eq!(config.jwks_refresh_cooldown, Duration::from_secs(10));
        let config = from_env(&env(&[
            ("POSTERN_OIDC_ISSUER", "http://127.0.0.1:8080"),
            ("POSTERN_OIDC_AUDIENCE", "api://postern"),
            ("POSTERN_OIDC_CLIENT_ID", "postern-cli"),
            ("POSTERN_OIDC_SCOPES", "openid offline_access"),
            ("POSTERN_OIDC_GROUPS_CLAIM", "realm_access.roles"),
            ("POSTERN_OIDC_USERNAME_CLAIM", "preferred_username"),
            ("POSTERN_OIDC_ALGORITHMS", "ES256"),
            ("POSTERN_OIDC_JWKS_REFRESH_COOLDOWN", "250ms"),
            ("POSTERN_OIDC_MFA_ACR", "urn:mfa"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(config.client_id, "postern-cli");
        assert_eq!(config.mapping.groups_claim, "realm_access.roles");
        assert_eq!(config.mapping.username_claim, "preferred_username");
        assert_eq!(config.algorithms, [Algorithm::ES256]);
        assert_eq!(config.jwks_refresh_cooldown, Duration::from_millis(250));
        assert_eq!(config.mfa_acr.as_deref(), Some("urn:mfa"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value, why) in [
            ("POSTERN_OIDC_ISSUER", "not a url", "invalid URL"),
            ("POSTERN_OIDC_ISSUER", "http://idp.example", "plain http"),
            (
                "POSTERN_OIDC_ISSUER",
                "ftp://idp.example",
                "not an https URL",
            ),
            ("POSTERN_OIDC_ISSUER", "https://idp.example/?x=1", "query"),
            ("POSTERN_OIDC_ALGORITHMS", "RS256,HS256", "never allowed"),
            ("POSTERN_OIDC_ALGORITHMS", "none", "never allowed"),
            ("POSTERN_OIDC_ALGORITHMS", "RSA", "unknown"),
            ("POSTERN_OIDC_JWKS_REFRESH_COOLDOWN", "soon", "duration"),
        ] {
            let mut pairs = vec![
                ("POSTERN_OIDC_ISSUER", "https://idp.example"),
                ("POSTERN_OIDC_AUDIENCE", "postern"),
            ];
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, value));
            let err = from_env(&env(&pairs)).unwrap_err();
            assert_eq!(err.var, var, "{err}");
            assert!(err.message.contains(why), "{err}");
        }
        let err = from_env(&env(&[("POSTERN_OIDC_ISSUER", "https://idp.example")])).unwrap_err();
        assert_eq!(err.var, "POSTERN_OIDC_AUDIENCE");
    }

    #[test]
    fn the_variables_are_known_to_the_typo_check() {
        for var in VARS {
            assert!(crate::config::VARS.contains(var), "{var}");
        }
    }

    #[test]
    fn durations() {
        for (text, expected) in [
            ("10s", Some(Duration::from_secs(10))),
            ("0", Some(Duration::ZERO)),
            ("500ms", Some(Duration::from_millis(500))),
            ("2m", Some(Duration::from_secs(120))),
            ("18446744073709551615m", None),
            ("-1s", None),
            ("1h", None),
            ("", None),
        ] {
            assert_eq!(parse_duration(text), expected, "{text}");
        }
    }
}
