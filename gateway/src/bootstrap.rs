//! The admin token named by `POSTERN_BOOTSTRAP_ADMIN_TOKEN`, registered at
//! start-up so a new deployment can be administered at all.

use postern_state::{PolicyStore, Role, StoreError, StoreResult, UserToken, now_ms};
use postern_tunnel::Secret;
use postern_tunnel::auth::hash_token;

/// What [`register_bootstrap_admin`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// This replica registered the token.
    Registered,
    /// The token was already there (an earlier start, or another replica
    /// that started at the same moment and won the insert).
    AlreadyRegistered,
}

/// Registers the bootstrap admin token unless the store has it already.
/// Replicas that start together on an empty store all try: the insert that
/// loses to the same token is success, not an error.
pub async fn register_bootstrap_admin(
    store: &dyn PolicyStore,
    token: &Secret,
) -> StoreResult<Bootstrap> {
    let hash = hash_token(token.expose());
    if store.user_by_token_hash(&hash).await?.is_some() {
        return Ok(Bootstrap::AlreadyRegistered);
    }
    let created = store
        .create_user_token(&UserToken {
            user: "admin".into(),
            token_hash: hash.clone(),
            role: Role::Admin,
            created_at_ms: now_ms(),
            groups: Vec::new(),
        })
        .await;
    match created {
        Ok(()) => Ok(Bootstrap::Registered),
        Err(StoreError::AlreadyExists { .. })
            if store.user_by_token_hash(&hash).await?.is_some() =>
        {
            Ok(Bootstrap::AlreadyRegistered)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use postern_state::sqlite::SqliteStore;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_starting_together_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("postern.db"))
                .await
                .unwrap(),
        );
        let token = Secret::new("pst_bootstrap_token_for_the_race_test".to_owned());
        // All at once, so that several look the token up before any inserts it.
        let together = Arc::new(tokio::sync::Barrier::new(8));
        let starts: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let token = token.clone();
                let together = together.clone();
                tokio::spawn(async move {
                    together.wait().await;
                    register_bootstrap_admin(&*store, &token).await
                })
            })
            .collect();
        let mut registered = 0;
        for start in starts {
            match start.await.unwrap().expect("every replica starts") {
                Bootstrap::Registered => registered += 1,
                Bootstrap::AlreadyRegistered => {}
            }
        }
        assert_eq!(registered, 1, "exactly one replica inserted the token");
        let hash = hash_token(token.expose());
        let saved = store.user_by_token_hash(&hash).await.unwrap().unwrap();
        assert_eq!(saved.role, Role::Admin);
        assert_eq!(
            register_bootstrap_admin(&*store, &token).await.unwrap(),
            Bootstrap::AlreadyRegistered,
            "a restart finds it"
        );
    }
}
