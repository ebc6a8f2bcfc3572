//! `postern login` through OIDC, end to end: a real gateway configured with
//! the issuer stand-in, the real `postern` binary, its config file on disk.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use postern_gateway::config::oidc::from_env;
use postern_gateway::{GatewayOptions, RunningGateway, Settings, Stores};
use postern_state::memory::MemoryRouteStore;
use postern_state::sqlite::SqliteStore;
use postern_testkit::oidc::TestIssuer;
use postern_tunnel::env::Env;
use postern_tunnel::tls::{DevCertificates, Identity, server_config};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const MFA_ACR: &str = "urn:postern:test:mfa";

struct Setup {
    _gateway: RunningGateway,
    url: String,
    ca_path: PathBuf,
    ca_pem: Vec<u8>,
    dir: tempfile::TempDir,
}

async fn gateway(issuer: Option<&TestIssuer>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (certs, _) = DevCertificates::load_or_create(&dir.path().join("tls")).unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("postern.db"))
            .await
            .unwrap(),
    );
    let oidc = issuer.map(|issuer| {
        let env = Env::from_pairs([
            ("POSTERN_OIDC_ISSUER", issuer.issuer()),
            ("POSTERN_OIDC_AUDIENCE", issuer.audience()),
            ("POSTERN_OIDC_CLIENT_ID", issuer.client_id()),
            ("POSTERN_OIDC_MFA_ACR", MFA_ACR.into()),
        ]);
        from_env(&env).unwrap().unwrap()
    });
    let identity = Identity::from_pem_files(&certs.cert_path(), &certs.key_path()).unwrap();
    let gateway = postern_gateway::start(
        GatewayOptions {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            internal_addr: "127.0.0.1:0".parse().unwrap(),
            tls: Some(server_config(identity).unwrap()),
            replica_id: postern_gateway::new_replica_id(),
            settings: Settings::default(),
            peer: None,
            oidc,
        },
        Stores {
            policy: store.clone(),
            audit: store,
            routes: Arc::new(MemoryRouteStore::new()),
        },
    )
    .await
    .unwrap();
    Setup {
        url: format!("https://localhost:{}", gateway.public_addr.port()),
        ca_pem: std::fs::read(certs.ca_path()).unwrap(),
        ca_path: certs.ca_path(),
        _gateway: gateway,
        dir,
    }
}

impl Setup {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("cli.json")
    }

    fn cli(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_postern"));
        command
            .args(args)
            .env_remove("POSTERN_TOKEN")
            .env_remove("POSTERN_GATEWAY_URL")
            .env_remove("POSTERN_CA_CERT")
            .env("POSTERN_CONFIG", self.config_path())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    fn login_args(&self) -> Vec<String> {
        vec![
            "login".into(),
            self.url.clone(),
            "--ca-cert".into(),
            self.ca_path.display().to_string(),
        ]
    }

    fn saved(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.config_path()).unwrap()).unwrap()
    }

    fn http(&self) -> reqwest::Client {
        let mut tls = postern_tunnel::tls::client_config(Some(&self.ca_pem)).unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }
}

fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Runs the command to its end (30 s at most): (success, stdout, stderr).
async fn finish(child: tokio::process::Child) -> (bool, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the CLI finishes")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Reads the child's stdout until a line satisfies `wanted`; returns that line.
async fn line_matching(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    wanted: impl Fn(&str) -> bool,
) -> String {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("more output");
            if wanted(&line) {
                return line;
            }
        }
    })
    .await
    .expect("the CLI prints the line")
}

