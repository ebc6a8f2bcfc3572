//! [`PolicyStore`] on DynamoDB: conditional writes for every create, one
//! transaction for an agent and its token.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, TransactWriteItem};

use super::items::*;
use super::{DynamoStore, build_error, sdk_error};
use crate::model::*;
use crate::{PolicyStore, StoreError, StoreResult};

const NOT_EXISTS: &str = "attribute_not_exists(pk)";
/// Transactions that collide with another on the same items are retried this often.
const TRANSACTION_ATTEMPTS: u32 = 8;

/// How a write transaction ended.
enum Transaction {
    Done,
    /// Cancelled because one of the items' conditions failed.
    ConditionFailed,
}

impl DynamoStore {
    async fn get(&self, pk: String, sk: &str) -> StoreResult<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(output.item)
    }

    /// Every item of one partition, in sort key order, strongly consistent.
    async fn partition(&self, pk: &str) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            items.extend(output.items.unwrap_or_default());
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    async fn put_new(&self, item: Item, kind: &'static str, name: &str) -> StoreResult<()> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(NOT_EXISTS)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::AlreadyExists {
                    kind,
                    name: name.to_owned(),
                })
            }
            Err(err) => Err(sdk_error(err)),
        }
    }

    /// Runs a write transaction, retrying collisions with concurrent ones.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> StoreResult<Transaction> {
        for attempt in 1.. {
            let err = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
            {
                Ok(_) => return Ok(Transaction::Done),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                err.as_service_error()
            else {
                return Err(sdk_error(err));
            };
            let codes: Vec<&str> = cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None"))
                .collect();
            if codes.contains(&"ConditionalCheckFailed") {
                return Ok(Transaction::ConditionFailed);
            }
            if attempt >= TRANSACTION_ATTEMPTS {
                return Err(sdk_error(err));
            }
            // TransactionConflict: another transaction holds one of the items.
            tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
        }
        unreachable!("the loop returns")
    }

    fn put(&self, item: Item) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(NOT_EXISTS)
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete(&self, key: Item, condition: Option<(&str, &str)>) -> StoreResult<TransactWriteItem> {
        let mut delete = Delete::builder().table_name(&self.table).set_key(Some(key));
        if let Some((expression, value)) = condition {
            delete = delete
                .condition_expression(expression)
                .expression_attribute_values(":v", s(value));
        }
        Ok(TransactWriteItem::builder()
            .delete(delete.build().map_err(build_error)?)
            .build())
    }
}

#[async_trait]
impl PolicyStore for DynamoStore {
    async fn create_connection(&self, c: &Connection) -> StoreResult<()> {
        validate_name("connection name", &c.name)?;
        validate_name("agent name", &c.agent)?;
        self.put_new(connection_item(c), "connection", &c.name)
            .await
    }

    async fn connection(&self, name: &str) -> StoreResult<Option<Connection>> {
        self.get(CONNECTION_PK.into(), name)
            .await?
            .as_ref()
            .map(connection_from)
            .transpose()
    }

    async fn connections(&self) -> StoreResult<Vec<Connection>> {
        self.partition(CONNECTION_PK)
            .await?
            .iter()
            .map(connection_from)
            .collect()
    }

