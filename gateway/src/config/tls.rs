//! The public listener's TLS: a certificate and key from PEM files
//! (`POSTERN_TLS_CERT`, `POSTERN_TLS_KEY`) or from the variables themselves
//! (`POSTERN_TLS_CERT_PEM`, `POSTERN_TLS_KEY_PEM`, as ECS and Cloud Run inject
//! secrets), or none with `POSTERN_TLS_DISABLED=true`. Exactly one source.

use std::path::PathBuf;
use std::sync::Arc;

use postern_tunnel::Secret;
use postern_tunnel::env::{ConfigError, Env};
use postern_tunnel::tls::{Identity, server_config};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CERT_FILE: &str = "POSTERN_TLS_CERT";
const KEY_FILE: &str = "POSTERN_TLS_KEY";
const CERT_PEM: &str = "POSTERN_TLS_CERT_PEM";
const KEY_PEM: &str = "POSTERN_TLS_KEY_PEM";

/// Where the certificate and key come from (never their contents).
enum Source {
    Files { cert: PathBuf, key: PathBuf },
    Pem { cert: String, key: Secret },
}

pub(super) fn server_tls(env: &Env) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
    let disabled = env.flag("POSTERN_TLS_DISABLED", false)?;
    let cert_file: Option<PathBuf> = env.optional(CERT_FILE)?;
    let key_file: Option<PathBuf> = env.optional(KEY_FILE)?;
    let cert_pem = env.raw(CERT_PEM).map(str::to_owned);
    let key_pem = env.secret(KEY_PEM);
    let set: Vec<&str> = [
        (CERT_FILE, cert_file.is_some()),
        (KEY_FILE, key_file.is_some()),
        (CERT_PEM, cert_pem.is_some()),
        (KEY_PEM, key_pem.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, is_set)| is_set.then_some(name))
    .collect();
    if disabled {
        if set.is_empty() {
            return Ok(None);
        }
        return Err(error(
            "POSTERN_TLS_DISABLED",
            format!("is true but {} set: choose one", set.join(" and ")),
        ));
    }
    for (file, pem) in [(CERT_FILE, CERT_PEM), (KEY_FILE, KEY_PEM)] {
        if set.contains(&file) && set.contains(&pem) {
            return Err(error(
                pem,
                format!(
                    "and {file} are both set: give the PEM in the variable or a file, not both"
                ),
            ));
        }
    }
    let source = match (cert_file, key_file, cert_pem, key_pem) {
        (Some(cert), Some(key), None, None) => Source::Files { cert, key },
        (None, None, Some(cert), Some(key)) => Source::Pem { cert, key },
        (None, None, None, None) => {
            return Err(error(
                CERT_FILE,
                "is required: TLS is on by default: set POSTERN_TLS_CERT and POSTERN_TLS_KEY (PEM files) or POSTERN_TLS_CERT_PEM and POSTERN_TLS_KEY_PEM (PEM contents), or POSTERN_TLS_DISABLED=true where the platform terminates TLS (Cloud Run, an ALB with HTTPS listeners)".into(),
            ));
        }
        // One half given: name the missing half (of the PEM kind when the
        // two kinds are mixed).
        (cert_file, key_file, cert_pem, key_pem) => {
            let (given, missing) = if cert_pem.is_some() {
                (CERT_PEM, KEY_PEM)
            } else if key_pem.is_some() {
                (KEY_PEM, CERT_PEM)
            } else if cert_file.is_some() {
                (CERT_FILE, KEY_FILE)
            } else {
                debug_assert!(key_file.is_some());
                (KEY_FILE, CERT_FILE)
            };
            let mut message = format!("is required: {given} is set");
            if set.len() > 1 {
                message.push_str(
                    " (a file and a PEM variable do not mix: give both as files or both as PEM)",
                );
            }
            return Err(error(missing, message));
        }
    };
    let (identity, key_var) = match source {
        Source::Files { cert, key } => (
            Identity::from_pem_files(&cert, &key).map_err(|e| error(CERT_FILE, e.to_string()))?,
            KEY_FILE,
        ),
        Source::Pem { cert, key } => (identity_from_pem(&cert, &key)?, KEY_PEM),
    };
    server_config(identity)
        .map(Some)
        .map_err(|e| error(key_var, e.to_string()))
}

/// Parses the PEM variables. Errors name the variable and say what was
/// expected, never what was found: the key is a secret.
fn identity_from_pem(cert: &str, key: &Secret) -> Result<Identity, ConfigError> {
    let cert_chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|chain| !chain.is_empty())
        .ok_or_else(|| {
            error(
                CERT_PEM,
                "holds no valid PEM certificate (expected -----BEGIN CERTIFICATE----- blocks, the server's first)".into(),
            )
        })?;
    let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes()).map_err(|_| {
        error(
            KEY_PEM,
            "holds no valid PEM private key (expected a PKCS#8, PKCS#1 or SEC1 key block)".into(),
        )
    })?;
    Ok(Identity { cert_chain, key })
}

