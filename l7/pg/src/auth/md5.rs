//! md5 password authentication: `md5` + hex(md5(hex(md5(password + user)) + salt)).

use md5::{Digest, Md5};

/// The string to send in a PasswordMessage for AuthenticationMD5Password.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex(&Md5::new()
        .chain_update(password.as_bytes())
        .chain_update(user.as_bytes())
        .finalize());
    let outer = Md5::new()
        .chain_update(inner.as_bytes())
        .chain_update(salt)
        .finalize();
    format!("md5{}", hex(&outer))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_values_computed_by_postgres() {
        // psql: select 'md5' || md5(md5('passworduser') || 'abcd')
        assert_eq!(
            md5_password("user", "password", *b"abcd"),
            "md5d5d3316b3e3c349e6ec421e824f2f990"
        );
        // psql: select 'md5' || md5(md5('s3cretalice') || 'wxyz')
        assert_eq!(
            md5_password("alice", "s3cret", *b"wxyz"),
            "md51fa112f7f8c0b0cdfef5b41142e053bb"
        );
    }
}