#[tokio::test]
async fn the_gateway_advertises_how_to_log_in() {
    let issuer = TestIssuer::start().await;
    let with = gateway(Some(&issuer)).await;
    let config: Value = with
        .http()
        .get(format!("{}/v1/auth/config", with.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config,
        json!({"oidc": {
            "issuer": issuer.issuer(),
            "client_id": issuer.client_id(),
            "scopes": "openid profile email offline_access",
            "audience": issuer.audience(),
            "mfa_acr": MFA_ACR,
        }})
    );
    let without = gateway(None).await;
    let config: Value = without
        .http()
        .get(format!("{}/v1/auth/config", without.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config, json!({"oidc": null}));
    let (ok, _, stderr) = finish(
        without
            .cli(
                &without
                    .login_args()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            )
            .spawn()
            .unwrap(),
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("--token"), "{stderr}");
}

#[tokio::test]
async fn device_login_saves_tokens_and_they_are_refreshed_before_use() {
    let issuer = TestIssuer::start().await;
    // Shorter than the CLI's 30 s margin: the next call must refresh first.
    issuer.set_access_token_lifetime(Duration::from_secs(5));
    let setup = gateway(Some(&issuer)).await;
    let args = setup.login_args();
    let mut child = setup
        .cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = line_matching(&mut lines, |l| l.contains("enter the code")).await;
    let code = line.rsplit(' ').next().unwrap().to_owned();
    assert!(
        line.contains(&format!("{}/device/verify", issuer.issuer())),
        "{line}"
    );
    assert_eq!(issuer.pending_user_codes(), std::slice::from_ref(&code));
    assert!(issuer.approve_device(&code, json!({"sub": "alice", "groups": ["dba"]})));
    let done = line_matching(&mut lines, |l| l.starts_with("Logged in to")).await;
    assert!(done.contains("as alice@example.com"), "{done}");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    let saved = setup.saved();
    assert_eq!(saved["gateway_url"], setup.url);
    let claims = claims_of(saved["token"].as_str().unwrap());
    assert_eq!(
        (claims["sub"].clone(), claims["groups"].clone()),
        (json!("alice"), json!(["dba"]))
    );
    assert_eq!(claims["aud"], json!(issuer.audience()));
    let oidc = &saved["oidc"];
    assert_eq!(
        oidc["token_endpoint"],
        json!(format!("{}/token", issuer.issuer()))
    );
    assert_eq!(oidc["client_id"], json!(issuer.client_id()));
    let first_refresh = oidc["refresh_token"].as_str().unwrap().to_owned();
    assert!(!first_refresh.is_empty());
    let expires = oidc["expires_at_ms"].as_i64().unwrap();
    let now = postern_state::now_ms();
    assert!((now..now + 6_000).contains(&expires), "{expires} vs {now}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(setup.config_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The next call to the gateway renews the token first, and the gateway
    // takes the renewed one.
    assert_eq!(issuer.refresh_count(), 0);
    let (ok, _, stderr) = finish(setup.cli(&["whoami"]).spawn().unwrap()).await;
    assert!(ok, "{stderr}");
    assert_eq!(issuer.refresh_count(), 1);
    let renewed = setup.saved();
    assert_ne!(renewed["token"], saved["token"]);
    assert_ne!(
        renewed["oidc"]["refresh_token"].as_str().unwrap(),
        first_refresh,
        "rotated"
    );
    assert_eq!(
        claims_of(renewed["token"].as_str().unwrap())["sub"],
        json!("alice")
    );

    // A revoked session at the IdP: the person is told to log in again.
    issuer.revoke_refresh_tokens();
    let (ok, _, stderr) = finish(setup.cli(&["ls"]).spawn().unwrap()).await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!("run `postern login {}` again", setup.url)),
        "{stderr}"
    );
    assert_eq!(issuer.refresh_count(), 1);
}

#[tokio::test]
async fn browser_login_with_pkce_and_mfa() {
    let issuer = TestIssuer::start().await;
    issuer.set_auto_approve(Some(json!({"sub": "bob", "groups": ["ops"]})));
    let setup = gateway(Some(&issuer)).await;
    let mut args = setup.login_args();
    args.extend(["--browser".into(), "--mfa".into()]);
    let mut child = setup
        .cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = line_matching(&mut lines, |l| l.trim_start().starts_with("http")).await;
    let url = url::Url::parse(line.trim()).unwrap();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["acr_values"], MFA_ACR);
    let http = setup.http();
    let answer = http.get(url.clone()).send().await.unwrap();
    assert_eq!(answer.status(), 302);
    let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.host_str(), Some("127.0.0.1"));

    // A callback with another state is not this login's: refused, still waiting.
    let mut forged = location.clone();
    let pairs: Vec<(String, String)> = location
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "state" {
                (k, "forged".into())
            } else {
                (k, v)
            }
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    assert_eq!(http.get(forged).send().await.unwrap().status(), 400);

    let back = http.get(location).send().await.unwrap();
    assert_eq!(back.status(), 200);
    assert!(back.text().await.unwrap().contains("logged in"));
    let (ok, _, stderr) = finish(child).await;
    assert!(ok, "{stderr}");
    let saved = setup.saved();
    let claims = claims_of(saved["token"].as_str().unwrap());
    assert_eq!(claims["sub"], json!("bob"));
    assert_eq!(claims["amr"], json!(["mfa", "otp"]));
    assert_eq!(claims["acr"], json!(MFA_ACR));
    assert_eq!(saved["oidc"]["mfa"], json!(true));
    assert!(saved["oidc"]["refresh_token"].is_string());
}

/// The stand-in itself: PKCE is really checked.
#[tokio::test]
async fn the_issuer_refuses_a_wrong_pkce_verifier() {
    use base64::Engine;
    use sha2::Digest;
    let issuer = TestIssuer::start().await;
    issuer.set_auto_approve(Some(json!({"sub": "carol"})));
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(postern_tunnel::tls::client_config(None).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let verifier = "a-verifier-of-at-least-43-characters-0123456789";
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
    let redirect_uri = "http://127.0.0.1:9/callback";
    let code = |http: reqwest::Client| {
        let issuer_url = issuer.issuer();
        let client_id = issuer.client_id();
        let challenge = challenge.clone();
        async move {
            let answer = http
                .get(format!("{issuer_url}/authorize"))
                .query(&[
                    ("response_type", "code"),
                    ("client_id", client_id.as_str()),
                    ("redirect_uri", redirect_uri),
                    ("state", "s"),
                    ("code_challenge", challenge.as_str()),
                    ("code_challenge_method", "S256"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 302);
            let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
            location
                .query_pairs()
                .find(|(k, _)| k == "code")
                .unwrap()
                .1
                .into_owned()
        }
    };
    let exchange = |code: String, verifier: &'static str| {
        let http = http.clone();
        let url = format!("{}/token", issuer.issuer());
        let client_id = issuer.client_id();
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect_uri),
                    ("client_id", client_id.as_str()),
                    ("code_verifier", verifier),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = exchange(code(http.clone()).await, "not-the-verifier").await;
    assert_eq!(wrong.status(), 400);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    let right = exchange(code(http.clone()).await, verifier).await;
    assert_eq!(right.status(), 200);
    let tokens: Value = right.json().await.unwrap();
    assert_eq!(
        claims_of(tokens["access_token"].as_str().unwrap())["sub"],
        json!("carol")
    );
}
