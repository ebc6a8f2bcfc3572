//! Where the DynamoDB client's AWS credentials come from, without aws-config
//! (it would pull aws-sdk-sts, a profile parser and a newer SDK stack for the
//! two sources a gateway needs). The first source that is set wins:
//!
//! 1. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`):
//!    static keys.
//! 2. `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (an ECS task role) or
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` (EKS Pod Identity, local agents),
//!    with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN`: [`ContainerCredentials`], fetched,
//!    cached and refreshed before they expire.
//!
//! Web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`, IRSA) and EC2 instance metadata
//! are not sources: both are refused with an error that says what to use.
//!
//! The environment is read through an [`EnvLookup`], so tests pass a map and
//! never touch the process environment.

mod container;
mod endpoint;
mod response;

use std::time::Duration;

use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};

pub use container::{ContainerCredentials, ContainerCredentialsError};

use crate::StoreError;

/// Reads one environment variable.
pub type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + 'a);

/// The process environment, for [`EnvLookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A variable that is set but wrong, or no source set at all; `var` names the
/// variable to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var} {reason}")]
pub struct CredentialsConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl From<CredentialsConfigError> for StoreError {
    fn from(err: CredentialsConfigError) -> Self {
        StoreError::Invalid {
            field: err.var,
            reason: err.reason,
        }
    }
}

/// An error and its causes, each once: `a: b: c` (the SDK's
/// `DisplayErrorContext` adds the whole `Debug` form on top).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
const WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";

/// The chain described in the [module documentation](self). Container
/// credentials are fetched lazily (on the first request) and each fetch is
/// bounded by `fetch_timeout`.
pub fn credentials_from_env(
    env: EnvLookup<'_>,
    fetch_timeout: Duration,
) -> Result<SharedCredentialsProvider, CredentialsConfigError> {
    let var = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    if let Some(key) = var(ACCESS_KEY_ID) {
        let secret = var(SECRET_ACCESS_KEY).ok_or_else(|| CredentialsConfigError {
            var: SECRET_ACCESS_KEY,
            reason: format!("must be set with {ACCESS_KEY_ID}"),
        })?;
        return Ok(SharedCredentialsProvider::new(Credentials::new(
            key,
            secret,
            var(SESSION_TOKEN),
            None,
            "postern-environment",
        )));
    }
    if let Some(container) = ContainerCredentials::from_env(&var, fetch_timeout)? {
        return Ok(SharedCredentialsProvider::new(container));
    }
    let reason = if var(WEB_IDENTITY_TOKEN_FILE).is_some() {
        format!(
            "is not set, and {WEB_IDENTITY_TOKEN_FILE} (web identity, IRSA) is not supported: \
             on EKS use Pod Identity, which sets {}, or set {ACCESS_KEY_ID} and \
             {SECRET_ACCESS_KEY}",
            endpoint::FULL_URI
        )
    } else {
        format!(
            "is not set: the DynamoDB policy store needs AWS credentials: {ACCESS_KEY_ID} and \
             {SECRET_ACCESS_KEY}, or a container credentials endpoint ({} on ECS with a task \
             role, {} with EKS Pod Identity)",
            endpoint::RELATIVE_URI,
            endpoint::FULL_URI
        )
    };
    Err(CredentialsConfigError {
        var: ACCESS_KEY_ID,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::config::ProvideCredentials;

    use super::*;

    fn chain(pairs: &[(&str, &str)]) -> Result<SharedCredentialsProvider, CredentialsConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        credentials_from_env(&|name| vars.get(name).cloned(), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn static_keys_come_first_and_need_their_secret() {
        let provider = chain(&[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret"),
            ("AWS_SESSION_TOKEN", "session"),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/x",
            ),
        ])
        .unwrap();
        let credentials = provider.provide_credentials().await.unwrap();
        assert_eq!(credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(credentials.session_token(), Some("session"));

        let err = chain(&[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")]).unwrap_err();
        assert_eq!(err.var, "AWS_SECRET_ACCESS_KEY");
    }

    #[test]
    fn nothing_set_says_what_to_set_and_empty_counts_as_unset() {
        let err = chain(&[("AWS_ACCESS_KEY_ID", " ")]).unwrap_err();
        assert_eq!(err.var, "AWS_ACCESS_KEY_ID");
        assert!(
            err.reason
                .contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            "{err}"
        );
        let err = chain(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")]).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        let store: StoreError = err.into();
        assert!(
            matches!(
                store,
                StoreError::Invalid {
                    field: "AWS_ACCESS_KEY_ID",
                    ..
                }
            ),
            "{store:?}"
        );
    }
}
