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
