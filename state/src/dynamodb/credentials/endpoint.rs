//! Where the container credentials endpoint is, from
//! `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (ECS) or
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`, and where plain http may go:
//! credentials must never cross a network in clear text.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{CredentialsConfigError, EnvLookup};

pub(super) const RELATIVE_URI: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
pub(super) const FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";

/// Where ECS serves a task's credentials; the relative URI is appended.
const ECS_ENDPOINT: &str = "http://169.254.170.2";
const ECS_IPV4: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
const EKS_IPV4: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 23);
const EKS_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23);

pub(super) struct Endpoint {
    /// Never shown: a relative URI is a per-task capability.
    pub(super) url: String,
    /// What errors and logs say: origin and variable, no path.
    pub(super) shown: String,
}

/// The relative URI wins over the full one, as in the AWS SDKs; `None` when
/// neither is set.
pub(super) fn from_env(env: EnvLookup<'_>) -> Result<Option<Endpoint>, CredentialsConfigError> {
    if let Some(relative) = env(RELATIVE_URI) {
        return Ok(Some(Endpoint {
            url: relative_url(&relative)?,
            shown: format!("{ECS_ENDPOINT} ({RELATIVE_URI})"),
        }));
    }
    env(FULL_URI).map(|full| full_url(&full)).transpose()
}

/// Token values go into a header as they are.
pub(super) fn header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

fn relative_url(relative: &str) -> Result<String, CredentialsConfigError> {
    let url = format!("{ECS_ENDPOINT}{relative}");
    if !relative.starts_with('/') || url::Url::parse(&url).is_err() {
        return Err(CredentialsConfigError {
            var: RELATIVE_URI,
            reason: "must be a path starting with '/', as ECS sets it".into(),
        });
    }
    Ok(url)
}

fn full_url(full: &str) -> Result<Endpoint, CredentialsConfigError> {
    let refuse = |reason: String| CredentialsConfigError {
        var: FULL_URI,
        reason,
    };
    let url = url::Url::parse(full).map_err(|e| refuse(format!("is not a URL: {e}")))?;
    let host = url
        .host()
        .ok_or_else(|| refuse("has no host".into()))?
        .to_owned();
    let origin = url.origin().ascii_serialization();
    match url.scheme() {
        "https" => {}
        "http" if http_allowed(&host) => {}
        "http" => {
            return Err(refuse(format!(
                "is plain http to {host}, which may not carry credentials: use https, or \
                 http to a loopback address, 169.254.170.2, 169.254.170.23 or [fd00:ec2::23]"
            )));
        }
        other => {
            return Err(refuse(format!(
                "has the scheme {other:?}: use http or https"
            )));
        }
    }
    Ok(Endpoint {
        url: url.into(),
        shown: format!("{origin} ({FULL_URI})"),
    })
}

fn http_allowed(host: &url::Host) -> bool {
    match host {
        url::Host::Ipv4(ip) => ip.is_loopback() || *ip == ECS_IPV4 || *ip == EKS_IPV4,
        url::Host::Ipv6(ip) => ip.is_loopback() || *ip == EKS_IPV6,
        // Resolves to loopback by definition (RFC 6761); other names would
        // need a DNS answer that could change after this check.
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Option<Endpoint>, CredentialsConfigError> {
        from_env(&|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn full_uris_over_http_only_to_the_agent_addresses() {
        for allowed in [
            "http://127.0.0.1:8080/creds",
            "http://127.9.9.9/creds",
            "http://localhost:1234/x",
            "http://[::1]/x",
            "http://169.254.170.2/v2/credentials",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "https://creds.example.com/role",
        ] {
            assert!(from(&[(FULL_URI, allowed)]).unwrap().is_some(), "{allowed}");
        }
        for (refused, why) in [
            ("http://10.0.0.5/creds", "plain http to 10.0.0.5"),
            ("http://169.254.169.254/latest", "plain http"),
            ("http://creds.example.com/x", "plain http"),
            ("ftp://127.0.0.1/x", "scheme \"ftp\""),
            ("not a url", "is not a URL"),
        ] {
            let Err(err) = from(&[(FULL_URI, refused)]) else {
                panic!("{refused} allowed")
            };
            assert_eq!(err.var, FULL_URI, "{refused}");
            assert!(err.reason.contains(why), "{refused}: {err}");
        }
        let Err(err) = from(&[(RELATIVE_URI, "v2/credentials")]) else {
            panic!("a relative URI without '/' allowed")
        };
        assert_eq!(err.var, RELATIVE_URI);
        assert!(from(&[]).unwrap().is_none());
    }
}
