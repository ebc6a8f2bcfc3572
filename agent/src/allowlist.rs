//! Which targets this agent may dial. The gateway decides who may reach a
//! connection; the agent decides what its network exposes at all, so a
//! compromised or misconfigured gateway cannot roam the private network.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.internal`: any name ending in `.example.internal`.
    Suffix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    host: HostPattern,
    /// `None` is `*`.
    port: Option<u16>,
}

/// `POSTERN_ALLOWED_TARGETS`: comma-separated `HOST:PORT` rules, where HOST is a
/// name, an address, `*`, or `*.suffix`, and PORT is a number or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    rules: Vec<Rule>,
}

impl Allowlist {
    pub fn allows(&self, target: &str) -> bool {
        let Some((host, port)) = split_host_port(target) else {
            return false;
        };
        let Ok(port) = port.parse::<u16>() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.rules.iter().any(|rule| {
            rule.port.is_none_or(|p| p == port)
                && match &rule.host {
                    HostPattern::Any => true,
                    HostPattern::Exact(exact) => *exact == host,
                    HostPattern::Suffix(suffix) => {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    }
                }
        })
    }
}

/// `host:port`, with IPv6 hosts in brackets.
fn split_host_port(target: &str) -> Option<(&str, &str)> {
    let (host, port) = target.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

impl FromStr for Allowlist {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut rules = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (host, port) =
                split_host_port(item).ok_or_else(|| format!("{item:?} is not HOST:PORT"))?;
            let port = match port {
                "*" => None,
                p => Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("{item:?}: {p:?} is not a port or *"))?,
                ),
            };
            let host = host.to_ascii_lowercase();
            let host = if host == "*" {
                HostPattern::Any
            } else if let Some(suffix) = host.strip_prefix("*.") {
                HostPattern::Suffix(format!(".{suffix}"))
            } else if host.contains('*') {
                return Err(format!(
                    "{item:?}: `*` is allowed only as the whole host or as `*.suffix`"
                ));
            } else {
                HostPattern::Exact(host)
            };
            rules.push(Rule { host, port });
        }
        if rules.is_empty() {
            return Err("no rules given".into());
        }
        Ok(Self { rules })
    }
}

impl fmt::Display for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|rule| {
                let host = match &rule.host {
                    HostPattern::Any => "*".to_owned(),
                    HostPattern::Suffix(s) => format!("*{s}"),
                    HostPattern::Exact(h) if h.contains(':') => format!("[{h}]"),
                    HostPattern::Exact(h) => h.clone(),
                };
                let port = rule.port.map_or("*".to_owned(), |p| p.to_string());
                format!("{host}:{port}")
            })
            .collect();
        f.write_str(&rules.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let list: Allowlist = "db.internal:5432, *.cache.internal:6379, 10.0.0.7:*, [::1]:22"
            .parse()
            .unwrap();
        let cases = [
            ("db.internal:5432", true),
            ("DB.Internal:5432", true),
            ("db.internal:5433", false),
            ("other.internal:5432", false),
            ("a.cache.internal:6379", true),
            ("a.b.cache.internal:6379", true),
            ("cache.internal:6379", false),
            ("evilcache.internal:6379", false),
            ("10.0.0.7:22", true),
            ("10.0.0.7:5432", true),
            ("10.0.0.8:22", false),
            ("[::1]:22", true),
            ("db.internal", false),
            ("db.internal:x", false),
            ("", false),
        ];
        for (target, allowed) in cases {
            assert_eq!(list.allows(target), allowed, "{target}");
        }
        assert!("*:*".parse::<Allowlist>().unwrap().allows("anything:1"));
    }

    #[test]
    fn bad_rules_are_explained() {
        for (input, expected) in [
            ("db", "not HOST:PORT"),
            ("db:x", "not a port"),
            ("d*b:1", "only as the whole host"),
            (" , ", "no rules"),
        ] {
            let err = input.parse::<Allowlist>().unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn displays_as_parsed() {
        let text = "db.internal:5432,*.cache.internal:*,[::1]:22";
        assert_eq!(text.parse::<Allowlist>().unwrap().to_string(), text);
    }
}
