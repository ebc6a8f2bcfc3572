//! SCRAM-SHA-256 client (RFC 5802, RFC 7677) without channel binding: the
//! gs2 header is `n,,`. Postgres ignores the SCRAM user name (it uses the
//! startup message's), so callers usually pass an empty one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;

use super::AuthError;

/// The mechanism name in Postgres' AuthenticationSASL list.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// A hostile server could ask for billions of PBKDF2 rounds to burn the
/// agent's CPU; Postgres' default is 4096.
pub const MAX_ITERATIONS: u32 = 1_000_000;

const GS2_HEADER: &str = "n,,";
/// base64("n,,"): the channel binding attribute without binding.
const CHANNEL_BINDING: &str = "c=biws";

/// One SCRAM exchange. Create it, send [`ScramClient::client_first`], feed the
/// server-first message to [`ScramClient::client_final`], send the result,
/// then check the server-final message with [`ScramFinal::verify`].
pub struct ScramClient {
    password: Vec<u8>,
    client_first_bare: String,
    nonce: String,
}

/// The state after client-final: what the server must prove it knows.
pub struct ScramFinal {
    server_signature: [u8; 32],
}

impl ScramClient {
    /// With a random nonce (18 bytes from the system's CSPRNG, base64).
    pub fn new(user: &str, password: &str) -> Self {
        let mut raw = [0u8; 18];
        // SystemRandom only fails where the OS has no randomness at all.
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
            .expect("the operating system provides random bytes");
        Self::with_nonce(user, password, &BASE64.encode(raw))
    }

    /// With a given nonce (printable, no comma): for tests and test vectors.
    pub fn with_nonce(user: &str, password: &str, nonce: &str) -> Self {
        Self {
            password: normalize(password),
            client_first_bare: format!("n={},r={nonce}", escape_name(user)),
            nonce: nonce.to_string(),
        }
    }

    /// The client-first message, for SASLInitialResponse.
    pub fn client_first(&self) -> String {
        format!("{GS2_HEADER}{}", self.client_first_bare)
    }

    /// Reads the server-first message and returns the client-final message
    /// (with the proof), for SASLResponse.
    pub fn client_final(self, server_first: &[u8]) -> Result<(String, ScramFinal), AuthError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| AuthError::MalformedServerMessage("server-first is not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attribute in server_first.split(',') {
            match attribute.split_once('=') {
                Some(("r", value)) => nonce = Some(value),
                Some(("s", value)) => salt = Some(value),
                Some(("i", value)) => iterations = Some(value),
                Some(("m", _)) => {
                    return Err(AuthError::MalformedServerMessage(
                        "mandatory extension not supported",
                    ));
                }
                Some(("e", value)) => return Err(AuthError::ServerError(value.to_string())),
                _ => {}
            }
        }
        let nonce = nonce.ok_or(AuthError::MalformedServerMessage("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(AuthError::NonceMismatch);
        }
        let salt = BASE64
            .decode(salt.ok_or(AuthError::MalformedServerMessage("no salt"))?)
            .map_err(|_| AuthError::MalformedServerMessage("salt is not base64"))?;
        let iterations: u64 = iterations
            .ok_or(AuthError::MalformedServerMessage("no iteration count"))?
            .parse()
            .map_err(|_| AuthError::MalformedServerMessage("iteration count is not a number"))?;
        let rounds = u32::try_from(iterations)
            .ok()
            .filter(|n| (1..=MAX_ITERATIONS).contains(n))
            .and_then(NonZeroU32::new)
            .ok_or(AuthError::IterationCount(iterations))?;

        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            &salt,
            &self.password,
            &mut salted,
        );
        let salted = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());

        let without_proof = format!("{CHANNEL_BINDING},r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(key, signature)| key ^ signature)
            .collect();

        let server_key = hmac::sign(&salted, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        let mut expected = [0u8; 32];
        expected.copy_from_slice(server_signature.as_ref());
        Ok((
            format!("{without_proof},p={}", BASE64.encode(proof)),
            ScramFinal {
                server_signature: expected,
            },
        ))
    }
}

