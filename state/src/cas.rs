//! The answers every adapter gives when a compare-and-set on a document
//! matched nothing, from what is stored now.

use crate::model::Document;
use crate::{StoreError, StoreResult};

/// A write that expected `expected` lost: `current` is what is there now
/// (or the error reading it).
pub(crate) fn lost_write(
    kind: &str,
    key: &str,
    expected: u64,
    current: StoreResult<Option<Document>>,
) -> StoreError {
    match current {
        Ok(current) => StoreError::Conflict {
            kind: kind.into(),
            key: key.into(),
            expected,
            actual: current.map_or(0, |d| d.version),
        },
        Err(e) => e,
    }
}

/// A delete that expected `expected` removed nothing: there was nothing
/// (false), or another version is there.
pub(crate) fn missed_delete(
    kind: &str,
    key: &str,
    expected: u64,
    current: Option<Document>,
) -> StoreResult<bool> {
    match current {
        None => Ok(false),
        Some(current) => Err(lost_write(kind, key, expected, Ok(Some(current)))),
    }
}
