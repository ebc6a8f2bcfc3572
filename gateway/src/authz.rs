//! Who is calling, and may they: bearer tokens to a [`Principal`], and
//! access decisions over the current policy snapshot, failing closed.

use std::sync::Arc;

use postern_state::{Role, now_ms};
use postern_tunnel::Secret;
use postern_tunnel::auth::{BearerError, hash_token};

use crate::access::{Action, Credential, Decision, PolicySnapshot, Principal, decide};
use crate::metrics::ErrorKind;
use crate::refusal::Refusal;
use crate::shared::Shared;

impl Shared {
    /// The person behind a bearer token: a Postern API key (looked up by its
    /// hash) or, when OIDC is configured, a JWT from the issuer.
    pub async fn authenticate(
        &self,
        token: Result<Secret, BearerError>,
    ) -> Result<Principal, Refusal> {
        let token = token.map_err(|e| {
            self.refuse(Refusal::new(
                ErrorKind::Unauthenticated,
                format!("{e}; run `postern login`"),
            ))
        })?;
        if crate::identity::oidc::looks_like_jwt(token.expose()) {
            return self.authenticate_oidc(token.expose()).await;
        }
        match self
            .policy_cache
            .user_by_token_hash(&hash_token(token.expose()))
            .await
        {
            Ok(Some(key)) => Ok(Principal {
                name: key.user,
                groups: key.groups,
                // An API key is one factor, whatever its holder did to get it.
                mfa: false,
                credential: Credential::ApiKey {
                    admin: key.role == Role::Admin,
                },
            }),
            Ok(None) => Err(self.refuse(Refusal::new(
                ErrorKind::Unauthenticated,
                "unknown or revoked token: run `postern login` again",
            ))),
            Err(e) => Err(self.refuse(e.into())),
        }
    }

    /// A JWT from the configured issuer, verified against its keys; its
    /// groups claim gives the groups, `amr`/`acr` whether MFA was used.
    async fn authenticate_oidc(&self, token: &str) -> Result<Principal, Refusal> {
        let Some(verifier) = &self.oidc else {
            return Err(self.refuse(Refusal::new(
                ErrorKind::Unauthenticated,
                "this gateway accepts no identity-provider tokens (no POSTERN_OIDC_ISSUER): log in with an API key, `postern login <gateway-url> --token T`",
            )));
        };
        let identity = verifier
            .verify(token)
            .await
            .map_err(|e| self.refuse(e.into()))?;
        Ok(Principal {
            mfa: proves_mfa(
                &identity.amr,
                identity.acr.as_deref(),
                verifier.config().mfa_acr.as_deref(),
            ),
            name: identity.name,
            groups: identity.groups,
            credential: Credential::Oidc {
                expires_at_ms: identity.expires_at_ms,
            },
        })
    }

    /// Access rules, connection requirements and grants, through the policy
    /// cache (fails closed once it is past its stale limit).
    pub async fn policy_snapshot(&self) -> Result<Arc<PolicySnapshot>, Refusal> {
        self.policy_cache
            .snapshot()
            .await
            .map_err(|e| self.refuse(e.into()))
    }

    /// Refuses (counted) unless `principal` may do `action` on `resource`;
    /// returns what allowed it.
    pub async fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        resource: &str,
    ) -> Result<String, Refusal> {
        if principal.is_admin_key() {
            return Ok("admin API key".into());
        }
        let snapshot = self.policy_snapshot().await?;
        match decide(principal, action, resource, &snapshot.rules) {
            Decision::Allow { by } => Ok(by),
            Decision::Deny { reason } => {
                Err(self.refuse(Refusal::new(ErrorKind::Forbidden, reason)))
            }
        }
    }
}

/// Whether a token's authentication methods prove a second factor: `amr`
/// says `mfa` (RFC 8176; Okta, Entra ID, Auth0), or names a password and a
/// second factor together, or `acr` is the class the gateway asks for with
/// `postern login --mfa` (POSTERN_OIDC_MFA_ACR). Anything else is one factor.
pub fn proves_mfa(amr: &[String], acr: Option<&str>, mfa_acr: Option<&str>) -> bool {
    const SECOND_FACTORS: &[&str] = &["otp", "hwk", "swk", "sms", "sc", "fpt", "face", "iris"];
    let has = |method: &str| amr.iter().any(|m| m == method);
    has("mfa")
        || (amr.len() >= 2 && SECOND_FACTORS.iter().any(|f| has(f)))
        || matches!((acr, mfa_acr), (Some(acr), Some(wanted)) if acr == wanted)
}

