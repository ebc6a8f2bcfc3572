//! OIDC token verification against the issuer stand-in over real HTTP, with
//! the verifier built from `POSTERN_OIDC_*` the way the gateway builds it.

use postern_gateway::config::oidc::from_env;
use postern_gateway::identity::oidc::{OidcVerifier, TokenError};
use postern_gateway::metrics::ErrorKind;
use postern_gateway::refusal::Refusal;
use postern_testkit::oidc::TestIssuer;
use postern_tunnel::env::Env;
use serde_json::json;

/// Whether a refusal is the one a case expects.
type Expected = fn(&TokenError) -> bool;

fn verifier_with(issuer: &str, audience: &str, extra: &[(&str, &str)]) -> OidcVerifier {
    let mut env = Env::from_pairs([
        ("POSTERN_OIDC_ISSUER", issuer),
        ("POSTERN_OIDC_AUDIENCE", audience),
    ]);
    for (name, value) in extra {
        env.set(name, *value);
    }
    let config = from_env(&env).expect("valid config").expect("OIDC on");
    OidcVerifier::new(config).expect("verifier")
}

fn verifier(issuer: &TestIssuer, extra: &[(&str, &str)]) -> OidcVerifier {
    verifier_with(&issuer.issuer(), &issuer.audience(), extra)
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_are_accepted_with_their_groups() {
    let issuer = TestIssuer::start().await;
    let flat = verifier(&issuer, &[]);
    let mut claims = issuer.claims("alice");
    claims["groups"] = json!(["dba", "dev"]);
    claims["amr"] = json!(["pwd", "mfa"]);
    claims["acr"] = json!("urn:mfa");
    let identity = flat.verify(&issuer.issue(&claims)).await.unwrap();
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.name, "alice@example.com");
    assert_eq!(identity.groups, ["dba", "dev"]);
    assert_eq!(identity.amr, ["pwd", "mfa"]);
    assert_eq!(identity.acr.as_deref(), Some("urn:mfa"));
    assert_eq!(
        identity.expires_at_ms,
        claims["exp"].as_i64().unwrap() * 1000
    );

    let nested = verifier(
        &issuer,
        &[
            ("POSTERN_OIDC_GROUPS_CLAIM", "realm_access.roles"),
            ("POSTERN_OIDC_USERNAME_CLAIM", "preferred_username"),
        ],
    );
    let mut claims = issuer.claims("bob");
    claims["realm_access"] = json!({"roles": "admins"});
    claims["preferred_username"] = json!("bob");
    let identity = nested.verify(&issuer.issue_es256(&claims)).await.unwrap();
    assert_eq!(
        (identity.name.as_str(), identity.groups.as_slice()),
        ("bob", &["admins".to_owned()][..])
    );
    // Audience as an array that contains ours.
    claims["aud"] = json!(["other-api", issuer.audience()]);
    assert!(nested.verify(&issuer.issue(&claims)).await.is_ok());
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_right_error() {
    let issuer = TestIssuer::start().await;
    let verifier = verifier(&issuer, &[]);
    let good = issuer.claims("alice");
    // Warm the key cache so each case below is about the token, not the fetch.
    verifier.verify(&issuer.issue(&good)).await.unwrap();

    let mut wrong_issuer = good.clone();
    wrong_issuer["iss"] = json!("https://evil.example");
    let mut wrong_audience = good.clone();
    wrong_audience["aud"] = json!("someone-else");
    let tampered = TestIssuer::tamper(&issuer.issue(&good));
    let es = issuer.issue_es256(&good);
    // An ES256 signature presented as made by the RSA key: key confusion.
    let confused = format!(
        "{}.{}",
        TestIssuer::encode_segment(&json!({"alg": "ES256", "kid": issuer.current_kid()})),
        es.split_once('.').unwrap().1
    );
    let cases: Vec<(&str, String, Expected)> = vec![
        ("expired", issuer.expired("alice"), |e| {
            matches!(e, TokenError::Expired { .. })
        }),
        ("not yet valid", issuer.not_yet_valid("alice"), |e| {
            matches!(e, TokenError::NotYetValid)
        }),
        (
            "wrong issuer",
            issuer.issue(&wrong_issuer),
            |e| matches!(e, TokenError::WrongIssuer { found, .. } if found == "https://evil.example"),
        ),
        ("wrong audience", issuer.issue(&wrong_audience), |e| {
            matches!(e, TokenError::WrongAudience { .. })
        }),
        (
            "unknown kid",
            issuer.issue_with_kid("no-such-key", &good),
            |e| matches!(e, TokenError::UnknownKeyId(Some(kid)) if kid == "no-such-key"),
        ),
        (
            "alg none",
            issuer.issue_alg_none(&good),
            |e| matches!(e, TokenError::AlgorithmNotAllowed(alg) if alg == "none"),
        ),
        (
            "HS256 with the public key",
            issuer.issue_hs256_with_public_key(&good),
            |e| matches!(e, TokenError::AlgorithmNotAllowed(alg) if alg == "HS256"),
        ),
        ("tampered payload", tampered, |e| {
            matches!(e, TokenError::BadSignature)
        }),
        (
            "another key",
            issuer.issue_signed_by_other_key(&good),
            |e| matches!(e, TokenError::BadSignature),
        ),
        ("key confusion", confused, |e| {
            matches!(e, TokenError::KeyMismatch { .. })
        }),
        ("an API key", "pst_user_0123".into(), |e| {
            matches!(e, TokenError::Malformed(_))
        }),
    ];
    for (name, token, expected) in cases {
        let err = verifier.verify(&token).await.expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
        let refusal = Refusal::from(err);
        assert_eq!(refusal.kind, ErrorKind::Unauthenticated, "{name}");
        assert!(
            refusal.message.contains("postern login"),
            "{name}: {}",
            refusal.message
        );
    }

    // Pinned algorithms: an ES256-only gateway refuses RS256.
    let es_only = verifier_with(
        &issuer.issuer(),
        &issuer.audience(),
        &[("POSTERN_OIDC_ALGORITHMS", "ES256")],
    );
    assert!(matches!(
        es_only.verify(&issuer.issue(&good)).await,
        Err(TokenError::AlgorithmNotAllowed(alg)) if alg == "RS256"
    ));
    assert!(es_only.verify(&es).await.is_ok());
}

#[tokio::test]
async fn key_rotation_is_picked_up() {
    let issuer = TestIssuer::start().await;
    let verifier = verifier(&issuer, &[("POSTERN_OIDC_JWKS_REFRESH_COOLDOWN", "0s")]);
    let claims = issuer.claims("alice");
    let old = issuer.issue(&claims);
    verifier.verify(&old).await.unwrap();
    let new_kid = issuer.rotate_key(false);
    let new = issuer.issue(&claims);
    assert!(new.len() > 10 && issuer.current_kid() == new_kid);
    let identity = verifier.verify(&new).await.expect("the new key is fetched");
    assert_eq!(identity.subject, "alice");
    // The old key left the JWKS with the rotation.
    assert!(matches!(
        verifier.verify(&old).await,
        Err(TokenError::UnknownKeyId(_))
    ));
    // Kept keys keep working beside the new one.
    let kept = issuer.issue(&claims);
    issuer.rotate_key(true);
    verifier.verify(&issuer.issue(&claims)).await.unwrap();
    verifier.verify(&kept).await.unwrap();
}

#[tokio::test]
async fn unknown_key_ids_cannot_hammer_the_issuer() {
    let issuer = TestIssuer::start().await;
    let verifier = verifier(&issuer, &[("POSTERN_OIDC_JWKS_REFRESH_COOLDOWN", "1m")]);
    let claims = issuer.claims("alice");
    verifier.verify(&issuer.issue(&claims)).await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);
    for i in 0..50 {
        let token = issuer.issue_with_kid(&format!("bogus-{i}"), &claims);
        assert!(matches!(
            verifier.verify(&token).await,
            Err(TokenError::UnknownKeyId(_))
        ));
    }
    // A rotation within the cooldown is not seen yet either: that is the price.
    issuer.rotate_key(true);
    assert!(matches!(
        verifier.verify(&issuer.issue(&claims)).await,
        Err(TokenError::UnknownKeyId(_))
    ));
    assert_eq!(issuer.jwks_fetches(), 1, "no fetch within the cooldown");
}

