//! `GET /v1/openapi.json` (unauthenticated): the OpenAPI 3.1 document of the
//! HTTP/JSON API, kept by hand in `openapi.json` beside this file. A test
//! reads the routers' source and fails when a route is added, removed or
//! changes methods without the document following.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests;
