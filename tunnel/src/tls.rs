//! TLS for every hop: server configs, client configs pinned to a CA file or the
//! system roots, and the self-signed material dev mode creates on first start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no usable PEM {what}")]
    NoPem { path: PathBuf, what: &'static str },
    #[error("invalid PEM in {what}: {source}")]
    Pem {
        what: &'static str,
        source: rustls_pki_types::pem::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Identity {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    pub fn from_pem_files(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert_path)?;
        let key_pem = read(key_path)?;
        let cert_chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                what: "certificate",
                source,
            })?;
        if cert_chain.is_empty() {
            return Err(TlsError::NoPem {
                path: cert_path.to_owned(),
                what: "certificate",
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::Pem {
            what: "private key",
            source,
        })?;
        Ok(Self { cert_chain, key })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    std::fs::write(path, contents).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The crypto provider every config in Postern uses, passed explicitly rather
/// than installed process-wide.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM first: as strong as needed here and ~30% faster than AES-256
    // on the bulk data path (stable sort keeps the rest in ring's order).
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// Server config offering HTTP/2 (gRPC) and HTTP/1.1 (REST, health checks).
pub fn server_config(identity: Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.cert_chain, identity.key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client config trusting only the CA in `ca_pem` if given, else the system roots.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|source| TlsError::Pem {
                    what: "CA certificate",
                    source,
                })?;
                roots.add(cert)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A system store may hold certificates rustls cannot use; skip those.
                let _ = roots.add(cert);
            }
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Self-signed material for dev mode: a private CA and a server certificate for
/// the loopback names, kept in a directory so clients can pin `ca.pem`.
#[derive(Debug, Clone)]
pub struct DevCertificates {
    pub dir: PathBuf,
}

impl DevCertificates {
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// Loads the material from `dir`, generating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<(Self, Identity), TlsError> {
        let certs = Self {
            dir: dir.to_owned(),
        };
        if !(certs.ca_path().exists() && certs.cert_path().exists() && certs.key_path().exists()) {
            std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
                path: dir.to_owned(),
                source,
            })?;
            certs.generate()?;
        }
        let identity = Identity::from_pem_files(&certs.cert_path(), &certs.key_path())?;
        Ok((certs, identity))
    }

    fn generate(&self) -> Result<(), TlsError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Postern dev CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if let Ok(host) = std::env::var("HOSTNAME")
            && !host.is_empty()
        {
            names.push(host);
        }
        let mut server_params = CertificateParams::new(names)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "Postern dev gateway");
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        write(&self.ca_path(), ca_cert.pem().as_bytes())?;
        write(&self.cert_path(), server_cert.pem().as_bytes())?;
        write(&self.key_path(), server_key.serialize_pem().as_bytes())?;
        restrict_permissions(&self.key_path());
        Ok(())
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificates_are_created_once_and_usable() {
        let dir = std::env::temp_dir().join(format!("postern-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (certs, identity) = DevCertificates::load_or_create(&dir).unwrap();
        let first = std::fs::read(certs.cert_path()).unwrap();
        server_config(identity).unwrap();
        let ca = std::fs::read(certs.ca_path()).unwrap();
        client_config(Some(&ca)).unwrap();
        let (_, again) = DevCertificates::load_or_create(&dir).unwrap();
        assert_eq!(std::fs::read(certs.cert_path()).unwrap(), first);
        assert_eq!(again.cert_chain.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_files_name_the_path() {
        let err =
            Identity::from_pem_files(Path::new("/nonexistent/c.pem"), Path::new("/x")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/c.pem"), "{err}");
    }
}
