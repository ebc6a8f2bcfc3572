//! Turns the session's events into the statement audit the gateway records
//! (who is not said here: only the gateway's ingress knows the person).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use postern_l7_pg::session::{Event, Outcome, StatementStarted};
use postern_tunnel::proto::StatementAudit;

/// Outcomes the gateway knows besides ok, error and blocked.
pub const OUTCOME_SKIPPED: &str = "skipped";
pub const OUTCOME_PROTOCOL_ERROR: &str = "protocol_error";

struct Started {
    sql: Arc<str>,
    parameters: usize,
    values: Vec<String>,
    at: Instant,
}

#[derive(Default)]
pub struct AuditTrail {
    started: HashMap<u64, Started>,
}

fn printable(value: &Option<Bytes>) -> String {
    match value {
        None => "NULL".into(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => format!("\\x{}", hex(bytes)),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl AuditTrail {
    /// What to report for `event`, if anything; `masked` gives the columns
    /// masked in a finished statement's results.
    pub fn on_event(
        &mut self,
        event: Event,
        masked: impl FnOnce(u64) -> Vec<String>,
    ) -> Option<StatementAudit> {
        match event {
            Event::StatementStarted(StatementStarted {
                id,
                sql,
                parameter_count,
                parameters,
                ..
            }) => {
                let values = parameters
                    .map(|values| values.iter().map(printable).collect())
                    .unwrap_or_default();
                self.started.insert(
                    id,
                    Started {
                        sql,
                        parameters: parameter_count,
                        values,
                        at: Instant::now(),
                    },
                );
                None
            }
            Event::StatementFinished(finished) => {
                let started = self.started.remove(&finished.id)?;
                let mut audit = StatementAudit {
                    statement: started.sql.to_string(),
                    parameters: started.parameters as u32,
                    parameter_values: started.values,
                    rows: finished.rows,
                    duration_us: started.at.elapsed().as_micros() as u64,
                    masked_columns: masked(finished.id),
                    ..Default::default()
                };
                match finished.outcome {
                    Outcome::Ok | Outcome::Suspended => audit.outcome = "ok".into(),
                    Outcome::Error { code, message } => {
                        audit.outcome = "error".into();
                        audit.error_code = code;
                        audit.error_message = message;
                    }
                    Outcome::Blocked { rule, reason } => {
                        audit.outcome = "blocked".into();
                        audit.error_code = postern_l7_sql::BLOCKED_SQLSTATE.into();
                        audit.error_message = reason;
                        audit.rule = rule;
                    }
                    Outcome::Skipped => {
                        audit.outcome = OUTCOME_SKIPPED.into();
                        audit.error_message =
                            "not run: an earlier statement in the same batch failed".into();
                    }
                }
                Some(audit)
            }
            Event::ServerError { code, message } => Some(StatementAudit {
                outcome: "error".into(),
                error_code: code,
                error_message: message,
                ..Default::default()
            }),
            _ => None,
        }
    }

    /// Statements still running when the session ends, oldest first.
    pub fn unfinished(&mut self, reason: &str) -> Vec<StatementAudit> {
        let mut left: Vec<(u64, Started)> = self.started.drain().collect();
        left.sort_by_key(|(id, _)| *id);
        left.into_iter()
            .map(|(_, started)| StatementAudit {
                statement: started.sql.to_string(),
                parameters: started.parameters as u32,
                parameter_values: started.values,
                outcome: "error".into(),
                error_message: reason.to_owned(),
                duration_us: started.at.elapsed().as_micros() as u64,
                ..Default::default()
            })
            .collect()
    }
}

/// The audit of a malformed or oversized message that ended the session.
pub fn protocol_error(side: &str, message: &str) -> StatementAudit {
    StatementAudit {
        outcome: OUTCOME_PROTOCOL_ERROR.into(),
        error_code: "08P01".into(),
        error_message: format!("{side}: {message}"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_l7_pg::session::{Protocol, StatementFinished};

    #[test]
    fn a_statement_is_reported_when_it_finishes() {
        let mut trail = AuditTrail::default();
        let started = Event::StatementStarted(StatementStarted {
            id: 4,
            protocol: Protocol::Extended,
            sql: Arc::from("SELECT * FROM users WHERE id = $1"),
            statement_name: Some(String::new()),
            portal: Some(String::new()),
            parameter_count: 1,
            parameters: Some(vec![Some(Bytes::from_static(&[0xff, 0x01])), None]),
        });
        assert_eq!(trail.on_event(started, |_| unreachable!()), None);
        let finished = Event::StatementFinished(StatementFinished {
            id: 4,
            outcome: Outcome::Blocked {
                rule: "deny_table".into(),
                reason: "users".into(),
            },
            rows: 0,
            tags: vec![],
            rewritten_rows: 0,
        });
        let audit = trail
            .on_event(finished, |id| vec![format!("col{id}")])
            .unwrap();
        assert_eq!(audit.statement, "SELECT * FROM users WHERE id = $1");
        assert_eq!(audit.outcome, "blocked");
        assert_eq!(audit.rule, "deny_table");
        assert_eq!(audit.error_code, "42501");
        assert_eq!(audit.parameters, 1);
        assert_eq!(audit.parameter_values, vec!["\\xff01", "NULL"]);
        assert_eq!(audit.masked_columns, vec!["col4"]);
        assert!(trail.unfinished("gone").is_empty());
    }
}
