//! Just-in-time access: a person asks for a connection that needs approval,
//! approvers (a group) are notified and decide, and an approval becomes a
//! time-boxed grant. Every step is a compare-and-set document write, so two
//! approvers deciding at once never both win, and every step is audited.

pub mod webhook;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use postern_state::now_ms;
use serde::{Deserialize, Serialize};

use crate::access::documents::{self, GRANT, REVIEW, Versioned};
use crate::access::{Grant, Principal, SessionDecision, decide_session};
use crate::api::user;
use crate::metrics::ErrorKind;
use crate::refusal::Refusal;
use crate::shared::Shared;

type ApiResult<T> = Result<T, Refusal>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewStatus {
    Pending,
    Approved,
    Denied,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub id: String,
    pub person: String,
    pub connection: String,
    pub reason: String,
    pub approvers: String,
    pub window_secs: u64,
    pub status: ReviewStatus,
    pub requested_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// Until when an approval lets the person in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/reviews", get(list_reviews).post(request_review))
        .route("/v1/reviews/{id}", get(show_review))
        .route("/v1/reviews/{id}/approve", post(approve))
        .route("/v1/reviews/{id}/deny", post(deny))
}

/// A pending review `person` already asked for on `connection`.
pub async fn pending_for(
    shared: &Shared,
    person: &str,
    connection: &str,
) -> Result<Option<Review>, Refusal> {
    let reviews = shared.stored(documents::list::<Review>(&*shared.stores.policy, REVIEW).await)?;
    Ok(pending_in(&reviews, person, connection))
}

fn pending_in(reviews: &[Versioned<Review>], person: &str, connection: &str) -> Option<Review> {
    reviews
        .iter()
        .map(|r| &r.value)
        .find(|r| {
            r.status == ReviewStatus::Pending && r.person == person && r.connection == connection
        })
        .cloned()
}

/// How long a decided review stays listed; the audit trail keeps it for good.
pub const DECIDED_REVIEWS_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;

/// Grants past their window decide nothing, and reviews decided long ago are
/// only history (the audit trail has them): both are removed when the next
/// review is asked for (`reviews`: all of them, as just read), so the store
/// does not grow with them. A failure is logged and left for the next time.
async fn prune(shared: &Shared, reviews: &[Versioned<Review>]) {
    let store = &*shared.stores.policy;
    let now = now_ms();
    match documents::list::<Grant>(store, GRANT).await {
        Ok(grants) => {
            for grant in grants.into_iter().filter(|g| g.value.expires_at_ms <= now) {
                remove(shared, GRANT, &grant.value.review_id, grant.version).await;
            }
        }
        Err(error) => tracing::warn!(%error, "cannot list grants to prune"),
    }
    let old = |r: &Review| {
        r.status != ReviewStatus::Pending
            && r.decided_at_ms
                .is_some_and(|at| now - at > DECIDED_REVIEWS_KEPT_MS)
    };
    for review in reviews.iter().filter(|r| old(&r.value)) {
        remove(shared, REVIEW, &review.value.id, review.version).await;
    }
}

async fn remove(shared: &Shared, kind: &str, key: &str, version: u64) {
    if let Err(error) = shared
        .stores
        .policy
        .delete_document(kind, key, version)
        .await
    {
        tracing::warn!(%error, kind, key, "cannot prune");
    }
}

async fn load(shared: &Shared, id: &str) -> ApiResult<Versioned<Review>> {
    shared
        .stored(documents::get::<Review>(&*shared.stores.policy, REVIEW, id).await)?
        .ok_or_else(|| {
            shared.refuse(Refusal::new(
                ErrorKind::NotFound,
                format!("review {id:?} does not exist (see `postern review ls`)"),
            ))
        })
}

/// Who may see a review: the person who asked, its approvers, auditors.
async fn may_see(shared: &Shared, principal: &Principal, review: &Review) -> bool {
    review.person == principal.name
        || principal.groups.contains(&review.approvers)
        || shared
            .authorize(
                principal,
                crate::access::Action::AuditRead,
                &review.connection,
            )
            .await
            .is_ok()
}

#[derive(Deserialize)]
struct NewReview {
    connection: String,
    #[serde(default)]
    reason: String,
}

