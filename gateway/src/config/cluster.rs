//! Configuration of a replica that runs with others: peering, from
//! `POSTERN_PEER_*`, switched on by `POSTERN_REDIS_URL`. Replicas either dial
//! each other's peer port (`POSTERN_PEER_TRANSPORT=direct`, the default) or,
//! where they cannot (Cloud Run), relay through Redis (`relay`).

use std::net::{IpAddr, SocketAddr, UdpSocket};

use postern_tunnel::Secret;
use postern_tunnel::env::{ConfigError, Env};
use postern_tunnel::peer::{MIN_SECRET_LEN, PeerKey};

use crate::{DirectPeering, PeerOptions, PeerTransport};

/// Peering is on whenever replicas share a route store; a secret without
/// Redis is a mistake worth naming rather than ignoring.
pub fn peer_options(
    env: &Env,
    redis_url: Option<&Secret>,
) -> Result<Option<PeerOptions>, ConfigError> {
    let secret = env.secret("POSTERN_PEER_SECRET");
    let Some(redis_url) = redis_url else {
        if let Some(var) = ["POSTERN_PEER_SECRET", ACCEPTED_VAR]
            .into_iter()
            .find(|var| env.raw(var).is_some())
        {
            return Err(ConfigError {
                var: var.into(),
                message:
                    "is set but POSTERN_REDIS_URL is not: replicas find each other through Redis"
                        .into(),
            });
        }
        return Ok(None);
    };
    let secret = secret.ok_or_else(|| ConfigError {
        var: "POSTERN_PEER_SECRET".into(),
        message: "is required with POSTERN_REDIS_URL: the same random value on every replica (e.g. `openssl rand -hex 32`)".into(),
    })?;
    if secret.expose().len() < MIN_SECRET_LEN {
        return Err(ConfigError {
            var: "POSTERN_PEER_SECRET".into(),
            message: format!(
                "must be at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 32`)"
            ),
        });
    }
    let mut key = PeerKey::new(&secret);
    if let Some(accepted) = env.secret(ACCEPTED_VAR) {
        let invalid = |message: String| ConfigError {
            var: ACCEPTED_VAR.into(),
            message,
        };
        if accepted.expose().len() < MIN_SECRET_LEN {
            return Err(invalid(format!(
                "must be at least {MIN_SECRET_LEN} characters, as POSTERN_PEER_SECRET"
            )));
        }
        if accepted.expose() == secret.expose() {
            return Err(invalid(
                "is the same as POSTERN_PEER_SECRET: set it only while rotating to or from another secret".into(),
            ));
        }
        key = key.accepting(&accepted);
    }
    let transport = match env.optional::<String>("POSTERN_PEER_TRANSPORT")?.as_deref() {
        None | Some("direct") => PeerTransport::Direct(direct_peering(env, redis_url)?),
        Some("relay") => {
            // Settings of the peer port would be silently ignored: say so.
            for var in DIRECT_ONLY {
                if env.optional::<String>(var)?.is_some() {
                    return Err(ConfigError {
                        var: (*var).into(),
                        message: "has no effect with POSTERN_PEER_TRANSPORT=relay (replicas do not dial each other); unset it".into(),
                    });
                }
            }
            PeerTransport::Relay
        }
        Some(other) => {
            return Err(ConfigError {
                var: "POSTERN_PEER_TRANSPORT".into(),
                message: format!(
                    "{other:?} is not a peer transport: use `direct` (replicas dial each other's peer port) or `relay` (through Redis, where replicas cannot dial each other, e.g. Cloud Run)"
                ),
            });
        }
    };
    Ok(Some(PeerOptions { key, transport }))
}

/// A second secret whose tokens and relay seals are accepted, never used to
/// sign: for rotating `POSTERN_PEER_SECRET` (see `PeerKey::accepting`).
pub const ACCEPTED_VAR: &str = "POSTERN_PEER_SECRET_ACCEPTED";

/// Variables that only configure the direct peer port.
const DIRECT_ONLY: &[&str] = &[
    "POSTERN_PEER_ADDR",
    "POSTERN_PEER_ADVERTISE_ADDR",
    "POSTERN_PEER_TLS_DISABLED",
    "POSTERN_PEER_CONNECTIONS",
];

