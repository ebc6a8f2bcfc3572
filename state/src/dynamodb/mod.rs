//! DynamoDB policy store and audit sink (`aws-sdk-dynamodb`, rustls + ring,
//! no aws-config): one table, created at start if asked to. Credentials come
//! from static keys or a container credentials endpoint ([`credentials`]).
//!
//! # Table design
//!
//! One table, key `pk` (S, partition) + `sk` (S, sort), on-demand billing.
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | connection | `connection` | name | `kind`, `target`, `agent`, `created_at_ms`, `database`?, `credential`?, `tls`?, `policy`? (JSON text), `version` |
//! | agent | `agent` | name | `token_hash`, `created_at_ms`, `version` |
//! | agent token | `agent_token#<sha256>` | `-` | `name`, `created_at_ms` (the agent it authenticates) |
//! | user token | `user_token` | sha256 | `user`, `role`, `created_at_ms`, `groups`? (JSON text) |
//! | session | `session#<id>` | `-` | the record's fields; `session_list` = `session`, `session_start` = `<started_at_ms, 20 digits>#<id>` |
//! | document | `doc#<kind>` | key | `version`, `body` (JSON text), `updated_at_ms` |
//! | audit event | `audit#<shard 0-7>` | `<at_ms, 20 digits>#<writer>#<counter>` | the event's fields; `audit_ts` = sk, `audit_actor`, `audit_target`, `audit_session`? |
//!
//! Global secondary indexes (projection ALL; sparse: only items with the key):
//!
//! | index | partition | sort | serves |
//! |---|---|---|---|
//! | `by_start` | `session_list` | `session_start` | sessions, newest first |
//! | `by_actor` | `audit_actor` | `audit_ts` | audit by person |
//! | `by_session` | `audit_session` | `audit_ts` | audit by session |
//! | `by_target` | `audit_target` | `audit_ts` | audit by connection/agent/session target |
//!
//! - Lists of connections, agents and user tokens are one strongly consistent
//!   Query each (admin-sized partitions); lookups by name or token hash are
//!   strongly consistent GetItems, so a token works as soon as it is created.
//! - Creates are conditional (`attribute_not_exists(pk)`): of concurrent
//!   creates of one name exactly one wins, the others get `AlreadyExists`. An
//!   agent and its token item are written and deleted in one transaction, so
//!   neither a name nor a token hash is ever held twice. `version` starts at 1;
//!   an update must write `version + 1` on the condition `version = <read>`;
//!   documents are written exactly that way, so of concurrent updates of one
//!   document exactly one wins and the others get `Conflict`.
//! - Audit reads by time narrow the sort key (`<at_ms>#…`) with `BETWEEN`.
//! - Audit writes spread over 8 partitions (`audit#0`..`audit#7`); an
//!   unfiltered read queries all 8 newest first and merges. Filtered reads use
//!   the most selective index (session, then actor, then target) and filter the
//!   rest server-side. Index reads are eventually consistent (DynamoDB's GSIs
//!   lag by milliseconds), base-table reads are not.
//!
//! Errors: network failures, timeouts, throttling and 5xx are
//! [`StoreError::Unavailable`]; everything else is `Backend`.

mod audit;
mod client;
pub mod credentials;
mod documents;
mod items;
mod policy;
mod table;

use std::sync::atomic::AtomicU64;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::ProvideCredentials;

pub use client::{DynamoConfig, DynamoConfigError};

use crate::{StoreError, StoreResult};

pub(crate) const AUDIT_SHARDS: u64 = 8;

pub struct DynamoStore {
    client: Client,
    table: String,
    /// Makes audit sort keys unique between writers that share a millisecond.
    writer: u32,
    counter: AtomicU64,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// Builds the client, gets credentials once (so a bad credential source
    /// fails here, saying why), then checks the table is there (creating it
    /// first when `config.create_table` is set) and waits until it is active.
    pub async fn connect(config: DynamoConfig) -> StoreResult<Self> {
        let table = config.table.clone();
        let create = config.create_table;
        let credentials = config.credentials_provider()?;
        credentials
            .provide_credentials()
            .await
            .map_err(credentials_error)?;
        let client = Client::from_conf(config.sdk_config(credentials));
        let store = Self {
            client,
            table,
            writer: random_u32(),
            counter: AtomicU64::new(0),
        };
        table::ensure(&store.client, &store.table, create).await?;
        Ok(store)
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

/// Error codes that mean "try again later", not "this request is wrong".
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "LimitExceededException"
    )
}

/// Maps an SDK error: unreachable, timed out or throttled → `Unavailable`.
pub(crate) fn sdk_error<E, R>(err: aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_dynamodb::error::SdkError;
    let unavailable = match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => service.err().code().is_some_and(is_transient_code),
        _ => false,
    };
    let err = Box::new(DynamoError(
        aws_sdk_dynamodb::error::DisplayErrorContext(&err).to_string(),
    ));
    if unavailable {
        StoreError::Unavailable(err)
    } else {
        StoreError::Backend(err)
    }
}

/// An SDK error flattened to its message with every cause (the SDK's own
/// `Display` shows only the outermost, e.g. "dispatch failure").
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB: {0}")]
pub(crate) struct DynamoError(pub(crate) String);

/// The credential source failing is the store being out of reach (the
/// endpoint is down, slow or answering nonsense), unless it is misconfigured.
fn credentials_error(err: aws_credential_types::provider::error::CredentialsError) -> StoreError {
    use aws_credential_types::provider::error::CredentialsError;
    let message = DynamoError(format!(
        "no AWS credentials: {}",
        credentials::error_chain(&err)
    ));
    match err {
        CredentialsError::InvalidConfiguration(_) | CredentialsError::Unhandled(_) => {
            StoreError::Backend(Box::new(message))
        }
        _ => StoreError::Unavailable(Box::new(message)),
    }
}

pub(crate) fn build_error(err: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(Box::new(err))
}

pub(crate) fn bad_item(reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field: "DynamoDB item",
        reason: reason.into(),
    }
}
