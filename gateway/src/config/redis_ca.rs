//! `POSTERN_REDIS_CA_CERT`: a PEM bundle of CA certificates that `rediss://`
//! servers are verified against instead of the system roots. Memorystore's
//! in-transit encryption uses a private server CA; ElastiCache's chains to a
//! public root and needs none.

use std::fmt;
use std::path::PathBuf;

use postern_tunnel::Secret;
use postern_tunnel::env::{ConfigError, Env};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const VAR: &str = "POSTERN_REDIS_CA_CERT";

/// The bundle, read and checked at start (certificates are public: not a `Secret`).
#[derive(Clone)]
pub struct RedisCa {
    pub path: PathBuf,
    pub pem: Vec<u8>,
    certificates: usize,
}

impl fmt::Debug for RedisCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCa")
            .field("path", &self.path)
            .field("certificates", &self.certificates)
            .finish()
    }
}

pub(super) fn from_env(
    env: &Env,
    redis_url: Option<&Secret>,
) -> Result<Option<RedisCa>, ConfigError> {
    let Some(path) = env.optional::<PathBuf>(VAR)? else {
        return Ok(None);
    };
    let error = |message: String| ConfigError {
        var: VAR.into(),
        message,
    };
    let tls = redis_url.is_some_and(|url| {
        let url = url.expose().trim().to_ascii_lowercase();
        url.starts_with("rediss://") || url.starts_with("rediss+cluster://")
    });
    if !tls {
        return Err(error(
            "is set but POSTERN_REDIS_URL is not a rediss:// or rediss+cluster:// URL: the CA is used only for Redis over TLS".into(),
        ));
    }
    let pem =
        std::fs::read(&path).map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("{}: invalid PEM: {e}", path.display())))?
        .len();
    if certificates == 0 {
        return Err(error(format!(
            "{} holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)",
            path.display()
        )));
    }
    Ok(Some(RedisCa {
        path,
        pem,
        certificates,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_tunnel::tls::DevCertificates;

    #[test]
    fn the_ca_bundle_is_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (certs, _) = DevCertificates::load_or_create(dir.path()).unwrap();
        let ca = certs.ca_path().display().to_string();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let empty = empty.display().to_string();
        let tls_url = "rediss://:hunter2@cache:6378";
        // (POSTERN_REDIS_URL, POSTERN_REDIS_CA_CERT, Ok(certificates) or Err(part of the message))
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Result<usize, &'a str>);
        let cases: [Case; 8] = [
            (Some(tls_url), Some(&ca), Ok(1)),
            (Some("rediss+cluster://a:1,b:2"), Some(&ca), Ok(1)),
            (Some(tls_url), None, Ok(0)),
            (None, None, Ok(0)),
            (Some("redis://cache:6379"), Some(&ca), Err("rediss://")),
            (None, Some(&ca), Err("POSTERN_REDIS_URL")),
            (
                Some(tls_url),
                Some("/nonexistent/ca.pem"),
                Err("cannot read /nonexistent/ca.pem"),
            ),
            (Some(tls_url), Some(&empty), Err("holds no PEM certificate")),
        ];
        for (url, ca, expected) in cases {
            let mut env = Env::default();
            if let Some(ca) = ca {
                env.set(VAR, ca);
            }
            let url = url.map(Secret::new);
            match (from_env(&env, url.as_ref()), expected) {
                (Ok(got), Ok(count)) => {
                    assert_eq!(got.map_or(0, |ca| ca.certificates), count, "{url:?} {ca:?}")
                }
                (Err(err), Err(part)) => {
                    assert_eq!(err.var, VAR);
                    assert!(err.message.contains(part), "{err}");
                    assert!(!err.message.contains("hunter2"), "{err}");
                }
                (got, expected) => panic!("{url:?} {ca:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }
}