fn direct_peering(env: &Env, redis_url: &Secret) -> Result<DirectPeering, ConfigError> {
    let listen_addr: SocketAddr =
        env.or("POSTERN_PEER_ADDR", SocketAddr::from(([0, 0, 0, 0], 8444)))?;
    let advertise_addr = match env.optional::<String>("POSTERN_PEER_ADVERTISE_ADDR")? {
        Some(addr) => {
            if !addr.contains(':') {
                return Err(ConfigError {
                    var: "POSTERN_PEER_ADVERTISE_ADDR".into(),
                    message: format!("{addr:?} must be host:port"),
                });
            }
            Some(addr)
        }
        None if listen_addr.ip().is_unspecified() => {
            // The address this host uses to reach Redis is one its peers
            // (in the same network) can reach it on.
            let host = redis_host(redis_url.expose()).ok_or_else(|| ConfigError {
                var: "POSTERN_REDIS_URL".into(),
                message: "has no host:port to derive this replica's peer address from; set POSTERN_PEER_ADVERTISE_ADDR".into(),
            })?;
            let ip = outbound_ip(&host).ok_or_else(|| ConfigError {
                var: "POSTERN_PEER_ADVERTISE_ADDR".into(),
                message: format!("is required: cannot tell which local address reaches {host}"),
            })?;
            Some(SocketAddr::new(ip, listen_addr.port()).to_string())
        }
        None => None,
    };
    let connections_per_peer: usize = env.or("POSTERN_PEER_CONNECTIONS", 2)?;
    if !(1..=64).contains(&connections_per_peer) {
        return Err(ConfigError {
            var: "POSTERN_PEER_CONNECTIONS".into(),
            message: format!("must be between 1 and 64, not {connections_per_peer}"),
        });
    }
    Ok(DirectPeering {
        listen_addr,
        advertise_addr,
        tls: !env.flag("POSTERN_PEER_TLS_DISABLED", false)?,
        connections_per_peer,
    })
}

/// `host:port` of the first node in a `redis://` or `rediss://` URL.
fn redis_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let first = hosts.split(',').next()?;
    if first.is_empty() {
        return None;
    }
    Some(if first.contains(':') {
        first.to_owned()
    } else {
        format!("{first}:6379")
    })
}

