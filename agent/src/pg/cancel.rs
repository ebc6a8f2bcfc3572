//! Cancel keys. The client sees a key the agent made up, never the
//! database's: a CancelRequest quoting it is honoured only for the same
//! person on the same connection, and only while the session lives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use postern_l7_pg::messages::BackendKeyData;
use rand::Rng;

/// The real key and where to send a cancel for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTarget {
    pub key: BackendKeyData,
    pub connection: String,
    pub user: String,
}

type Keys = HashMap<(i32, Bytes), CancelTarget>;

/// The keys of this agent's live Postgres sessions (shared by its clones).
#[derive(Clone, Default)]
pub struct CancelKeys(Arc<Mutex<Keys>>);

impl std::fmt::Debug for CancelKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CancelKeys({} live)", self.lock().len())
    }
}

/// Forgets its key when the session ends.
pub struct Registered {
    keys: CancelKeys,
    slot: (i32, Bytes),
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.keys.lock().remove(&self.slot);
    }
}

impl CancelKeys {
    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `target` under a fresh key; returns the key for the client.
    pub fn register(&self, target: CancelTarget) -> (BackendKeyData, Registered) {
        let mut rng = rand::rng();
        let mut keys = self.lock();
        loop {
            let process_id = rng.random_range(1..i32::MAX);
            let secret: [u8; 4] = rng.random();
            let slot = (process_id, Bytes::copy_from_slice(&secret));
            if keys.contains_key(&slot) {
                continue;
            }
            keys.insert(slot.clone(), target);
            let key = BackendKeyData {
                process_id,
                secret_key: slot.1.clone(),
            };
            return (
                key,
                Registered {
                    keys: self.clone(),
                    slot,
                },
            );
        }
    }

    /// The session a client's CancelRequest names, if `user` on `connection` may cancel it.
    pub fn find(
        &self,
        process_id: i32,
        secret_key: &Bytes,
        connection: &str,
        user: &str,
    ) -> Option<CancelTarget> {
        self.lock()
            .get(&(process_id, secret_key.clone()))
            .filter(|t| t.connection == connection && t.user == user)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_to_person_and_connection_and_expire_with_the_session() {
        let keys = CancelKeys::default();
        let real = BackendKeyData {
            process_id: 4242,
            secret_key: Bytes::from_static(b"real"),
        };
        let target = CancelTarget {
            key: real.clone(),
            connection: "pg".into(),
            user: "alice".into(),
        };
        let (fake, registered) = keys.register(target.clone());
        assert_ne!(fake, real);
        let found = |c: &str, u: &str| keys.find(fake.process_id, &fake.secret_key, c, u);
        assert_eq!(found("pg", "alice"), Some(target));
        assert_eq!(found("pg", "mallory"), None);
        assert_eq!(found("other", "alice"), None);
        assert_eq!(keys.find(4242, &real.secret_key, "pg", "alice"), None);
        drop(registered);
        assert_eq!(found("pg", "alice"), None);
        assert_eq!(keys.len(), 0);
    }
}
