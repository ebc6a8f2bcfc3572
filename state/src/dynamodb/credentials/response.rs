//! A container credentials response, and when to fetch the next one.

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};

use super::ContainerCredentialsError;

/// Fetch again this long before the credentials expire (ECS hands out new
/// ones well before that); short-lived ones at half their life instead, so
/// they are not fetched again on every request.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

pub(super) struct Cached {
    pub(super) credentials: Credentials,
    pub(super) expires_at: SystemTime,
    pub(super) refresh_at: SystemTime,
}

pub(super) fn parse(
    endpoint: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<Cached, ContainerCredentialsError> {
    // No Debug: the fields are secrets. serde_json's messages name the
    // field and position, never a string's content.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response {
        access_key_id: String,
        secret_access_key: String,
        token: String,
        expiration: String,
    }
    let malformed = |reason: String| ContainerCredentialsError::Malformed {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let response: Response = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    let expires_at = DateTime::from_str(&response.expiration, DateTimeFormat::DateTime)
        .ok()
        .and_then(|time| SystemTime::try_from(time).ok())
        .ok_or_else(|| {
            malformed(format!(
                "Expiration {:?} is not an RFC 3339 time",
                response.expiration
            ))
        })?;
    let Ok(life) = expires_at.duration_since(now) else {
        return Err(ContainerCredentialsError::Expired {
            endpoint: endpoint.to_owned(),
            expiration: response.expiration,
        });
    };
    let refresh_in = life.saturating_sub(REFRESH_BEFORE_EXPIRY).max(life / 2);
    Ok(Cached {
        credentials: Credentials::new(
            response.access_key_id,
            response.secret_access_key,
            Some(response.token),
            Some(expires_at),
            "postern-container",
        ),
        expires_at,
        refresh_at: now + refresh_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: &str = "the endpoint";

    #[test]
    fn responses_parse_and_refresh_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let body = |expiration: &str| {
            format!(
                r#"{{"AccessKeyId":"ASIA1","SecretAccessKey":"s3cr3t","Token":"tok","Expiration":"{expiration}","RoleArn":"arn:x"}}"#
            )
        };
        // Six hours of life: refreshed five minutes before the end.
        let cached = parse(ENDPOINT, body("2023-11-15T04:13:20Z").as_bytes(), now).unwrap();
        assert_eq!(cached.credentials.access_key_id(), "ASIA1");
        assert_eq!(cached.credentials.session_token(), Some("tok"));
        assert_eq!(
            cached.expires_at.duration_since(now).unwrap(),
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(
            cached.refresh_at.duration_since(now).unwrap(),
            Duration::from_secs(6 * 3600 - 300)
        );
        // Two minutes of life: refreshed halfway.
        let cached = parse(ENDPOINT, body("2023-11-14T22:15:20Z").as_bytes(), now).unwrap();
        assert_eq!(
            cached.refresh_at.duration_since(now).unwrap(),
            Duration::from_secs(60)
        );

        for (bad, why) in [
            (
                body("2023-11-14T22:13:19Z"),
                "expired at 2023-11-14T22:13:19Z",
            ),
            (body("tomorrow"), "\"tomorrow\" is not an RFC 3339 time"),
            (r#"{"AccessKeyId":"ASIA1"}"#.to_owned(), "missing field"),
            ("<html>".to_owned(), "malformed"),
        ] {
            let err = parse(ENDPOINT, bad.as_bytes(), now)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(why), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }
}