/// The local address the routing table picks towards `host` (a UDP "connect"
/// sends nothing).
fn outbound_ip(host: &str) -> Option<IpAddr> {
    let target = std::net::ToSocketAddrs::to_socket_addrs(host)
        .ok()?
        .next()?;
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn peering_follows_redis_and_names_what_is_missing() {
        type Case = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            Result<bool, &'static str>,
        );
        let cases: Vec<Case> = vec![
            ("alone", vec![], Ok(false)),
            (
                "secret without redis",
                vec![("POSTERN_PEER_SECRET", SECRET)],
                Err("POSTERN_PEER_SECRET"),
            ),
            (
                "redis without secret",
                vec![("POSTERN_REDIS_URL", "redis://127.0.0.1:6379")],
                Err("POSTERN_PEER_SECRET"),
            ),
            (
                "short secret",
                vec![
                    ("POSTERN_REDIS_URL", "redis://127.0.0.1:6379"),
                    ("POSTERN_PEER_SECRET", "short"),
                ],
                Err("POSTERN_PEER_SECRET"),
            ),
            (
                "accepted secret without redis",
                vec![(ACCEPTED_VAR, SECRET)],
                Err(ACCEPTED_VAR),
            ),
            (
                "short accepted secret",
                vec![
                    ("POSTERN_REDIS_URL", "redis://127.0.0.1:6379"),
                    ("POSTERN_PEER_SECRET", SECRET),
                    (ACCEPTED_VAR, "short"),
                ],
                Err(ACCEPTED_VAR),
            ),
            (
                "accepted secret equal to the secret",
                vec![
                    ("POSTERN_REDIS_URL", "redis://127.0.0.1:6379"),
                    ("POSTERN_PEER_SECRET", SECRET),
                    (ACCEPTED_VAR, SECRET),
                ],
                Err(ACCEPTED_VAR),
            ),
            (
                "rotating",
                vec![
                    ("POSTERN_REDIS_URL", "redis://127.0.0.1:6379"),
                    ("POSTERN_PEER_SECRET", SECRET),
                    (ACCEPTED_VAR, "ffffffffffffffffffffffffffffffff"),
                ],
                Ok(true),
            ),
            (
                "bad advertise",
                vec![
                    ("POSTERN_REDIS_URL", "redis://127.0.0.1:6379"),
                    ("POSTERN_PEER_SECRET", SECRET),
                    ("POSTERN_PEER_ADVERTISE_ADDR", "nohost"),
                ],
                Err("POSTERN_PEER_ADVERTISE_ADDR"),
            ),
            (
                "too many connections",
                vec![
                    ("POSTERN_REDIS_URL", "redis://127.0.0.1:6379"),
                    ("POSTERN_PEER_SECRET", SECRET),
                    ("POSTERN_PEER_CONNECTIONS", "0"),
                ],
                Err("POSTERN_PEER_CONNECTIONS"),
            ),
            (
                "complete",
                vec![
                    ("POSTERN_REDIS_URL", "redis://127.0.0.1:6379"),
                    ("POSTERN_PEER_SECRET", SECRET),
                ],
                Ok(true),
            ),
            (
                "relay",
                vec![
                    ("POSTERN_REDIS_URL", "redis://127.0.0.1:6379"),
                    ("POSTERN_PEER_SECRET", SECRET),
                    ("POSTERN_PEER_TRANSPORT", "relay"),
                ],
                Ok(true),
            ),
            (
                "unknown transport",
                vec![
                    ("POSTERN_REDIS_URL", "redis://127.0.0.1:6379"),
                    ("POSTERN_PEER_SECRET", SECRET),
                    ("POSTERN_PEER_TRANSPORT", "carrier-pigeon"),
                ],
                Err("POSTERN_PEER_TRANSPORT"),
            ),
            (
                "peer port setting in relay mode",
                vec![
                    ("POSTERN_REDIS_URL", "redis://127.0.0.1:6379"),
                    ("POSTERN_PEER_SECRET", SECRET),
                    ("POSTERN_PEER_TRANSPORT", "relay"),
                    ("POSTERN_PEER_ADDR", "0.0.0.0:9444"),
                ],
                Err("POSTERN_PEER_ADDR"),
            ),
        ];
        for (name, pairs, expected) in cases {
            let env = Env::from_pairs(pairs);
            let redis = env.secret("POSTERN_REDIS_URL");
            let got = peer_options(&env, redis.as_ref());
            match (got, expected) {
                (Ok(options), Ok(on)) => assert_eq!(options.is_some(), on, "{name}"),
                (Err(e), Err(var)) => assert_eq!(e.var, var, "{name}: {e}"),
                (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn the_advertised_address_defaults_to_the_one_that_reaches_redis() {
        let env = Env::from_pairs([
            ("POSTERN_REDIS_URL", "redis://:pw@127.0.0.1:6379/0"),
            ("POSTERN_PEER_SECRET", SECRET),
            ("POSTERN_PEER_ADDR", "0.0.0.0:9444"),
        ]);
        let redis = env.secret("POSTERN_REDIS_URL");
        let options = peer_options(&env, redis.as_ref()).unwrap().unwrap();
        let PeerTransport::Direct(direct) = options.transport else {
            panic!("direct peering is the default");
        };
        assert_eq!(direct.advertise_addr.as_deref(), Some("127.0.0.1:9444"));
        assert!(direct.tls);
    }

    #[test]
    fn redis_hosts_are_found_in_every_url_form() {
        for (url, host) in [
            ("redis://h:1", Some("h:1")),
            ("rediss://user:pw@h:2/0", Some("h:2")),
            ("redis+cluster://a:1,b:2", Some("a:1")),
            ("redis://h", Some("h:6379")),
            ("nonsense", None),
        ] {
            assert_eq!(redis_host(url).as_deref(), host, "{url}");
        }
    }
}
