//! Draining on ECS before SIGTERM.
//!
//! When ECS stops a task behind a load balancer, it first deregisters the
//! task from the target group, waits the deregistration delay, and only then
//! sends SIGTERM. At the end of the delay the load balancer closes the task's
//! connections, agents' tunnels included, so a drain started by SIGTERM comes
//! too late to move agents before their tunnels drop. ECS records the decision
//! at once, though: the task metadata endpoint (`ECS_CONTAINER_METADATA_URI_V4`,
//! set in every task) answers `"DesiredStatus": "STOPPED"` from the start of the
//! delay. Watching it lets a replica drain while its connections still work.

use std::time::Duration;

use postern_tunnel::env::{ConfigError, Env};
use tracing::{debug, warn};

/// Where ECS publishes the task metadata endpoint to each container.
pub const METADATA_VAR: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// Set to false to drain on SIGTERM only.
pub const ENABLE_VAR: &str = "POSTERN_ECS_DRAIN_ON_STOP";
/// How often the task's desired status is read: a small share of any
/// deregistration delay, and one local HTTP request each time.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The task document lists the task's containers; a few KiB in practice.
const MAX_DOCUMENT: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
enum MetadataError {
    #[error(transparent)]
    Get(#[from] crate::bounded_get::GetError),
    #[error("{url} is not a task document with DesiredStatus: {source}")]
    Document {
        url: String,
        source: serde_json::Error,
    },
}

#[derive(serde::Deserialize)]
struct TaskDocument {
    #[serde(rename = "DesiredStatus")]
    desired_status: String,
}

/// Watches this task's desired status on ECS.
#[derive(Clone)]
pub struct TaskStopWatch {
    task_url: reqwest::Url,
}

impl std::fmt::Debug for TaskStopWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStopWatch")
            .field("task_url", &self.task_url.as_str())
            .finish()
    }
}

impl TaskStopWatch {
    /// `Some` on ECS (the metadata variable is set) unless
    /// `POSTERN_ECS_DRAIN_ON_STOP=false`.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        if !env.flag(ENABLE_VAR, true)? {
            return Ok(None);
        }
        let Some(base) = env.raw(METADATA_VAR) else {
            return Ok(None);
        };
        let invalid = |message: String| ConfigError {
            var: METADATA_VAR.to_owned(),
            message,
        };
        let base = reqwest::Url::parse(base.trim())
            .map_err(|e| invalid(format!("invalid URL {base:?}: {e}")))?;
        if base.scheme() != "http" {
            return Err(invalid(format!(
                "expected an http:// URL (ECS sets one), got {base}; set {ENABLE_VAR}=false to ignore it"
            )));
        }
        let task_url =
            reqwest::Url::parse(&format!("{}/task", base.as_str().trim_end_matches('/')))
                .map_err(|e| invalid(format!("cannot append /task to {base}: {e}")))?;
        Ok(Some(Self { task_url }))
    }

    pub fn task_url(&self) -> &reqwest::Url {
        &self.task_url
    }

    /// Resolves once ECS wants this task stopped. An endpoint that cannot be
    /// read never triggers a drain: it is logged (once per failing spell) and
    /// read again.
    pub async fn stopping(&self) {
        // The endpoint is plain HTTP, but reqwest builds its TLS set-up anyway,
        // and only a preconfigured one names the crypto provider.
        let http = match postern_tunnel::tls::client_config(None)
            .map_err(|e| e.to_string())
            .and_then(|tls| {
                reqwest::Client::builder()
                    .use_preconfigured_tls(tls)
                    .timeout(REQUEST_TIMEOUT)
                    .no_proxy()
                    .build()
                    .map_err(|e| e.to_string())
            }) {
            Ok(http) => http,
            Err(e) => {
                warn!(error = %e, "cannot build the ECS metadata client; draining on SIGTERM only");
                return std::future::pending().await;
            }
        };
        let mut failing = false;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            poll.tick().await;
            match self.desired_status(&http).await {
                Ok(status) if status == "STOPPED" => return,
                Ok(status) => {
                    if failing {
                        debug!(%status, "ECS task metadata readable again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "cannot read the ECS task metadata; will drain on SIGTERM if this lasts");
                    }
                    failing = true;
                }
            }
        }
    }

    async fn desired_status(&self, http: &reqwest::Client) -> Result<String, MetadataError> {
        let url = self.task_url.as_str();
        let body = crate::bounded_get::get_bounded(http, url, MAX_DOCUMENT).await?;
        let document: TaskDocument =
            serde_json::from_slice(&body).map_err(|source| MetadataError::Document {
                url: url.to_owned(),
                source,
            })?;
        Ok(document.desired_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(vars: &[(&str, &str)]) -> Result<Option<String>, ConfigError> {
        let env = Env::from_pairs(vars.iter().copied());
        TaskStopWatch::from_env(&env).map(|w| w.map(|w| w.task_url().to_string()))
    }

    /// Variables, then the task URL watched or the variable named in the error.
    type Case<'a> = (&'a [(&'a str, &'a str)], Result<Option<&'a str>, &'a str>);

    #[test]
    fn configuration_table() {
        let uri = "http://169.254.170.2/v4/0123abcd-4567";
        let cases: &[Case] = &[
            (&[], Ok(None)),
            (
                &[(METADATA_VAR, uri)],
                Ok(Some("http://169.254.170.2/v4/0123abcd-4567/task")),
            ),
            (
                &[(METADATA_VAR, "http://169.254.170.2/v4/x/")],
                Ok(Some("http://169.254.170.2/v4/x/task")),
            ),
            (&[(METADATA_VAR, uri), (ENABLE_VAR, "false")], Ok(None)),
            (&[(ENABLE_VAR, "true")], Ok(None)),
            (&[(METADATA_VAR, "not a url")], Err(METADATA_VAR)),
            (
                &[(METADATA_VAR, "https://example.com/v4")],
                Err(METADATA_VAR),
            ),
            (
                &[(METADATA_VAR, uri), (ENABLE_VAR, "maybe")],
                Err(ENABLE_VAR),
            ),
        ];
        for (vars, expected) in cases {
            match (watch(vars), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got.as_deref(), *want, "{vars:?}"),
                (Err(e), Err(var)) => assert_eq!(e.var, *var, "{vars:?}: {e}"),
                (got, want) => panic!("{vars:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn reads_the_desired_status_from_a_task_document() {
        let document =
            br#"{"Cluster":"postern","TaskARN":"arn:aws:ecs:eu-west-1:1:task/postern/abc",
            "DesiredStatus":"STOPPED","KnownStatus":"RUNNING","Containers":[]}"#;
        let parsed: TaskDocument = serde_json::from_slice(document).unwrap();
        assert_eq!(parsed.desired_status, "STOPPED");
        assert!(serde_json::from_slice::<TaskDocument>(br#"{"KnownStatus":"RUNNING"}"#).is_err());
    }
}
