//! Tells approvers about reviews: an outgoing webhook with Slack-compatible
//! JSON (`text`, plus a `postern` object for machines), retried with backoff
//! on network errors, 429 and 5xx, in the background so no request waits.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Review, ReviewStatus};
use crate::metrics::Metrics;

/// Tries per notification, and the first pause between them (doubling).
pub const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

pub enum Event {
    Requested(Review),
    Decided(Review),
}

impl Event {
    /// The message body: Slack shows `text`; other receivers read `postern`.
    pub fn payload(&self) -> serde_json::Value {
        let (event, review, text) = match self {
            Event::Requested(r) => (
                "review.requested",
                r,
                format!(
                    "{} asks for access to {} (review {}): {}. Approvers in group {} can run `postern review approve {}`.",
                    r.person,
                    r.connection,
                    r.id,
                    if r.reason.is_empty() {
                        "no reason given"
                    } else {
                        &r.reason
                    },
                    r.approvers,
                    r.id
                ),
            ),
            Event::Decided(r) => (
                "review.decided",
                r,
                format!(
                    "{} {} access to {} for {} (review {}){}",
                    r.decided_by.as_deref().unwrap_or("?"),
                    if r.status == ReviewStatus::Approved {
                        "approved"
                    } else {
                        "denied"
                    },
                    r.connection,
                    r.person,
                    r.id,
                    if r.comment.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.comment)
                    }
                ),
            ),
        };
        json!({ "text": text, "postern": { "event": event, "review": review } })
    }
}

pub struct Webhook {
    target: Option<(reqwest::Url, reqwest::Client)>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot build the webhook's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot set up TLS for the webhook: {0}")]
    Tls(#[from] postern_tunnel::tls::TlsError),
}

impl Webhook {
    /// `url`: where to post (POSTERN_REVIEW_WEBHOOK_URL); none: reviews are
    /// only in the API and the audit trail.
    pub fn new(url: Option<reqwest::Url>, metrics: Arc<Metrics>) -> Result<Self, WebhookError> {
        let target = match url {
            None => None,
            Some(url) => {
                let mut tls = postern_tunnel::tls::client_config(None)?;
                tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                let client = reqwest::Client::builder()
                    .use_preconfigured_tls(tls)
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(10))
                    .build()?;
                Some((url, client))
            }
        };
        Ok(Self { target, metrics })
    }

    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        Self {
            target: None,
            metrics,
        }
    }

    pub fn notify(&self, event: Event) {
        let Some((url, client)) = self.target.clone() else {
            return;
        };
        let metrics = self.metrics.clone();
        let payload = event.payload();
        tokio::spawn(async move {
            let result = deliver(&client, &url, &payload).await;
            metrics.webhook_delivery(if result.is_ok() { "ok" } else { "failed" });
            if let Err(error) = result {
                tracing::warn!(%error, "review webhook not delivered");
            }
        });
    }
}

/// Posts `payload`, retrying what may pass on a later try.
pub async fn deliver(
    client: &reqwest::Client,
    url: &reqwest::Url,
    payload: &serde_json::Value,
) -> Result<(), String> {
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match client.post(url.clone()).json(payload).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status();
                last = format!("the receiver answered {status}");
                if !(status.is_server_error() || status.as_u16() == 429) {
                    return Err(last);
                }
            }
            Err(e) => last = format!("cannot reach the receiver: {e}"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(format!("{last} (after {ATTEMPTS} tries)"))
}
