//! Items to and from the model: attribute helpers and the key layout the
//! [module documentation](super) describes.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;

use super::bad_item;
use crate::StoreResult;
use crate::model::*;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) const CONNECTION_PK: &str = "connection";
pub(crate) const AGENT_PK: &str = "agent";
pub(crate) const USER_TOKEN_PK: &str = "user_token";
/// The sort key of items alone in their partition.
pub(crate) const SINGLE_SK: &str = "-";
pub(crate) const SESSION_LIST: &str = "session";

pub(crate) fn agent_token_pk(token_hash: &str) -> String {
    format!("agent_token#{token_hash}")
}

pub(crate) fn session_pk(id: &str) -> String {
    format!("session#{id}")
}

pub(crate) fn audit_pk(shard: u64) -> String {
    format!("audit#{shard}")
}

/// Milliseconds as 20 zero-padded digits, so string order is time order.
pub(crate) fn time_key(ms: i64) -> String {
    format!("{:020}", ms.max(0))
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn put_opt(item: &mut Item, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), s(value));
    }
}

pub(crate) fn get_s(item: &Item, name: &str) -> StoreResult<String> {
    get_opt_s(item, name)?.ok_or_else(|| bad_item(format!("attribute {name:?} is missing")))
}

pub(crate) fn get_opt_s(item: &Item, name: &str) -> StoreResult<Option<String>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value.clone())),
        Some(_) => Err(bad_item(format!("attribute {name:?} is not a string"))),
    }
}

pub(crate) fn get_n<T: FromStr>(item: &Item, name: &str) -> StoreResult<T> {
    get_opt_n(item, name)?.ok_or_else(|| bad_item(format!("attribute {name:?} is missing")))
}

pub(crate) fn get_opt_n<T: FromStr>(item: &Item, name: &str) -> StoreResult<Option<T>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(value)) => value.parse().map(Some).map_err(|_| {
            bad_item(format!(
                "attribute {name:?} is not a {}",
                std::any::type_name::<T>()
            ))
        }),
        Some(_) => Err(bad_item(format!("attribute {name:?} is not a number"))),
    }
}

fn parse<T: FromStr<Err = String>>(field: &'static str, value: &str) -> StoreResult<T> {
    value
        .parse()
        .map_err(|reason| crate::StoreError::Invalid { field, reason })
}

pub(crate) fn connection_item(c: &Connection) -> Item {
    let mut item = key(CONNECTION_PK, &c.name);
    item.insert("kind".into(), s(c.kind.as_str()));
    item.insert("target".into(), s(&c.target));
    item.insert("agent".into(), s(&c.agent));
    item.insert("created_at_ms".into(), n(c.created_at_ms));
    item.insert("version".into(), n(1));
    put_opt(&mut item, "database", c.database.as_deref());
    put_opt(&mut item, "credential", c.credential.as_deref());
    put_opt(&mut item, "tls", c.tls.as_deref());
    if let Some(policy) = &c.policy {
        item.insert("policy".into(), s(policy.to_string()));
    }
    item
}

pub(crate) fn connection_from(item: &Item) -> StoreResult<Connection> {
    let policy = get_opt_s(item, "policy")?
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| crate::StoreError::Invalid {
            field: "connection policy",
            reason: e.to_string(),
        })?;
    Ok(Connection {
        name: get_s(item, "sk")?,
        kind: parse("connection kind", &get_s(item, "kind")?)?,
        target: get_s(item, "target")?,
        agent: get_s(item, "agent")?,
        created_at_ms: get_n(item, "created_at_ms")?,
        database: get_opt_s(item, "database")?,
        credential: get_opt_s(item, "credential")?,
        tls: get_opt_s(item, "tls")?,
        policy,
    })
}

pub(crate) fn agent_item(agent: &Agent) -> Item {
    let mut item = key(AGENT_PK, &agent.name);
    item.insert("token_hash".into(), s(&agent.token_hash));
    item.insert("created_at_ms".into(), n(agent.created_at_ms));
    item.insert("version".into(), n(1));
    item
}

pub(crate) fn agent_token_item(agent: &Agent) -> Item {
    let mut item = key(agent_token_pk(&agent.token_hash), SINGLE_SK);
    item.insert("name".into(), s(&agent.name));
    item.insert("created_at_ms".into(), n(agent.created_at_ms));
    item
}

