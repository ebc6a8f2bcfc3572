//! The DynamoDB client, configured by hand (no aws-config): region (the URL's,
//! else `AWS_REGION`/`AWS_DEFAULT_REGION`), an endpoint override (local
//! DynamoDB-API servers, VPC endpoints), credentials from the chain in
//! [`super::credentials`] or any provider the caller hands in, timeouts and a
//! rustls + ring HTTPS client.

use std::time::Duration;

use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, Credentials, IdentityCache, Region, SharedCredentialsProvider,
    retry::RetryConfig,
};
use aws_smithy_http_client::tls;

use super::credentials::{EnvLookup, credentials_from_env, process_env};
use crate::StoreResult;

/// Where the store lives and how to reach it. `Debug` never shows secrets.
#[derive(Clone)]
pub struct DynamoConfig {
    pub table: String,
    pub region: String,
    /// `http(s)://host:port` instead of the region's public endpoint.
    pub endpoint: Option<String>,
    /// None: the [credential chain](super::credentials) on the process
    /// environment, read when the store connects. The SDK asks the provider on
    /// every request (no SDK-side cache), so one that fetches must cache, as
    /// the chain's container provider does.
    pub credentials: Option<SharedCredentialsProvider>,
    /// Create the table (and its indexes) when it does not exist.
    pub create_table: bool,
    /// Bounds each attempt; the whole call (with retries) gets three times it.
    pub attempt_timeout: Duration,
}

impl std::fmt::Debug for DynamoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoConfig")
            .field("table", &self.table)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials.as_ref().map(|_| "<set>"))
            .field("create_table", &self.create_table)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DynamoConfigError {
    #[error(
        "expected dynamodb://TABLE[?region=REGION][&endpoint=URL][&create_table=true], the region \
         defaulting to AWS_REGION or AWS_DEFAULT_REGION: {0}"
    )]
    Url(String),
}

impl DynamoConfig {
    pub fn new(table: &str, region: &str) -> Self {
        Self {
            table: table.into(),
            region: region.into(),
            endpoint: None,
            credentials: None,
            create_table: false,
            attempt_timeout: Duration::from_secs(2),
        }
    }

    /// Uses these keys instead of the environment's.
    pub fn static_credentials(&mut self, access_key_id: &str, secret_access_key: &str) {
        self.credentials = Some(SharedCredentialsProvider::new(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "postern-static",
        )));
    }

    /// `dynamodb://TABLE?region=eu-west-1&endpoint=http://127.0.0.1:8000&create_table=true`,
    /// every parameter optional; without `region`, the process environment's
    /// `AWS_REGION` or `AWS_DEFAULT_REGION` (ECS sets `AWS_REGION`).
    pub fn from_url(url: &str) -> Result<Self, DynamoConfigError> {
        Self::from_url_with_env(url, &process_env)
    }

    /// [`DynamoConfig::from_url`] with the region fallback read from `env`.
    pub fn from_url_with_env(url: &str, env: EnvLookup<'_>) -> Result<Self, DynamoConfigError> {
        let bad = |why: &str| DynamoConfigError::Url(why.to_owned());
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "dynamodb" {
            return Err(bad(&format!("the scheme is {:?}", parsed.scheme())));
        }
        let table = parsed.host_str().unwrap_or_default();
        let valid_table = (3..=255).contains(&table.len())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid_table {
            return Err(bad(
                "the table name must be 3-255 characters of letters, digits, '_', '-' or '.'",
            ));
        }
        let mut region = None;
        let mut config = Self::new(table, "");
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "region" if !value.is_empty() => region = Some(value.into_owned()),
                "endpoint" => {
                    let endpoint = url::Url::parse(&value)
                        .map_err(|e| bad(&format!("endpoint {value:?}: {e}")))?;
                    if !matches!(endpoint.scheme(), "http" | "https") {
                        return Err(bad("the endpoint must be an http:// or https:// URL"));
                    }
                    config.endpoint = Some(value.into_owned());
                }
                "create_table" => {
                    config.create_table = match &*value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad("create_table must be true or false")),
                    }
                }
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        // The URL wins: it is the store's own setting, the variables are the
        // platform's default for every AWS client in the process.
        config.region = region
            .or_else(|| env_region(env))
            .ok_or_else(|| bad("region is required: add region=REGION or set AWS_REGION"))?;
        Ok(config)
    }

    pub(super) fn credentials_provider(&self) -> StoreResult<SharedCredentialsProvider> {
        if let Some(provider) = &self.credentials {
            return Ok(provider.clone());
        }
        // Inside the SDK's attempt timeout, so that a slow endpoint is
        // reported as itself rather than as a timed-out DynamoDB call.
        let fetch_timeout = self.attempt_timeout.mul_f64(0.75);
        Ok(credentials_from_env(&process_env, fetch_timeout)?)
    }

    pub(super) fn sdk_config(
        &self,
        credentials: SharedCredentialsProvider,
    ) -> aws_sdk_dynamodb::Config {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(self.attempt_timeout)
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.attempt_timeout * 3)
            .build();
        let mut builder = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(credentials)
            // The container provider caches and refreshes early itself; the
            // SDK's lazy cache would hold credentials until just before expiry.
            .identity_cache(IdentityCache::no_cache())
            .http_client(http)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(3));
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder.build()
    }
}