#[tokio::test]
async fn an_unreachable_issuer_fails_closed() {
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = TestIssuer::start().await;
    let token = issuer.issue(&issuer.claims("alice"));
    let nowhere = verifier_with(&format!("http://127.0.0.1:{port}"), &issuer.audience(), &[]);
    let err = nowhere.verify(&token).await.unwrap_err();
    assert!(matches!(err, TokenError::Unavailable(_)), "{err:?}");
    let refusal = Refusal::from(err);
    assert_eq!(refusal.kind, ErrorKind::IdentityUnavailable);
    assert_eq!(refusal.http_status().as_u16(), 503);

    // A down identity provider that never answered: unavailable too.
    issuer.set_down(true);
    let cold = verifier(&issuer, &[]);
    assert!(matches!(
        cold.verify(&token).await,
        Err(TokenError::Unavailable(_))
    ));

    // Keys fetched before the outage keep verifying tokens signed with them.
    issuer.set_down(false);
    let warm = verifier(&issuer, &[("POSTERN_OIDC_JWKS_REFRESH_COOLDOWN", "0s")]);
    warm.verify(&token).await.unwrap();
    issuer.set_down(true);
    warm.verify(&token).await.expect("cached keys still serve");
}

#[tokio::test]
async fn the_discovery_document_must_name_the_configured_issuer() {
    let issuer = TestIssuer::start().await;
    // Same server, spelled differently: the document says 127.0.0.1.
    let localhost = issuer.issuer().replace("127.0.0.1", "localhost");
    let verifier = verifier_with(&localhost, &issuer.audience(), &[]);
    let mut claims = issuer.claims("alice");
    claims["iss"] = json!(localhost);
    let err = verifier.verify(&issuer.issue(&claims)).await.unwrap_err();
    assert!(
        matches!(&err, TokenError::Unavailable(e) if e.to_string().contains("names issuer")),
        "{err:?}"
    );
}
