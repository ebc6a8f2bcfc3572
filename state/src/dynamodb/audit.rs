//! [`AuditSink`] on DynamoDB: events spread over [`AUDIT_SHARDS`] partitions,
//! read through the most selective index or from every shard, newest first.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};

use super::items::*;
use super::{AUDIT_SHARDS, DynamoStore, build_error, sdk_error};
use crate::model::*;
use crate::{AuditSink, StoreError, StoreResult};

/// Items evaluated per page when a filter may drop most of them.
const FILTERED_PAGE: i32 = 200;

impl DynamoStore {
    /// Reads newest first through `query` (key condition set) until `limit`
    /// events passed the filter or the range is exhausted; returns them with
    /// their sort keys.
    async fn collect(
        &self,
        query: QueryFluentBuilder,
        filtered: bool,
        limit: usize,
    ) -> StoreResult<Vec<(String, AuditEvent)>> {
        let mut events = Vec::new();
        let mut start = None;
        while events.len() < limit {
            let page = if filtered {
                FILTERED_PAGE
            } else {
                (limit - events.len()).min(1000) as i32
            };
            let output = query
                .clone()
                .scan_index_forward(false)
                .limit(page)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in output.items.unwrap_or_default() {
                events.push((get_s(&item, "audit_ts")?, audit_from(&item)?));
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        events.truncate(limit);
        Ok(events)
    }
}

/// A filter expression over the conditions not served by the key.
fn with_filters(
    mut query: QueryFluentBuilder,
    conditions: &[(&str, &str, &Option<String>)],
    action_prefix: &Option<String>,
) -> (QueryFluentBuilder, bool) {
    let mut clauses = Vec::new();
    for (attribute, placeholder, value) in conditions {
        if let Some(value) = value {
            clauses.push(format!("{attribute} = {placeholder}"));
            query = query.expression_attribute_values(*placeholder, s(value));
        }
    }
    if let Some(prefix) = action_prefix.as_ref().filter(|p| !p.is_empty()) {
        clauses.push("begins_with(#action, :prefix)".into());
        query = query
            .expression_attribute_names("#action", "action")
            .expression_attribute_values(":prefix", s(prefix));
    }
    if clauses.is_empty() {
        (query, false)
    } else {
        (query.filter_expression(clauses.join(" AND ")), true)
    }
}

/// BatchWriteItem takes at most 25 items; what it leaves unprocessed
/// (throttling) is sent again, this many times, backing off.
const BATCH_ITEMS: usize = 25;
const BATCH_ATTEMPTS: u32 = 8;

#[derive(Debug, thiserror::Error)]
#[error("DynamoDB left {0} audit events unwritten after {BATCH_ATTEMPTS} tries")]
struct Unprocessed(usize);

impl DynamoStore {
    /// The event's item, under a sort key unique to this writer and in the
    /// order events are recorded.
    fn next_audit_item(&self, event: &AuditEvent) -> Item {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let sort_key = format!("{}#{:08x}#{count:012}", time_key(event.at_ms), self.writer);
        audit_item(event, count % AUDIT_SHARDS, &sort_key)
    }
}

#[async_trait]
impl AuditSink for DynamoStore {
    async fn record(&self, event: &AuditEvent) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.next_audit_item(event)))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// BatchWriteItem, 25 events a request (statement audit comes in bursts).
    async fn record_batch(&self, events: &[AuditEvent]) -> StoreResult<()> {
        for chunk in events.chunks(BATCH_ITEMS) {
            let mut requests = chunk
                .iter()
                .map(|event| {
                    let put = PutRequest::builder()
                        .set_item(Some(self.next_audit_item(event)))
                        .build()
                        .map_err(build_error)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<StoreResult<Vec<_>>>()?;
            for attempt in 1.. {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                requests = output
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt >= BATCH_ATTEMPTS {
                    return Err(StoreError::Unavailable(Box::new(Unprocessed(
                        requests.len(),
                    ))));
                }
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
            }
        }
        Ok(())
    }

    async fn events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        let limit = q.limit as usize;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let base = || self.client.query().table_name(&self.table);
        let non_empty = |v: &Option<String>| v.as_ref().is_some_and(|v| !v.is_empty());
        // (index, its partition attribute, the value) for the most selective filter.
        let index = if non_empty(&q.session_id) {
            Some(("by_session", "audit_session", &q.session_id))
        } else if non_empty(&q.actor) {
            Some(("by_actor", "audit_actor", &q.actor))
        } else if non_empty(&q.target) {
            Some(("by_target", "audit_target", &q.target))
        } else {
            None
        };
        // Sort keys start with the time: a time range narrows the key itself.
        let range = (q.since_ms.is_some() || q.until_ms.is_some()).then(|| {
            let from = time_key(q.since_ms.unwrap_or(0));
            // Exclusive: `<until>#…` sorts after the bare `<until>`.
            let to = q.until_ms.map_or_else(|| "~".to_owned(), time_key);
            (from, to)
        });
        let with_range =
            |query: QueryFluentBuilder, sort_attribute: &str, partition: String| match &range {
                None => query.key_condition_expression(partition),
                Some((from, to)) => query
                    .key_condition_expression(format!(
                        "{partition} AND {sort_attribute} BETWEEN :from AND :to"
                    ))
                    .expression_attribute_values(":from", s(from.clone()))
                    .expression_attribute_values(":to", s(to.clone())),
            };
        let rest = |skip: &str| -> Vec<(&str, &str, &Option<String>)> {
            [
                ("session_id", ":session", &q.session_id),
                ("actor", ":actor", &q.actor),
                ("target", ":target", &q.target),
            ]
            .into_iter()
            .filter(|(attribute, _, _)| *attribute != skip)
            .collect()
        };
        let mut events = match index {
            Some((index, attribute, value)) => {
                let skip = match attribute {
                    "audit_session" => "session_id",
                    "audit_actor" => "actor",
                    _ => "target",
                };
                let query = with_range(
                    base().index_name(index),
                    "audit_ts",
                    format!("{attribute} = :key"),
                )
                .expression_attribute_values(":key", s(value.clone().unwrap_or_default()));
                let (query, filtered) = with_filters(query, &rest(skip), &q.action_prefix);
                self.collect(query, filtered, limit).await?
            }
            None => {
                let shards = (0..AUDIT_SHARDS).map(|shard| {
                    let query = with_range(base().consistent_read(true), "sk", "pk = :pk".into())
                        .expression_attribute_values(":pk", s(audit_pk(shard)));
                    let (query, filtered) = with_filters(query, &rest(""), &q.action_prefix);
                    self.collect(query, filtered, limit)
                });
                futures::future::try_join_all(shards)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect()
            }
        };
        events.sort_by(|a, b| b.0.cmp(&a.0));
        events.truncate(limit);
        Ok(events.into_iter().map(|(_, event)| event).collect())
    }
}