fn env_region(env: EnvLookup<'_>) -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .filter_map(env)
        .map(|region| region.trim().to_owned())
        .find(|region| !region.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        let config = DynamoConfig::from_url(
            "dynamodb://postern-prod?region=eu-west-1&endpoint=http://127.0.0.1:8000&create_table=true",
        )
        .unwrap();
        assert_eq!(config.table, "postern-prod");
        assert_eq!(config.region, "eu-west-1");
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        assert!(config.create_table);
        let plain = DynamoConfig::from_url("dynamodb://postern?region=us-east-1").unwrap();
        assert_eq!((plain.endpoint, plain.create_table), (None, false));

        let no_env = |_: &str| -> Option<String> { None };

        for (url, why) in [
            ("dynamodb://postern", "region is required"),
            ("postgres://postern?region=x", "scheme"),
            ("dynamodb://ab?region=x", "table name"),
            ("dynamodb://postern?region=x&endpoint=ftp://h", "http://"),
            (
                "dynamodb://postern?region=x&create_table=yes",
                "true or false",
            ),
            (
                "dynamodb://postern?region=x&colour=blue",
                "unknown parameter \"colour\"",
            ),
        ] {
            let err = DynamoConfig::from_url_with_env(url, &no_env)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn the_region_comes_from_the_url_then_aws_region_then_aws_default_region() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env(&[
            ("AWS_REGION", "eu-west-3"),
            ("AWS_DEFAULT_REGION", "us-west-2"),
        ]);
        let region = |url: &str, env: EnvLookup<'_>| {
            DynamoConfig::from_url_with_env(url, env).map(|c| c.region)
        };
        assert_eq!(
            region("dynamodb://postern?region=ap-south-1", &both).unwrap(),
            "ap-south-1"
        );
        assert_eq!(region("dynamodb://postern", &both).unwrap(), "eu-west-3");
        let default_only = env(&[("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "us-west-2")]);
        assert_eq!(
            region("dynamodb://postern", &default_only).unwrap(),
            "us-west-2"
        );
        let err = region("dynamodb://postern", &env(&[])).unwrap_err();
        assert!(err.to_string().contains("set AWS_REGION"), "{err}");
    }

    #[test]
    fn debug_hides_credentials() {
        let mut config = DynamoConfig::new("t-1", "eu-west-1");
        config.credentials = Some(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "very-secret-key",
            None,
            None,
            "test",
        )));
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("very-secret-key") && !debug.contains("AKIDEXAMPLE"),
            "{debug}"
        );
        assert!(debug.contains("<set>"), "{debug}");
    }
}
