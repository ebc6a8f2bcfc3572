//! Requests the JSON API's extractors refuse (a body that is not JSON, a
//! missing field, a bad query string) are answered by axum in plain text;
//! this turns those answers into the API's own error body, and counts them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::metrics::ErrorKind;
use crate::refusal::Refusal;
use crate::shared::Shared;

/// Longest rejection text kept (axum's are a line or two).
const MAX_REJECTION: usize = 16 * 1024;

pub async fn json_rejections(State(shared): State<Arc<Shared>>, response: Response) -> Response {
    let status = response.status();
    let is_rejection = status.is_client_error()
        && !response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
    if !is_rejection {
        return response;
    }
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorKind::Forbidden,
        _ => ErrorKind::BadRequest,
    };
    let text = match axum::body::to_bytes(response.into_body(), MAX_REJECTION).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned()
    } else {
        text
    };
    let refusal = shared.refuse(Refusal::new(kind, message));
    let mut answer = refusal.into_response();
    // Keep the status axum chose (415, 413, 422...), in the API's body.
    *answer.status_mut() = status;
    answer
}