/// What a session may do, as decided when it opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAccess {
    pub rule: String,
    pub read_only: bool,
    pub review_id: Option<String>,
}

impl SessionAccess {
    /// For the audit trail.
    pub fn describe(&self) -> String {
        let mut detail = format!("rule={} read_only={}", self.rule, self.read_only);
        if let Some(review) = &self.review_id {
            detail.push_str(&format!(" review={review}"));
        }
        detail
    }
}

impl Shared {
    /// The rules, MFA and approval checks for a session, each refusal
    /// audited and counted.
    pub async fn authorize_session(
        &self,
        principal: &Principal,
        connection: &postern_state::Connection,
    ) -> Result<SessionAccess, Refusal> {
        let snapshot = self.policy_snapshot().await?;
        let decision = crate::access::decide_session(
            principal,
            &connection.name,
            connection.kind,
            &snapshot,
            now_ms(),
        );
        let refusal = match decision {
            crate::access::SessionDecision::Allow {
                rule,
                read_only,
                review_id,
            } => {
                return Ok(SessionAccess {
                    rule,
                    read_only,
                    review_id,
                });
            }
            crate::access::SessionDecision::Deny { reason } => {
                Refusal::new(ErrorKind::Forbidden, reason)
            }
            crate::access::SessionDecision::NeedsMfa { reason } => {
                Refusal::new(ErrorKind::MfaRequired, reason)
            }
            crate::access::SessionDecision::NeedsApproval {
                approvers,
                window_secs,
            } => Refusal::new(
                ErrorKind::ApprovalRequired,
                format!(
                    "connection {:?} needs an approval from group {approvers} (it lasts {window_secs} s): \
                     `postern connect {}` asks for one and waits",
                    connection.name, connection.name
                ),
            ),
        };
        self.audit_session(
            &principal.name,
            &connection.name,
            "",
            "denied",
            format!("{}: {}", refusal.code(), refusal.message),
        )
        .await;
        Err(self.refuse(refusal))
    }

    /// `session.open` in the audit trail, by person and connection.
    pub async fn audit_session(
        &self,
        person: &str,
        connection: &str,
        session_id: &str,
        outcome: &str,
        detail: String,
    ) {
        let event = postern_state::AuditEvent {
            at_ms: now_ms(),
            actor: person.to_owned(),
            action: "session.open".into(),
            target: connection.to_owned(),
            outcome: outcome.to_owned(),
            detail,
            session_id: (!session_id.is_empty()).then(|| session_id.to_owned()),
        };
        if let Err(e) = self.stores.audit.record(&event).await {
            tracing::error!(error = %e, ?event, "cannot write audit event");
            self.metrics.error(ErrorKind::AuditUnavailable);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::proves_mfa;

    /// amr, acr, the acr the gateway trusts, proves MFA.
    type Case = (
        &'static [&'static str],
        Option<&'static str>,
        Option<&'static str>,
        bool,
    );

    #[test]
    fn mfa_proof_table() {
        let cases: &[Case] = &[
            (&["pwd", "mfa"], None, None, true),
            (&["mfa"], None, None, true),
            (&["pwd", "otp"], None, None, true),
            (&["pwd", "hwk"], None, None, true),
            (&["pwd"], None, None, false),
            (&[], None, None, false),
            // One method alone, even a key, is one factor.
            (&["otp"], None, None, false),
            (&["pwd", "kba"], None, None, false),
            (&["pwd"], Some("urn:mfa"), Some("urn:mfa"), true),
            (&["pwd"], Some("urn:basic"), Some("urn:mfa"), false),
            // An acr means nothing unless the gateway names the one it trusts.
            (&["pwd"], Some("urn:mfa"), None, false),
        ];
        for (amr, acr, wanted, expected) in cases {
            let amr: Vec<String> = amr.iter().map(|m| m.to_string()).collect();
            assert_eq!(
                proves_mfa(&amr, *acr, *wanted),
                *expected,
                "{amr:?} {acr:?} {wanted:?}"
            );
        }
    }
}
