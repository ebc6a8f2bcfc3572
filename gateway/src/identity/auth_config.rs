//! `GET /v1/auth/config` (unauthenticated): how the CLI logs in to this
//! gateway. `{"oidc": null}` means API tokens only.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::shared::Shared;

pub async fn auth_config(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(describe(shared.oidc.as_deref().map(|v| v.config())))
}

pub fn describe(oidc: Option<&super::oidc::OidcConfig>) -> Value {
    match oidc {
        None => json!({ "oidc": null }),
        Some(config) => json!({
            "oidc": {
                "issuer": config.issuer,
                "client_id": config.client_id,
                "scopes": config.scopes,
                "audience": config.audience,
                "mfa_acr": config.mfa_acr,
            }
        }),
    }
}