async fn request_review(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(new): Json<NewReview>,
) -> ApiResult<(StatusCode, Json<Review>)> {
    let principal = user(&shared, &headers).await?;
    let Some(connection) = shared.connection(&new.connection).await? else {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!(
                "connection {:?} does not exist (see `postern ls`)",
                new.connection
            ),
        )));
    };
    if new.reason.len() > 1000 {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::BadRequest,
            "reason is longer than 1000 characters",
        )));
    }
    let snapshot = shared.policy_snapshot().await?;
    let (approvers, window_secs) = match decide_session(
        &principal,
        &connection.name,
        connection.kind,
        &snapshot,
        now_ms(),
    ) {
        SessionDecision::NeedsApproval {
            approvers,
            window_secs,
        } => (approvers, window_secs),
        SessionDecision::Allow { .. } => {
            return Err(shared.refuse(Refusal::new(
                ErrorKind::BadRequest,
                format!(
                    "you may already open sessions to {:?}: no review needed",
                    connection.name
                ),
            )));
        }
        // The rules come first: nobody asks approvers for what no rule allows.
        SessionDecision::Deny { reason } => {
            return Err(shared.refuse(Refusal::new(ErrorKind::Forbidden, reason)));
        }
        SessionDecision::NeedsMfa { reason } => {
            return Err(shared.refuse(Refusal::new(ErrorKind::MfaRequired, reason)));
        }
    };
    // One read of the reviews serves the clean-up and the pending check.
    let reviews = shared.stored(documents::list::<Review>(&*shared.stores.policy, REVIEW).await)?;
    prune(&shared, &reviews).await;
    if let Some(pending) = pending_in(&reviews, &principal.name, &connection.name) {
        return Ok((StatusCode::OK, Json(pending)));
    }
    let review = Review {
        id: format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        person: principal.name.clone(),
        connection: connection.name.clone(),
        reason: new.reason,
        approvers,
        window_secs,
        status: ReviewStatus::Pending,
        requested_at_ms: now_ms(),
        decided_by: None,
        decided_at_ms: None,
        comment: String::new(),
        expires_at_ms: None,
    };
    shared.stored(documents::put(&*shared.stores.policy, REVIEW, &review.id, &review, 0).await)?;
    shared
        .audit(
            &principal.name,
            "review.request",
            &review.connection,
            "ok",
            format!(
                "review={} approvers={} reason={:?}",
                review.id, review.approvers, review.reason
            ),
        )
        .await;
    shared
        .webhook
        .notify(webhook::Event::Requested(review.clone()));
    Ok((StatusCode::CREATED, Json(review)))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<ReviewStatus>,
}

async fn list_reviews(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Vec<Review>>> {
    let principal = user(&shared, &headers).await?;
    let reviews = shared.stored(documents::list::<Review>(&*shared.stores.policy, REVIEW).await)?;
    let mut visible = Vec::new();
    for review in reviews.into_iter().map(|r| r.value) {
        if query.status.is_none_or(|s| s == review.status)
            && may_see(&shared, &principal, &review).await
        {
            visible.push(review);
        }
    }
    visible.sort_by_key(|r| std::cmp::Reverse(r.requested_at_ms));
    Ok(Json(visible))
}

async fn show_review(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Review>> {
    let principal = user(&shared, &headers).await?;
    let review = load(&shared, &id).await?.value;
    if !may_see(&shared, &principal, &review).await {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("review {id:?} does not exist (see `postern review ls`)"),
        )));
    }
    Ok(Json(review))
}

#[derive(Deserialize, Default)]
struct Decision {
    #[serde(default)]
    comment: String,
}

async fn approve(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> ApiResult<Json<Review>> {
    decide(
        shared,
        headers,
        id,
        ReviewStatus::Approved,
        body.unwrap_or_default().0,
    )
    .await
}

async fn deny(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> ApiResult<Json<Review>> {
    decide(
        shared,
        headers,
        id,
        ReviewStatus::Denied,
        body.unwrap_or_default().0,
    )
    .await
}

async fn decide(
    shared: Arc<Shared>,
    headers: HeaderMap,
    id: String,
    outcome: ReviewStatus,
    decision: Decision,
) -> ApiResult<Json<Review>> {
    let principal = user(&shared, &headers).await?;
    let Versioned {
        value: mut review,
        version,
    } = load(&shared, &id).await?;
    if !principal.groups.contains(&review.approvers) {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::Forbidden,
            format!(
                "only members of group {} may decide review {id}; your groups: {}",
                review.approvers,
                if principal.groups.is_empty() {
                    "none".to_owned()
                } else {
                    principal.groups.join(", ")
                }
            ),
        )));
    }
    if review.person == principal.name {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::Forbidden,
            format!("review {id} is your own request: another approver must decide it"),
        )));
    }
    if review.status != ReviewStatus::Pending {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::Conflict,
            format!(
                "review {id} was already {} by {}",
                status_word(review.status),
                review.decided_by.as_deref().unwrap_or("?")
            ),
        )));
    }
    let now = now_ms();
    review.status = outcome;
    review.decided_by = Some(principal.name.clone());
    review.decided_at_ms = Some(now);
    review.comment = decision.comment.chars().take(1000).collect();
    if outcome == ReviewStatus::Approved {
        review.expires_at_ms = Some(now + (review.window_secs as i64) * 1000);
    }
    // Compare-and-set: of two approvers deciding at once, one wins and the
    // other is told the review changed.
    shared.stored(documents::put(&*shared.stores.policy, REVIEW, &id, &review, version).await)?;
    if let Some(expires_at_ms) = review.expires_at_ms {
        let grant = Grant {
            person: review.person.clone(),
            connection: review.connection.clone(),
            review_id: review.id.clone(),
            approved_by: principal.name.clone(),
            expires_at_ms,
        };
        shared.stored(documents::put(&*shared.stores.policy, GRANT, &id, &grant, 0).await)?;
        shared.policy_changed().await;
    }
    let action = match outcome {
        ReviewStatus::Approved => "review.approve",
        _ => "review.deny",
    };
    shared
        .audit(
            &principal.name,
            action,
            &review.connection,
            "ok",
            format!(
                "review={id} person={} comment={:?}",
                review.person, review.comment
            ),
        )
        .await;
    shared
        .webhook
        .notify(webhook::Event::Decided(review.clone()));
    Ok(Json(review))
}

fn status_word(status: ReviewStatus) -> &'static str {
    match status {
        ReviewStatus::Pending => "pending",
        ReviewStatus::Approved => "approved",
        ReviewStatus::Denied => "denied",
    }
}
