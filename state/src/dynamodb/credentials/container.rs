//! Credentials from a container credentials endpoint: the ECS agent
//! (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, an IAM task role), the EKS Pod
//! Identity agent or any local agent (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
//!
//! A GET returns `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`.
//! The credentials are cached and fetched again a few minutes before they
//! expire; the SDK asks for them on every request, so a refresh needs nothing
//! from the caller. The request goes through the SDK's own HTTP connector
//! (hyper, rustls + ring), bounded in time and in response size.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{self, ProvideCredentials, error::CredentialsError};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::config::http::HttpRequest;
use aws_smithy_http_client::{Connector, tls};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use postern_secret::Secret;
use tokio::sync::Mutex;

use super::endpoint::{self, Endpoint};
use super::response::{self, Cached};
use super::{CredentialsConfigError, EnvLookup, error_chain};

const AUTHORIZATION_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
const AUTHORIZATION_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";

/// A real response is about 1.5 KB; anything far larger is not one.
const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// The same bound for a token file, which holds one JWT.
const MAX_TOKEN_FILE_BYTES: u64 = 16 * 1024;
/// After a failed refresh, credentials that are still valid stay in use and
/// the endpoint is tried again after this, not on every request.
const RETRY_AFTER_FAILED_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ContainerCredentialsError {
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("{endpoint} did not answer within {after:?}")]
    TimedOut { endpoint: String, after: Duration },
    #[error("{endpoint} answered HTTP {status}{hint}")]
    Status {
        endpoint: String,
        status: u16,
        hint: &'static str,
    },
    #[error("{endpoint} sent more than {limit} bytes, which is no credentials response")]
    TooLarge { endpoint: String, limit: usize },
    #[error("{endpoint} sent a malformed credentials response: {reason}")]
    Malformed { endpoint: String, reason: String },
    #[error("{endpoint} sent credentials that expired at {expiration}")]
    Expired {
        endpoint: String,
        expiration: String,
    },
    #[error(
        "cannot read the token file {path:?} named by AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: {reason}"
    )]
    TokenFile { path: PathBuf, reason: String },
}

enum Authorization {
    Token(Secret),
    /// Read at every fetch: Pod Identity rotates the token in the file.
    File(PathBuf),
}

pub struct ContainerCredentials {
    /// Never shown: a relative URI is a per-task capability.
    url: String,
    /// What errors and logs say: "the container credentials endpoint", its
    /// origin and variable, no path.
    endpoint: String,
    authorization: Option<Authorization>,
    timeout: Duration,
    connector: Connector,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for ContainerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let authorization = match &self.authorization {
            None => "none".to_owned(),
            Some(Authorization::Token(token)) => format!("{AUTHORIZATION_TOKEN} {token}"),
            Some(Authorization::File(path)) => format!("{AUTHORIZATION_TOKEN_FILE} {path:?}"),
        };
        f.debug_struct("ContainerCredentials")
            .field("endpoint", &self.endpoint)
            .field("authorization", &authorization)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ContainerCredentials {
    /// From `AWS_CONTAINER_*` (the relative URI wins over the full one);
    /// `None` when neither URI is set. A full URI over plain http must point
    /// at a loopback address or the ECS/EKS agent's link-local address, so
    /// credentials never cross a network in clear text.
    pub fn from_env(
        env: EnvLookup<'_>,
        timeout: Duration,
    ) -> Result<Option<Self>, CredentialsConfigError> {
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let Some(Endpoint { url, shown }) = endpoint::from_env(&env)? else {
            return Ok(None);
        };
        let authorization = if let Some(path) = env(AUTHORIZATION_TOKEN_FILE) {
            Some(Authorization::File(PathBuf::from(path)))
        } else if let Some(token) = env(AUTHORIZATION_TOKEN) {
            if !endpoint::header_safe(&token) {
                return Err(CredentialsConfigError {
                    var: AUTHORIZATION_TOKEN,
                    reason: "holds characters an HTTP header cannot carry".into(),
                });
            }
            Some(Authorization::Token(Secret::new(token)))
        } else {
            None
        };
        let connector = Connector::builder()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build();
        Ok(Some(Self {
            url,
            endpoint: format!("the container credentials endpoint {shown}"),
            authorization,
            timeout,
            connector,
            cached: Mutex::new(None),
        }))
    }

    /// The cached credentials, fetched first when there are none or they are
    /// due for refresh. Concurrent callers wait for one fetch.
    pub async fn credentials(&self) -> Result<Credentials, ContainerCredentialsError> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(current) = cached.as_ref()
            && now < current.refresh_at
        {
            return Ok(current.credentials.clone());
        }
        match self.fetch().await {
            Ok(fresh) => {
                tracing::debug!(endpoint = %self.endpoint, refresh_at = ?fresh.refresh_at, "fetched AWS credentials");
                let credentials = fresh.credentials.clone();
                *cached = Some(fresh);
                Ok(credentials)
            }
            Err(err) => match cached.as_mut() {
                Some(current) if now < current.expires_at => {
                    tracing::warn!(error = %err, "refreshing AWS credentials failed: the current ones stay in use until they expire");
                    current.refresh_at = (now + RETRY_AFTER_FAILED_REFRESH).min(current.expires_at);
                    Ok(current.credentials.clone())
                }
                _ => Err(err),
            },
        }
    }

