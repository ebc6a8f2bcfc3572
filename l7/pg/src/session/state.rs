//! What the session remembers between messages: prepared statements and
//! portals by name, and the responses still due from the server, in order.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::messages::{ErrorResponse, RowDescription};

/// A prepared statement, as the client created it.
#[derive(Debug)]
pub(crate) struct PreparedStatement {
    pub sql: Arc<str>,
    /// From Describe 'S' (formats all text), if the server described it.
    pub columns: Option<Arc<RowDescription>>,
}

/// A portal: a bound statement ready to Execute.
#[derive(Debug)]
pub(crate) struct Portal {
    pub statement_name: String,
    pub statement: Option<u64>,
    pub sql: Arc<str>,
    pub parameter_count: usize,
    pub parameters: Option<Vec<Option<Bytes>>>,
    pub result_formats: Vec<i16>,
    /// From Describe 'P' (real formats), or derived for the first rows.
    pub columns: Option<Arc<RowDescription>>,
    /// The client (or the session) already asked the server to describe it.
    pub described: bool,
}

/// Objects by name, each with an id so that responses still due can refer
/// to the very object their request created, even if the name was reused.
#[derive(Debug)]
pub(crate) struct Registry<T> {
    by_name: HashMap<String, u64>,
    objects: HashMap<u64, T>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            by_name: HashMap::new(),
            objects: HashMap::new(),
        }
    }
}

impl<T> Registry<T> {
    pub fn id(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, id: u64) -> Option<&T> {
        self.objects.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.objects.get_mut(&id)
    }

    /// Registers `object` as the server will: the unnamed one is replaced,
    /// a named one that exists is an error on the server and changes nothing.
    /// Returns whether it was registered.
    pub fn create(&mut self, id: u64, name: &str, object: T) -> bool {
        if !name.is_empty() && self.by_name.contains_key(name) {
            return false;
        }
        self.remove(name);
        self.by_name.insert(name.to_string(), id);
        self.objects.insert(id, object);
        true
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(id) = self.by_name.remove(name) {
            self.objects.remove(&id);
        }
    }

    /// Undoes a `create` whose request failed on the server.
    pub fn remove_id(&mut self, id: u64) {
        if self.objects.remove(&id).is_some() {
            self.by_name.retain(|_, v| *v != id);
        }
    }

    pub fn clear(&mut self) {
        self.by_name.clear();
        self.objects.clear();
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }
}

/// A statement being run: what the server has answered so far.
#[derive(Debug)]
pub(crate) struct Run {
    pub id: u64,
    /// Rows counted for the finished commands.
    pub rows: u64,
    /// DataRows since the last CommandComplete.
    pub data_rows: u64,
    pub tags: Vec<String>,
    pub error: Option<(String, String)>,
    pub rewritten_rows: u64,
    /// The current RowDescription (simple query), for row hooks.
    pub columns: Option<Arc<RowDescription>>,
    /// The portal being executed (extended protocol).
    pub portal: Option<u64>,
}

impl Run {
    pub fn new(id: u64, portal: Option<u64>) -> Self {
        Self {
            id,
            rows: 0,
            data_rows: 0,
            tags: Vec::new(),
            error: None,
            rewritten_rows: 0,
            columns: None,
            portal,
        }
    }

    pub fn command_complete(&mut self, tag: String, tag_rows: Option<u64>) {
        self.rows += tag_rows.unwrap_or(self.data_rows);
        self.data_rows = 0;
        self.tags.push(tag);
    }
}

/// A response the server (or the session) still owes the client, in the
/// order the client's requests were sent.
#[derive(Debug)]
pub(crate) enum Pending {
    /// Simple Query or FunctionCall: ends with ReadyForQuery.
    Query(Run),
    Parse {
        statement: u64,
    },
    Bind {
        portal: u64,
    },
    DescribeStatement {
        statement: Option<u64>,
    },
    /// `injected`: the session asked, so the answer is not forwarded.
    DescribePortal {
        portal: Option<u64>,
        injected: bool,
    },
    Execute(Run),
    Close,
    Sync,
    /// A blocked statement's answer, given once every earlier response has
    /// reached the client. `ready`: a ReadyForQuery follows (simple query and
    /// function call); an extended-protocol block gets the server's own
    /// ReadyForQuery for the Sync that ends the batch.
    Blocked {
        id: u64,
        error: ErrorResponse,
        rule: String,
        reason: String,
        ready: bool,
    },
}
