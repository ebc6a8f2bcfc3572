//! Authentication ('R'): the server's authentication requests and result.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireMessage;
use crate::error::ProtocolError;
use crate::wire::{Reader, put_cstr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// 0: authenticated.
    Ok,
    /// 2.
    KerberosV5,
    /// 3: send the password in a PasswordMessage.
    CleartextPassword,
    /// 5: send `md5` + md5(md5(password + user) + salt) in hex.
    Md5Password { salt: [u8; 4] },
    /// 7.
    Gss,
    /// 8: GSSAPI or SSPI continuation data.
    GssContinue { data: Bytes },
    /// 9.
    Sspi,
    /// 10: the SASL mechanisms the server offers.
    Sasl { mechanisms: Vec<String> },
    /// 11: SCRAM's server-first message.
    SaslContinue { data: Bytes },
    /// 12: SCRAM's server-final message.
    SaslFinal { data: Bytes },
}

impl Authentication {
    pub fn code(&self) -> i32 {
        match self {
            Authentication::Ok => 0,
            Authentication::KerberosV5 => 2,
            Authentication::CleartextPassword => 3,
            Authentication::Md5Password { .. } => 5,
            Authentication::Gss => 7,
            Authentication::GssContinue { .. } => 8,
            Authentication::Sspi => 9,
            Authentication::Sasl { .. } => 10,
            Authentication::SaslContinue { .. } => 11,
            Authentication::SaslFinal { .. } => 12,
        }
    }
}

impl WireMessage for Authentication {
    const TAG: Option<u8> = Some(b'R');
    const NAME: &'static str = "Authentication";

    fn parse(body: Bytes) -> Result<Self, ProtocolError> {
        let mut reader = Reader::new(body, Self::NAME);
        let message = match reader.i32("authentication code")? {
            0 => Authentication::Ok,
            2 => Authentication::KerberosV5,
            3 => Authentication::CleartextPassword,
            5 => {
                let salt = reader.bytes(4, "salt")?;
                Authentication::Md5Password {
                    salt: [salt[0], salt[1], salt[2], salt[3]],
                }
            }
            7 => Authentication::Gss,
            8 => Authentication::GssContinue {
                data: reader.rest(),
            },
            9 => Authentication::Sspi,
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let mechanism = reader.cstr("mechanism")?;
                    if mechanism.is_empty() {
                        break;
                    }
                    mechanisms.push(mechanism);
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue {
                data: reader.rest(),
            },
            12 => Authentication::SaslFinal {
                data: reader.rest(),
            },
            other => return Err(reader.invalid("authentication code", other.into())),
        };
        reader.finish()?;
        Ok(message)
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_i32(self.code());
        match self {
            Authentication::Md5Password { salt } => out.put_slice(salt),
            Authentication::GssContinue { data }
            | Authentication::SaslContinue { data }
            | Authentication::SaslFinal { data } => out.put_slice(data),
            Authentication::Sasl { mechanisms } => {
                for mechanism in mechanisms {
                    put_cstr(out, mechanism.as_bytes());
                }
                out.put_u8(0);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Direction;
    use crate::messages::testing::{round_trip, truncations_fail};

    #[test]
    fn every_request_round_trips() {
        let data = Bytes::from_static(b"r=abc,s=c2FsdA==,i=4096");
        for message in [
            Authentication::Ok,
            Authentication::KerberosV5,
            Authentication::CleartextPassword,
            Authentication::Md5Password { salt: [1, 2, 3, 4] },
            Authentication::Gss,
            Authentication::GssContinue { data: data.clone() },
            Authentication::Sspi,
            Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
            },
            Authentication::SaslContinue { data: data.clone() },
            Authentication::SaslFinal { data },
        ] {
            truncations_fail(&message);
            round_trip(Direction::Backend, message);
        }
    }

    #[test]
    fn refuses_an_unknown_code() {
        assert!(matches!(
            Authentication::parse(Bytes::from_static(&[0, 0, 0, 99])),
            Err(ProtocolError::InvalidField { value: 99, .. })
        ));
    }
}