    async fn fetch(&self) -> Result<Cached, ContainerCredentialsError> {
        let unreachable = |reason: String| ContainerCredentialsError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let mut request = HttpRequest::get(&self.url).map_err(|e| unreachable(e.to_string()))?;
        request.headers_mut().insert("accept", "application/json");
        if let Some(token) = self.authorization_token().await? {
            request
                .headers_mut()
                .insert("authorization", token.expose().to_owned());
        }
        let exchange = async {
            let response = self
                .connector
                .call(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(ContainerCredentialsError::Status {
                    endpoint: self.endpoint.clone(),
                    status,
                    hint: match status {
                        401 | 403 => ": check AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)",
                        _ => "",
                    },
                });
            }
            self.read_bounded(response.into_body()).await
        };
        let body = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ContainerCredentialsError::TimedOut {
                endpoint: self.endpoint.clone(),
                after: self.timeout,
            })??;
        response::parse(&self.endpoint, &body, SystemTime::now())
    }

    async fn authorization_token(&self) -> Result<Option<Secret>, ContainerCredentialsError> {
        let path = match &self.authorization {
            None => return Ok(None),
            Some(Authorization::Token(token)) => return Ok(Some(token.clone())),
            Some(Authorization::File(path)) => path,
        };
        let bad = |reason: String| ContainerCredentialsError::TokenFile {
            path: path.clone(),
            reason,
        };
        let len = tokio::fs::metadata(path)
            .await
            .map_err(|e| bad(e.to_string()))?
            .len();
        if len > MAX_TOKEN_FILE_BYTES {
            return Err(bad(format!("{len} bytes is no token")));
        }
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| bad(e.to_string()))?;
        // Files written by `echo` end in a newline, which no header may hold.
        let token = text.trim();
        if token.is_empty() || !endpoint::header_safe(token) {
            return Err(bad(
                "it is empty or holds characters an HTTP header cannot carry".into(),
            ));
        }
        Ok(Some(Secret::new(token)))
    }

    async fn read_bounded(&self, body: SdkBody) -> Result<Vec<u8>, ContainerCredentialsError> {
        let mut stream = ByteStream::new(body);
        let mut received = Vec::new();
        while let Some(chunk) =
            stream
                .try_next()
                .await
                .map_err(|e| ContainerCredentialsError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    reason: error_chain(&e),
                })?
        {
            if received.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ContainerCredentialsError::TooLarge {
                    endpoint: self.endpoint.clone(),
                    limit: MAX_RESPONSE_BYTES,
                });
            }
            received.extend_from_slice(&chunk);
        }
        Ok(received)
    }
}

impl ProvideCredentials for ContainerCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.credentials().await.map_err(|err| match err {
                ContainerCredentialsError::TokenFile { .. } => {
                    CredentialsError::invalid_configuration(err)
                }
                _ => CredentialsError::provider_error(err),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(
        pairs: &[(&str, &str)],
    ) -> Result<Option<ContainerCredentials>, CredentialsConfigError> {
        let lookup = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        ContainerCredentials::from_env(&lookup, Duration::from_secs(1))
    }

    #[test]
    fn debug_and_errors_hide_the_token_and_the_relative_path() {
        let provider = from(&[
            (endpoint::RELATIVE_URI, "/v2/credentials/task-capability"),
            (AUTHORIZATION_TOKEN, "Bearer very-secret"),
        ])
        .unwrap()
        .unwrap();
        let debug = format!("{provider:?}");
        assert!(
            !debug.contains("very-secret") && !debug.contains("task-capability"),
            "{debug}"
        );
        assert!(debug.contains("169.254.170.2"), "{debug}");
        let err = from(&[
            (endpoint::FULL_URI, "http://[::1]/x"),
            (AUTHORIZATION_TOKEN, "a\nb"),
        ])
        .unwrap_err();
        assert_eq!(err.var, AUTHORIZATION_TOKEN);
    }
}
