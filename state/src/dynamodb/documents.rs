//! Versioned documents on DynamoDB: one item per document under `doc#<kind>`,
//! written on the condition that `version` is the one the writer read.

use aws_sdk_dynamodb::types::AttributeValue;

use super::items::*;
use super::{DynamoStore, bad_item, sdk_error};
use crate::cas::lost_write;
use crate::model::{Document, now_ms, validate_document_key};
use crate::{StoreError, StoreResult};

pub(crate) fn document_pk(kind: &str) -> String {
    format!("doc#{kind}")
}

fn document_from(kind: &str, item: &Item) -> StoreResult<Document> {
    let body = get_s(item, "body")?;
    Ok(Document {
        kind: kind.to_owned(),
        key: get_s(item, "sk")?,
        version: get_n(item, "version")?,
        body: serde_json::from_str(&body)
            .map_err(|e| bad_item(format!("document body is not JSON: {e}")))?,
        updated_at_ms: get_n(item, "updated_at_ms")?,
    })
}

fn condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    pub(super) async fn get_document(
        &self,
        kind: &str,
        key: &str,
    ) -> StoreResult<Option<Document>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(super::items::key(document_pk(kind), key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        output
            .item
            .as_ref()
            .map(|item| document_from(kind, item))
            .transpose()
    }

    pub(super) async fn list_documents(&self, kind: &str) -> StoreResult<Vec<Document>> {
        let mut documents = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(document_pk(kind)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in output.items.unwrap_or_default() {
                documents.push(document_from(kind, &item)?);
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(documents);
            }
        }
    }

    async fn conflict(&self, kind: &str, key: &str, expected: u64) -> StoreError {
        lost_write(kind, key, expected, self.get_document(kind, key).await)
    }

    pub(super) async fn put_document_item(
        &self,
        kind: &str,
        key: &str,
        body: &serde_json::Value,
        expected: u64,
    ) -> StoreResult<u64> {
        validate_document_key("document kind", kind)?;
        validate_document_key("document key", key)?;
        let mut item = super::items::key(document_pk(kind), key);
        item.insert("version".into(), n(expected + 1));
        item.insert("body".into(), s(body.to_string()));
        item.insert("updated_at_ms".into(), n(now_ms()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = if expected == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(expected))
        };
        match put.send().await {
            Ok(_) => Ok(expected + 1),
            Err(err) if err.as_service_error().is_some_and(condition_failed) => {
                Err(self.conflict(kind, key, expected).await)
            }
            Err(err) => Err(sdk_error(err)),
        }
    }

    pub(super) async fn delete_document_item(
        &self,
        kind: &str,
        key: &str,
        expected: u64,
    ) -> StoreResult<bool> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(super::items::key(document_pk(kind), key)))
            .condition_expression("attribute_not_exists(pk) OR version = :expected")
            .expression_attribute_values(":expected", n(expected))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(output.attributes.is_some_and(
                |old: std::collections::HashMap<String, AttributeValue>| !old.is_empty(),
            )),
            Err(err) if err.as_service_error().is_some_and(condition_failed) => {
                Err(self.conflict(kind, key, expected).await)
            }
            Err(err) => Err(sdk_error(err)),
        }
    }
}
