//! The gateway serves its OpenAPI document without a token, and its errors
//! have the documented shape.

use std::sync::Arc;

use postern_gateway::{GatewayOptions, Settings, Stores};
use postern_state::memory::MemoryRouteStore;
use postern_state::sqlite::SqliteStore;

#[tokio::test]
async fn the_openapi_document_is_served_unauthenticated() {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let gateway = postern_gateway::start(
        GatewayOptions {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            internal_addr: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            replica_id: "gw-openapi".into(),
            settings: Settings::default(),
            peer: None,
            oidc: None,
        },
        Stores {
            policy: store.clone(),
            audit: store,
            routes: Arc::new(MemoryRouteStore::new()),
        },
    )
    .await
    .unwrap();
    let response = postern_testkit::http_get(gateway.public_addr, "/v1/openapi.json").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(body, postern_gateway::openapi::DOCUMENT);

    // A documented error, in the documented shape.
    let response = postern_testkit::http_get(gateway.public_addr, "/v1/rules").await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let error: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(error["error"]["code"], "unauthenticated", "{error}");
    assert!(error["error"]["message"].is_string());
    gateway.kill().await;
}
