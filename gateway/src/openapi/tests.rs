//! The document is OpenAPI 3.1 in shape, and documents exactly the routes
//! the public router serves (read from the source of every router).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::DOCUMENT;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// Served on the internal port only (metrics), not part of the public API.
const INTERNAL_ONLY: &[(&str, &str)] = &[("GET", "/metrics")];

/// Documented ahead of the branch that routes them; once routed, they are
/// checked like any other: delete the entry then.
const NOT_ROUTED_YET: &[(&str, &str)] = &[];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// `(METHOD, path)` of every `.route("path", get(..).post(..))` in `source`.
fn routes_in(source: &str) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let call = &rest[..closing_paren(rest)];
        let Some(path) = call
            .trim_start()
            .strip_prefix('"')
            .and_then(|s| s.split('"').next())
        else {
            panic!("a route whose path is not a literal: {call}");
        };
        let after_path = &call[call.find(&format!("\"{path}\"")).unwrap() + path.len() + 2..];
        let mut found = false;
        for method in METHODS {
            let mut text = after_path;
            while let Some(i) = text.find(&format!("{method}(")) {
                let before = text[..i].chars().next_back();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                    routes.push((method.to_uppercase(), path.to_owned()));
                    found = true;
                }
                text = &text[i + method.len()..];
            }
        }
        assert!(found, "route {path:?} with no method: {call}");
    }
    routes
}

/// Where the call that `text` is the inside of ends.
fn closing_paren(text: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return i,
            ')' => depth -= 1,
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {text}");
}

fn rust_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn routed() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut routes = BTreeSet::new();
    for file in files {
        if file.ends_with("openapi/tests.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        routes.extend(routes_in(&source));
    }
    for internal in INTERNAL_ONLY {
        assert!(
            routes.remove(&(internal.0.to_owned(), internal.1.to_owned())),
            "{internal:?} is no longer routed: drop it from INTERNAL_ONLY"
        );
    }
    routes
}

#[test]
fn the_route_reader_reads_router_code() {
    let source = r#"
        Router::new()
            .route("/a", get(list).post(create))
            .route(
                "/a/{name}",
                get(show).put(crate::x::put_it).delete(delete_a),
            )
            .route_service("/grpc/{*rest}", service)
            .route("/b", post(forget(x)))
    "#;
    let routes: Vec<(String, String)> = routes_in(source);
    let expect = [
        ("GET", "/a"),
        ("POST", "/a"),
        ("GET", "/a/{name}"),
        ("PUT", "/a/{name}"),
        ("DELETE", "/a/{name}"),
        ("POST", "/b"),
    ];
    let mut sorted = routes.clone();
    sorted.sort();
    let mut expect: Vec<(String, String)> = expect
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expect.sort();
    assert_eq!(sorted, expect);
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let documented = documented(&document());
    let routed = routed();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from gateway/src/openapi.json: {undocumented:?}"
    );
    let pending: BTreeSet<(String, String)> = NOT_ROUTED_YET
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let stale: Vec<_> = documented
        .difference(&routed)
        .filter(|route| !pending.contains(*route))
        .collect();
    assert!(stale.is_empty(), "documented but not routed: {stale:?}");
    assert!(routed.contains(&("GET".into(), "/v1/openapi.json".into())));
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                out.push(target);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_openapi_3_1_in_shape() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&bearer["type"], &bearer["scheme"]),
        (&"http".into(), &"bearer".into())
    );
    assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    assert_eq!(
        error["properties"]["error"]["required"],
        serde_json::json!(["code", "message"])
    );

    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{path}");
        let shared_params = item.get("parameters").cloned().unwrap_or_default();
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(
                operation_ids.insert(id.to_owned()),
                "duplicate operationId {id}"
            );
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}: no responses");
            for (status, response) in responses {
                assert!(
                    status.len() == 3 && status.parse::<u16>().is_ok(),
                    "{method} {path}: status {status}"
                );
                assert!(
                    response.get("$ref").is_some() || response["description"].is_string(),
                    "{method} {path} {status}: responses need a description"
                );
            }
            // Every `{param}` in the path is declared as a path parameter.
            let declared: BTreeSet<&str> = shared_params
                .as_array()
                .into_iter()
                .chain(operation["parameters"].as_array())
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{path}: path parameters are required");
                    p["name"].as_str().unwrap()
                })
                .collect();
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, in_path, "{method} {path}");
            let public = operation.get("security") == Some(&serde_json::json!([]));
            if !public {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path}: authenticated operations document 401"
                );
            }
        }
    }
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let pointer = target.strip_prefix('#').expect("local references only");
        assert!(doc.pointer(pointer).is_some(), "unresolved $ref {target}");
    }
}
