//! TLS between replicas without a PKI to run: each replica makes a throwaway
//! certificate at start and publishes its SHA-256 in its route record; peers
//! pin that exact certificate. Whoever can rewrite the route records can already
//! redirect sessions, so the pin trusts nothing new.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::tls::{Identity, TlsError, provider};

/// The name peer certificates are made for and clients ask for (SNI).
pub const PEER_SERVER_NAME: &str = "postern-peer";

/// Hex SHA-256 of a DER certificate.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// A fresh self-signed certificate for the peer port, and its fingerprint.
pub fn ephemeral_identity() -> Result<(Identity, String), TlsError> {
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(vec![PEER_SERVER_NAME.to_owned()])?;
    let cert = params.self_signed(&key)?;
    let der = cert.der().clone();
    let fingerprint = fingerprint(&der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((
        Identity {
            cert_chain: vec![der],
            key,
        },
        fingerprint,
    ))
}

/// A client config that accepts exactly the certificate with `fingerprint`.
pub fn pinned_client_config(fingerprint: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut config = config_with(Some(fingerprint.to_ascii_lowercase()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A client config that encrypts without authenticating the server (any
/// certificate; the handshake signatures are still checked): libpq's
/// `sslmode=prefer`/`require`, for the agent's database connections. No ALPN.
pub fn unverified_client_config() -> Result<rustls::ClientConfig, TlsError> {
    config_with(None)
}

fn config_with(fingerprint: Option<String>) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedVerifier {
        fingerprint,
        provider: provider.clone(),
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[derive(Debug)]
struct PinnedVerifier {
    /// `None`: any certificate.
    fingerprint: Option<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let accepted = self
            .fingerprint
            .as_ref()
            .is_none_or(|pin| fingerprint(end_entity) == *pin);
        if accepted {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    // The handshake signatures still prove the peer holds the certificate's key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn handshake(server: Identity, pin: &str) -> Result<(), std::io::Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::server_config(server).unwrap());
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(socket).await {
                let _ = tls.write_all(b"ok").await;
                let _ = tls.shutdown().await;
            }
        });
        let connector = tokio_rustls::TlsConnector::from(pinned_client_config(pin).unwrap());
        let socket = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from(PEER_SERVER_NAME).unwrap();
        let mut tls = connector.connect(name, socket).await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        assert_eq!(buf, b"ok");
        Ok(())
    }

    #[tokio::test]
    async fn only_the_pinned_certificate_is_accepted() {
        let (identity, pin) = ephemeral_identity().unwrap();
        handshake(identity, &pin).await.unwrap();

        let (impostor, _) = ephemeral_identity().unwrap();
        let err = handshake(impostor, &pin).await.unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}
