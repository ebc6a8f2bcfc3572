//! Running commands on one server or a cluster: each call bounded in time,
//! resent once when that is safe, its errors mapped to [`StoreError`].

use std::future::Future;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, ServerErrorKind};

use crate::{StoreError, StoreResult};

/// How many per-agent commands a cluster batch keeps in flight: enough to fill
/// the pipes to every node without queueing thousands of futures at once.
const CLUSTER_BATCH_CONCURRENCY: usize = 64;

/// Commands per pipeline on a single server: one round trip for a usual batch,
/// while a huge one is split so that no reply outlasts the response timeout.
const PIPELINE_CHUNK: usize = 1000;

pub(super) struct Commands {
    connection: Connection,
    operation_timeout: Duration,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

#[derive(Debug, thiserror::Error)]
#[error("Redis did not answer within {0:?}")]
pub(super) struct NoAnswer(pub(super) Duration);

impl Commands {
    pub(super) fn single(manager: ConnectionManager, operation_timeout: Duration) -> Self {
        Self {
            connection: Connection::Single(manager),
            operation_timeout,
        }
    }

    pub(super) fn cluster(connection: ClusterConnection, operation_timeout: Duration) -> Self {
        Self {
            connection: Connection::Cluster(connection),
            operation_timeout,
        }
    }

    /// Runs an idempotent command: see [`Self::query_once_sent`] for others.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> StoreResult<T> {
        self.query_with_retry(cmd, Resend::IfConnectionLost).await
    }

    /// Runs a command that must not run twice (SPUBLISH: at most once).
    pub(super) async fn query_once_sent<T: FromRedisValue>(&self, cmd: &Cmd) -> StoreResult<T> {
        self.query_with_retry(cmd, Resend::IfNeverSent).await
    }

    /// After an outage the connection (or the failed attempt to make one) is
    /// stale: the first call fails and starts a reconnection. One immediate
    /// retry, within the same time bound, makes that first call succeed when
    /// Redis is back, instead of returning a spurious `Unavailable`.
    async fn query_with_retry<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        resend: Resend,
    ) -> StoreResult<T> {
        bounded(self.operation_timeout, async {
            match self.query_once(cmd).await {
                Err(err) if resend.allows(&err) => self.query_once(cmd).await,
                result => result,
            }
        })
        .await
    }

    async fn query_once<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        match self.connection.clone() {
            Connection::Single(mut connection) => cmd.query_async(&mut connection).await,
            Connection::Cluster(mut connection) => cmd.query_async(&mut connection).await,
        }
    }

    /// Runs independent idempotent commands: one pipeline (one round trip) on
    /// a single server; concurrently on a cluster, where their keys are in
    /// many slots.
    pub(super) async fn run_all(&self, commands: Vec<Cmd>) -> StoreResult<()> {
        if commands.is_empty() {
            return Ok(());
        }
        match self.connection.clone() {
            Connection::Single(mut connection) => {
                for chunk in commands.chunks(PIPELINE_CHUNK) {
                    let mut pipeline = redis::pipe();
                    for cmd in chunk {
                        pipeline.add_command(cmd.clone()).ignore();
                    }
                    bounded(self.operation_timeout, async {
                        match pipeline.query_async::<()>(&mut connection).await {
                            Err(err) if Resend::IfConnectionLost.allows(&err) => {
                                pipeline.query_async(&mut connection).await
                            }
                            result => result,
                        }
                    })
                    .await?;
                }
                Ok(())
            }
            Connection::Cluster(_) => {
                futures::stream::iter(commands)
                    .map(|cmd| async move { self.query::<()>(&cmd).await })
                    .buffer_unordered(CLUSTER_BATCH_CONCURRENCY)
                    .try_collect()
                    .await
            }
        }
    }
}

/// When a failed command may be sent again.
#[derive(Clone, Copy)]
enum Resend {
    /// The connection was refused: the command never reached Redis.
    IfNeverSent,
    /// Also when the connection broke, though Redis may have run the command:
    /// only for commands that can safely run twice.
    IfConnectionLost,
}

impl Resend {
    fn allows(self, err: &RedisError) -> bool {
        match self {
            Self::IfNeverSent => err.is_connection_refusal(),
            Self::IfConnectionLost => err.is_connection_refusal() || err.is_connection_dropped(),
        }
    }
}

pub(super) async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, RedisError>>,
) -> StoreResult<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(store_error),
        Err(_) => Err(StoreError::Unavailable(Box::new(NoAnswer(limit)))),
    }
}

/// Failures that should pass once Redis is reachable (or done failing over)
/// again are `Unavailable`; anything else is a `Backend` error.
pub(super) fn store_error(err: RedisError) -> StoreError {
    let transient = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::BusyLoading
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                        | ServerErrorKind::ReadOnly
                )
        );
    if transient {
        StoreError::Unavailable(Box::new(err))
    } else {
        StoreError::Backend(Box::new(err))
    }
}