impl ScramFinal {
    /// Checks the server-final message: the server proves it knows the
    /// password (mutual authentication).
    pub fn verify(&self, server_final: &[u8]) -> Result<(), AuthError> {
        let server_final = std::str::from_utf8(server_final)
            .map_err(|_| AuthError::MalformedServerMessage("server-final is not UTF-8"))?;
        let mut verifier = None;
        for attribute in server_final.split(',') {
            match attribute.split_once('=') {
                Some(("e", value)) => return Err(AuthError::ServerError(value.to_string())),
                Some(("v", value)) => verifier = Some(value),
                _ => {}
            }
        }
        let verifier = BASE64
            .decode(verifier.ok_or(AuthError::MalformedServerMessage("no verifier"))?)
            .map_err(|_| AuthError::MalformedServerMessage("verifier is not base64"))?;
        // Constant-time comparison: the signature is a secret until verified.
        let expected = hmac::Key::new(hmac::HMAC_SHA256, &self.server_signature);
        let tag = hmac::sign(&expected, b"compare");
        hmac::verify(
            &hmac::Key::new(hmac::HMAC_SHA256, &verifier),
            b"compare",
            tag.as_ref(),
        )
        .map_err(|_| AuthError::ServerSignatureMismatch)
    }
}

/// SASLprep (RFC 4013) as Postgres applies it: a password that is not valid
/// for SASLprep is used as raw bytes.
fn normalize(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(prepared) => prepared.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// RFC 5802 saslname: ',' and '=' are escaped.
fn escape_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, section 3.
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    #[test]
    fn rfc_7677_test_vector() {
        let client = ScramClient::with_nonce("user", "pencil", NONCE);
        assert_eq!(client.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let (client_final, last) = client.client_final(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(client_final, CLIENT_FINAL);
        last.verify(SERVER_FINAL.as_bytes()).unwrap();
    }

    #[test]
    fn a_wrong_password_gives_another_proof_and_refuses_the_server() {
        let client = ScramClient::with_nonce("user", "pencil2", NONCE);
        let (client_final, last) = client.client_final(SERVER_FIRST.as_bytes()).unwrap();
        assert_ne!(client_final, CLIENT_FINAL);
        assert_eq!(
            last.verify(SERVER_FINAL.as_bytes()),
            Err(AuthError::ServerSignatureMismatch)
        );
    }

    #[test]
    fn refuses_bad_server_messages() {
        let client = || ScramClient::with_nonce("user", "pencil", NONCE);
        let first = |text: &str| client().client_final(text.as_bytes()).err();
        assert_eq!(
            first("r=other,s=AAAA,i=4096"),
            Some(AuthError::NonceMismatch)
        );
        assert_eq!(
            first(&format!("r={NONCE},s=AAAA,i=4096")),
            Some(AuthError::NonceMismatch)
        );
        assert_eq!(
            first(&format!("r={NONCE}x,s=AAAA,i=4000000000")),
            Some(AuthError::IterationCount(4_000_000_000))
        );
        assert_eq!(
            first(&format!("r={NONCE}x,s=AAAA,i=0")),
            Some(AuthError::IterationCount(0))
        );
        assert!(matches!(
            first(&format!("r={NONCE}x,s=!!,i=1")),
            Some(AuthError::MalformedServerMessage(_))
        ));
        assert_eq!(
            first("e=invalid-proof"),
            Some(AuthError::ServerError("invalid-proof".into()))
        );
        let (_, last) = client().client_final(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(
            last.verify(b"e=invalid-proof"),
            Err(AuthError::ServerError("invalid-proof".into()))
        );
        assert!(last.verify(b"v=###").is_err());
    }

    #[test]
    fn escapes_names_and_uses_fresh_nonces() {
        let client = ScramClient::with_nonce("a,b=c", "p", "n");
        assert_eq!(client.client_first(), "n,,n=a=2Cb=3Dc,r=n");
        assert_ne!(
            ScramClient::new("", "p").client_first(),
            ScramClient::new("", "p").client_first()
        );
    }
}