    async fn delete_connection(&self, name: &str) -> StoreResult<bool> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(CONNECTION_PK, name)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(output.attributes.is_some_and(|old| !old.is_empty()))
    }

    async fn create_agent(&self, agent: &Agent) -> StoreResult<()> {
        validate_name("agent name", &agent.name)?;
        let items = vec![
            self.put(agent_item(agent))?,
            self.put(agent_token_item(agent))?,
        ];
        match self.transact(items).await? {
            Transaction::Done => Ok(()),
            // The name is taken, or the token hash is (SQL stores say the same).
            Transaction::ConditionFailed => Err(StoreError::AlreadyExists {
                kind: "agent",
                name: agent.name.clone(),
            }),
        }
    }

    async fn agent_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<Agent>> {
        let Some(item) = self.get(agent_token_pk(token_hash), SINGLE_SK).await? else {
            return Ok(None);
        };
        Ok(Some(Agent {
            name: get_s(&item, "name")?,
            token_hash: token_hash.to_owned(),
            created_at_ms: get_n(&item, "created_at_ms")?,
        }))
    }

    async fn agents(&self) -> StoreResult<Vec<Agent>> {
        self.partition(AGENT_PK)
            .await?
            .iter()
            .map(agent_from)
            .collect()
    }

    async fn delete_agent(&self, name: &str) -> StoreResult<bool> {
        // The agent's token hash names the second item; if the agent changes
        // between the read and the delete, read again.
        for _ in 0..TRANSACTION_ATTEMPTS {
            let Some(item) = self.get(AGENT_PK.into(), name).await? else {
                return Ok(false);
            };
            let token_hash = get_s(&item, "token_hash")?;
            let items = vec![
                self.delete(
                    key(AGENT_PK, name),
                    Some(("token_hash = :v", token_hash.as_str())),
                )?,
                self.delete(key(agent_token_pk(&token_hash), SINGLE_SK), None)?,
            ];
            if let Transaction::Done = self.transact(items).await? {
                return Ok(true);
            }
        }
        Err(StoreError::Backend(Box::new(super::DynamoError(format!(
            "agent {name:?} kept changing while being deleted"
        )))))
    }

    async fn create_user_token(&self, token: &UserToken) -> StoreResult<()> {
        validate_name("user name", &token.user)?;
        for group in &token.groups {
            validate_group(group)?;
        }
        self.put_new(user_token_item(token), "token", &token.user)
            .await
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<UserToken>> {
        self.get(USER_TOKEN_PK.into(), token_hash)
            .await?
            .as_ref()
            .map(user_token_from)
            .transpose()
    }

    async fn user_tokens(&self) -> StoreResult<Vec<UserToken>> {
        let mut tokens = self
            .partition(USER_TOKEN_PK)
            .await?
            .iter()
            .map(user_token_from)
            .collect::<StoreResult<Vec<_>>>()?;
        tokens.sort_by(|a, b| {
            (&a.user, a.created_at_ms, &a.token_hash).cmp(&(
                &b.user,
                b.created_at_ms,
                &b.token_hash,
            ))
        });
        Ok(tokens)
    }

    async fn record_session_start(&self, session: &SessionRecord) -> StoreResult<()> {
        self.put_new(session_item(session), "session", &session.id)
            .await
    }

    async fn record_session_end(&self, end: &SessionEnd) -> StoreResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(session_pk(&end.id), SINGLE_SK)))
            .update_expression(
                "SET ended_at_ms = :ended, bytes_up = :up, bytes_down = :down, outcome = :outcome",
            )
            // An unknown session is not created from its end alone.
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":ended", n(end.ended_at_ms))
            .expression_attribute_values(":up", n(end.bytes_up))
            .expression_attribute_values(":down", n(end.bytes_down))
            .expression_attribute_values(":outcome", s(&end.outcome))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn sessions(&self, limit: u32) -> StoreResult<Vec<SessionRecord>> {
        let mut sessions = Vec::new();
        let mut start: Option<Item> = None;
        while sessions.len() < limit as usize {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("by_start")
                .key_condition_expression("session_list = :list")
                .expression_attribute_values(":list", AttributeValue::S(SESSION_LIST.into()))
                .scan_index_forward(false)
                .limit((limit as usize - sessions.len()).min(1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in output.items.unwrap_or_default() {
                sessions.push(session_from(&item)?);
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        sessions.truncate(limit as usize);
        Ok(sessions)
    }

    async fn document(&self, kind: &str, key: &str) -> StoreResult<Option<Document>> {
        self.get_document(kind, key).await
    }

    async fn documents(&self, kind: &str) -> StoreResult<Vec<Document>> {
        self.list_documents(kind).await
    }

    async fn put_document(
        &self,
        kind: &str,
        key: &str,
        body: &serde_json::Value,
        expected: u64,
    ) -> StoreResult<u64> {
        self.put_document_item(kind, key, body, expected).await
    }

    async fn delete_document(&self, kind: &str, key: &str, expected: u64) -> StoreResult<bool> {
        self.delete_document_item(kind, key, expected).await
    }
}