pub(crate) fn agent_from(item: &Item) -> StoreResult<Agent> {
    Ok(Agent {
        name: get_s(item, "sk")?,
        token_hash: get_s(item, "token_hash")?,
        created_at_ms: get_n(item, "created_at_ms")?,
    })
}

pub(crate) fn user_token_item(token: &UserToken) -> Item {
    let mut item = key(USER_TOKEN_PK, &token.token_hash);
    item.insert("user".into(), s(&token.user));
    item.insert("role".into(), s(token.role.as_str()));
    item.insert("created_at_ms".into(), n(token.created_at_ms));
    if !token.groups.is_empty() {
        item.insert(
            "groups".into(),
            s(serde_json::Value::from(token.groups.clone()).to_string()),
        );
    }
    item
}

pub(crate) fn user_token_from(item: &Item) -> StoreResult<UserToken> {
    Ok(UserToken {
        user: get_s(item, "user")?,
        token_hash: get_s(item, "sk")?,
        role: parse("role", &get_s(item, "role")?)?,
        created_at_ms: get_n(item, "created_at_ms")?,
        groups: get_opt_s(item, "groups")?
            .map(|json| groups_from_json(&json))
            .transpose()?
            .unwrap_or_default(),
    })
}

pub(crate) fn session_item(record: &SessionRecord) -> Item {
    let mut item = key(session_pk(&record.id), SINGLE_SK);
    for (name, value) in [
        ("id", &record.id),
        ("user", &record.user),
        ("connection", &record.connection),
        ("agent", &record.agent),
        ("replica", &record.replica),
    ] {
        item.insert(name.into(), s(value));
    }
    item.insert("started_at_ms".into(), n(record.started_at_ms));
    item.insert("bytes_up".into(), n(record.bytes_up));
    item.insert("bytes_down".into(), n(record.bytes_down));
    if let Some(ended) = record.ended_at_ms {
        item.insert("ended_at_ms".into(), n(ended));
    }
    put_opt(&mut item, "outcome", record.outcome.as_deref());
    item.insert("session_list".into(), s(SESSION_LIST));
    item.insert(
        "session_start".into(),
        s(format!("{}#{}", time_key(record.started_at_ms), record.id)),
    );
    item
}

pub(crate) fn session_from(item: &Item) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id: get_s(item, "id")?,
        user: get_s(item, "user")?,
        connection: get_s(item, "connection")?,
        agent: get_s(item, "agent")?,
        replica: get_s(item, "replica")?,
        started_at_ms: get_n(item, "started_at_ms")?,
        ended_at_ms: get_opt_n(item, "ended_at_ms")?,
        bytes_up: get_n(item, "bytes_up")?,
        bytes_down: get_n(item, "bytes_down")?,
        outcome: get_opt_s(item, "outcome")?,
    })
}

/// `sort_key` orders the event among all others (time, then writer and counter).
pub(crate) fn audit_item(event: &AuditEvent, shard: u64, sort_key: &str) -> Item {
    let mut item = key(audit_pk(shard), sort_key);
    for (name, value) in [
        ("actor", &event.actor),
        ("action", &event.action),
        ("target", &event.target),
        ("outcome", &event.outcome),
        ("detail", &event.detail),
    ] {
        item.insert(name.into(), s(value));
    }
    // Index keys cannot be empty strings: such events are found by the shards.
    put_opt(
        &mut item,
        "audit_actor",
        Some(&event.actor)
            .filter(|v| !v.is_empty())
            .map(|v| v.as_str()),
    );
    put_opt(
        &mut item,
        "audit_target",
        Some(&event.target)
            .filter(|v| !v.is_empty())
            .map(|v| v.as_str()),
    );
    item.insert("at_ms".into(), n(event.at_ms));
    item.insert("audit_ts".into(), s(sort_key));
    if let Some(session) = &event.session_id {
        item.insert("session_id".into(), s(session));
        if !session.is_empty() {
            item.insert("audit_session".into(), s(session));
        }
    }
    item
}

pub(crate) fn audit_from(item: &Item) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        at_ms: get_n(item, "at_ms")?,
        actor: get_s(item, "actor")?,
        action: get_s(item, "action")?,
        target: get_s(item, "target")?,
        outcome: get_s(item, "outcome")?,
        detail: get_s(item, "detail")?,
        session_id: get_opt_s(item, "session_id")?,
    })
}
