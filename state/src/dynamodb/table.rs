//! The table and its indexes: checked at start, created when asked to.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus,
};

use super::{DynamoError, build_error, sdk_error};
use crate::{StoreError, StoreResult};

/// `(index, partition attribute, sort attribute)`; see the module documentation.
pub(crate) const INDEXES: [(&str, &str, &str); 4] = [
    ("by_start", "session_list", "session_start"),
    ("by_actor", "audit_actor", "audit_ts"),
    ("by_session", "audit_session", "audit_ts"),
    ("by_target", "audit_target", "audit_ts"),
];

const ACTIVE_DEADLINE: Duration = Duration::from_secs(120);

fn key_element(name: &str, key_type: KeyType) -> StoreResult<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(build_error)
}

async fn create(client: &Client, table: &str) -> StoreResult<()> {
    let mut attributes = vec!["pk", "sk"];
    for (_, partition, sort) in INDEXES {
        for name in [partition, sort] {
            if !attributes.contains(&name) {
                attributes.push(name);
            }
        }
    }
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key_element("pk", KeyType::Hash)?)
        .key_schema(key_element("sk", KeyType::Range)?);
    for name in attributes {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)?,
        );
    }
    for (index, partition, sort) in INDEXES {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .key_schema(key_element(partition, KeyType::Hash)?)
                .key_schema(key_element(sort, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(build_error)?,
        );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        // Another replica created it first.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(err) => Err(sdk_error(err)),
    }
}

/// Waits until the table and every index are active, creating the table
/// first when it is missing and `create` is set.
pub(crate) async fn ensure(client: &Client, table: &str, create_missing: bool) -> StoreResult<()> {
    let deadline = tokio::time::Instant::now() + ACTIVE_DEADLINE;
    let mut created = false;
    loop {
        match client.describe_table().table_name(table).send().await {
            Ok(described) => {
                let description = described.table();
                let active =
                    description.and_then(|t| t.table_status()) == Some(&TableStatus::Active);
                let indexes = description
                    .map(|t| t.global_secondary_indexes())
                    .unwrap_or_default();
                let missing: Vec<&str> = INDEXES
                    .iter()
                    .map(|(name, _, _)| *name)
                    .filter(|name| !indexes.iter().any(|i| i.index_name() == Some(*name)))
                    .collect();
                if !missing.is_empty() {
                    return Err(StoreError::Backend(Box::new(DynamoError(format!(
                        "table {table:?} lacks the indexes {missing:?} (see the table design in the README)"
                    )))));
                }
                let indexes_active = indexes
                    .iter()
                    .all(|i| i.index_status().is_none_or(|s| *s == IndexStatus::Active));
                if active && indexes_active {
                    return Ok(());
                }
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                if !create_missing {
                    return Err(StoreError::Backend(Box::new(DynamoError(format!(
                        "table {table:?} does not exist: create it (see the table design in the README) \
                         or let the store create it (create_table=true)"
                    )))));
                }
                if !created {
                    create(client, table).await?;
                    created = true;
                    continue;
                }
            }
            Err(err) => return Err(sdk_error(err)),
        }
        if tokio::time::Instant::now() > deadline {
            return Err(StoreError::Unavailable(Box::new(DynamoError(format!(
                "table {table:?} is not active after {ACTIVE_DEADLINE:?}"
            )))));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