fn error(var: &str, message: String) -> ConfigError {
    ConfigError {
        var: var.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_tunnel::tls::DevCertificates;

    struct Material {
        _dir: tempfile::TempDir,
        cert_path: String,
        key_path: String,
        cert: String,
        key: String,
    }

    fn material() -> Material {
        let dir = tempfile::tempdir().unwrap();
        let (certs, _) = DevCertificates::load_or_create(dir.path()).unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        Material {
            cert_path: certs.cert_path().display().to_string(),
            key_path: certs.key_path().display().to_string(),
            cert: read(certs.cert_path()),
            key: read(certs.key_path()),
            _dir: dir,
        }
    }

    #[test]
    fn one_source_of_certificate_and_key() {
        let m = material();
        let (cert_path, key_path) = (m.cert_path.as_str(), m.key_path.as_str());
        let (cert, key) = (m.cert.as_str(), m.key.as_str());
        // The key's base64 body without its armour: not PEM, and secret.
        let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        // (variables set, Ok(TLS on?) or Err((variable named, part of the message)))
        type Case<'a> = (Vec<(&'a str, &'a str)>, Result<bool, (&'a str, &'a str)>);
        let cases: Vec<Case> = vec![
            (vec![(CERT_FILE, cert_path), (KEY_FILE, key_path)], Ok(true)),
            (vec![(CERT_PEM, cert), (KEY_PEM, key)], Ok(true)),
            (vec![("POSTERN_TLS_DISABLED", "true")], Ok(false)),
            (vec![], Err((CERT_FILE, "POSTERN_TLS_CERT_PEM"))),
            (
                vec![(CERT_FILE, cert_path), (CERT_PEM, cert), (KEY_PEM, key)],
                Err((CERT_PEM, "POSTERN_TLS_CERT are both set")),
            ),
            (
                vec![(CERT_PEM, cert), (KEY_FILE, key_path), (KEY_PEM, key)],
                Err((KEY_PEM, "POSTERN_TLS_KEY are both set")),
            ),
            (
                vec![(CERT_PEM, cert)],
                Err((KEY_PEM, "POSTERN_TLS_CERT_PEM is set")),
            ),
            (
                vec![(KEY_PEM, key)],
                Err((CERT_PEM, "POSTERN_TLS_KEY_PEM is set")),
            ),
            (
                vec![(CERT_FILE, cert_path)],
                Err((KEY_FILE, "POSTERN_TLS_CERT is set")),
            ),
            (
                vec![(KEY_FILE, key_path)],
                Err((CERT_FILE, "POSTERN_TLS_KEY is set")),
            ),
            (
                vec![(CERT_PEM, cert), (KEY_FILE, key_path)],
                Err((KEY_PEM, "do not mix")),
            ),
            (
                vec![(CERT_PEM, "not a certificate"), (KEY_PEM, key)],
                Err((CERT_PEM, "no valid PEM certificate")),
            ),
            (
                vec![(CERT_PEM, cert), (KEY_PEM, &key_body)],
                Err((KEY_PEM, "no valid PEM private key")),
            ),
            // A certificate where the key belongs: still no key.
            (
                vec![(CERT_PEM, cert), (KEY_PEM, cert)],
                Err((KEY_PEM, "no valid PEM private key")),
            ),
            (
                vec![("POSTERN_TLS_DISABLED", "true"), (KEY_PEM, key)],
                Err(("POSTERN_TLS_DISABLED", "POSTERN_TLS_KEY_PEM set")),
            ),
        ];
        for (pairs, expected) in cases {
            let names: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
            let result = server_tls(&Env::from_pairs(pairs.clone()));
            match (result, expected) {
                (Ok(tls), Ok(on)) => assert_eq!(tls.is_some(), on, "{names:?}"),
                (Err(err), Err((var, part))) => {
                    assert_eq!(err.var, var, "{names:?}: {err}");
                    assert!(err.message.contains(part), "{names:?}: {err}");
                    assert!(!err.to_string().contains(&key_body[..40]), "{err}");
                }
                (result, expected) => {
                    panic!(
                        "{names:?}: got {:?}, expected {expected:?}",
                        result.map(|t| t.is_some())
                    )
                }
            }
        }
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_names_the_key_variable() {
        let (a, b) = (material(), material());
        let env = Env::from_pairs([(CERT_PEM, a.cert.as_str()), (KEY_PEM, b.key.as_str())]);
        let err = server_tls(&env).unwrap_err();
        assert_eq!(err.var, KEY_PEM, "{err}");
    }
}
