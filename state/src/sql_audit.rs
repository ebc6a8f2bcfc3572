//! The audit INSERT both SQL stores (SQLite and Postgres) write.

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::AuditEvent;

/// Rows one INSERT carries at most: 7 parameters a row, so 512 rows bind
/// 3,584, under SQLite's 32,766 and Postgres's 65,535.
pub(crate) const ROWS_PER_INSERT: usize = 512;

/// One multi-row INSERT of `events` (at most [`ROWS_PER_INSERT`]) into
/// `audit_events`: one round trip to the database for a whole batch.
pub(crate) fn insert<DB>(events: &[AuditEvent]) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> &'a String: Encode<'a, DB> + Type<DB>,
    for<'a> &'a Option<String>: Encode<'a, DB> + Type<DB>,
{
    debug_assert!(events.len() <= ROWS_PER_INSERT);
    let mut insert = QueryBuilder::new(
        "INSERT INTO audit_events (at_ms, actor, action, target, outcome, detail, session_id) ",
    );
    insert.push_values(events, |mut row, e| {
        row.push_bind(e.at_ms)
            .push_bind(&e.actor)
            .push_bind(&e.action)
            .push_bind(&e.target)
            .push_bind(&e.outcome)
            .push_bind(&e.detail)
            .push_bind(&e.session_id);
    });
    insert
}

/// Writes `events` in one transaction, one INSERT per [`ROWS_PER_INSERT`]:
/// one round trip per chunk (to the database, and for SQLite to its worker
/// thread), not one per event.
pub(crate) async fn write_batch<DB>(
    pool: &sqlx::Pool<DB>,
    events: &[AuditEvent],
) -> Result<(), sqlx::Error>
where
    DB: Database,
    DB::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> &'a String: Encode<'a, DB> + Type<DB>,
    for<'a> &'a Option<String>: Encode<'a, DB> + Type<DB>,
{
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for chunk in events.chunks(ROWS_PER_INSERT) {
        insert::<DB>(chunk).build().execute(&mut *tx).await?;
    }
    tx.commit().await
}
