//! Trace export settings from the standard `OTEL_*` variables, validated at
//! start with errors that name the variable: a typo must not quietly turn
//! tracing off or send spans somewhere else.

use std::path::PathBuf;
use std::time::Duration;

use postern_tunnel::Secret;
use postern_tunnel::env::{ConfigError, Env};

/// The variables read here, for start-up logs and documentation.
pub const VARS: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

/// Where and how spans are exported; `None` from [`TracingConfig::from_env`]
/// means tracing is off (no endpoint, or switched off explicitly).
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Sent with every export (API keys of hosted backends): values are secrets.
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
    /// A PEM file of CA certificates for an `https` endpoint (else the system's).
    pub ca_cert: Option<PathBuf>,
    pub service_name: String,
    /// From `OTEL_RESOURCE_ATTRIBUTES`, in order.
    pub resource: Vec<(String, String)>,
    pub sampler: SamplerChoice,
}

/// `OTEL_TRACES_SAMPLER`: which sessions are traced.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
    /// Follows the caller's decision when there is one (the default: a
    /// session traced by the CLI is traced on every hop).
    ParentBased(Box<SamplerChoice>),
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl TracingConfig {
    /// Reads the `OTEL_*` variables; `default_service` names this program
    /// when `OTEL_SERVICE_NAME` is unset.
    pub fn from_env(env: &Env, default_service: &str) -> Result<Option<Self>, ConfigError> {
        if env.flag("OTEL_SDK_DISABLED", false)? {
            return Ok(None);
        }
        match env.raw("OTEL_TRACES_EXPORTER").map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(invalid(
                    "OTEL_TRACES_EXPORTER",
                    format!("{other:?} is not supported: use otlp or none"),
                ));
            }
        }
        let Some((endpoint_var, endpoint)) = signal(env, "ENDPOINT") else {
            return Ok(None);
        };
        let endpoint = validate_endpoint(endpoint_var, endpoint.trim())?;
        if let Some((var, protocol)) = signal(env, "PROTOCOL")
            && protocol.trim() != "grpc"
        {
            return Err(invalid(
                var,
                format!(
                    "{:?} is not supported: Postern exports OTLP over gRPC; point the endpoint at the collector's gRPC port (4317) and set grpc or leave this unset",
                    protocol.trim()
                ),
            ));
        }
        let headers = match signal(env, "HEADERS") {
            Some((var, raw)) => parse_headers(var, raw)?,
            None => Vec::new(),
        };
        let timeout = match signal(env, "TIMEOUT") {
            Some((var, raw)) => match raw.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(invalid(
                        var,
                        format!("invalid value {raw:?}: expected milliseconds above 0"),
                    ));
                }
            },
            None => DEFAULT_TIMEOUT,
        };
        let ca_cert = match signal(env, "CERTIFICATE") {
            Some((var, path)) => {
                let path = PathBuf::from(path.trim());
                if !path.is_file() {
                    return Err(invalid(var, format!("{} is not a file", path.display())));
                }
                Some(path)
            }
            None => None,
        };
        let resource = match env.raw("OTEL_RESOURCE_ATTRIBUTES") {
            Some(raw) => parse_pairs("OTEL_RESOURCE_ATTRIBUTES", raw)?,
            None => Vec::new(),
        };
        Ok(Some(Self {
            endpoint,
            headers,
            timeout,
            ca_cert,
            service_name: env
                .raw("OTEL_SERVICE_NAME")
                .map(|name| name.trim().to_owned())
                .unwrap_or_else(|| default_service.to_owned()),
            resource,
            sampler: sampler(env)?,
        }))
    }
}

/// The per-signal variable (`OTEL_EXPORTER_OTLP_TRACES_X`) wins over the
/// general one (`OTEL_EXPORTER_OTLP_X`), as the specification says.
fn signal<'a>(env: &'a Env, suffix: &str) -> Option<(&'static str, &'a str)> {
    let traces = VARS
        .iter()
        .find(|var| var.strip_prefix("OTEL_EXPORTER_OTLP_TRACES_") == Some(suffix))?;
    let general = VARS
        .iter()
        .find(|var| var.strip_prefix("OTEL_EXPORTER_OTLP_") == Some(suffix))?;
    env.raw(traces)
        .map(|value| (*traces, value))
        .or_else(|| env.raw(general).map(|value| (*general, value)))
}

fn invalid(var: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.to_owned(),
        message: message.into(),
    }
}

fn validate_endpoint(var: &str, endpoint: &str) -> Result<String, ConfigError> {
    let uri: tonic::codegen::http::Uri = endpoint
        .parse()
        .map_err(|e| invalid(var, format!("invalid URL {endpoint:?}: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(endpoint.to_owned()),
        _ => Err(invalid(
            var,
            format!("{endpoint:?} is not an http:// or https:// URL with a host"),
        )),
    }
}

/// `key=value,key=value` with values percent-encoded (W3C baggage format).
fn parse_pairs(var: &str, raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    raw.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| invalid(var, format!("{:?} is not key=value", item.trim())))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(invalid(var, "an entry has an empty key"));
            }
            let value = percent_decode(value.trim())
                .ok_or_else(|| invalid(var, format!("the value of {key:?} is badly encoded")))?;
            Ok((key.to_owned(), value))
        })
        .collect()
}

/// Headers hold credentials: errors name the header, never its value.
fn parse_headers(var: &str, raw: &str) -> Result<Vec<(String, Secret)>, ConfigError> {
    let mut headers = Vec::new();
    for item in raw.split(',').filter(|item| !item.trim().is_empty()) {
        let Some((name, value)) = item.split_once('=') else {
            return Err(invalid(var, "an entry is not name=value"));
        };
        let name = name.trim().to_ascii_lowercase();
        if tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(name.as_bytes())
            .is_err()
        {
            return Err(invalid(var, format!("{name:?} is not a valid header name")));
        }
        let value = percent_decode(value.trim())
            .filter(|value| tonic::metadata::AsciiMetadataValue::try_from(value.as_str()).is_ok())
            .ok_or_else(|| invalid(var, format!("the value of header {name:?} is not valid")))?;
        headers.push((name, Secret::new(value)));
    }
    Ok(headers)
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn sampler(env: &Env) -> Result<SamplerChoice, ConfigError> {
    let ratio = || -> Result<f64, ConfigError> {
        match env.raw("OTEL_TRACES_SAMPLER_ARG") {
            None => Ok(1.0),
            Some(raw) => match raw.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
                _ => Err(invalid(
                    "OTEL_TRACES_SAMPLER_ARG",
                    format!("invalid value {raw:?}: expected a ratio from 0 to 1"),
                )),
            },
        }
    };
    let parent_based = |root| SamplerChoice::ParentBased(Box::new(root));
    Ok(
        match env
            .raw("OTEL_TRACES_SAMPLER")
            .map(str::trim)
            .unwrap_or("parentbased_always_on")
        {
            "always_on" => SamplerChoice::AlwaysOn,
            "always_off" => SamplerChoice::AlwaysOff,
            "traceidratio" => SamplerChoice::Ratio(ratio()?),
            "parentbased_always_on" => parent_based(SamplerChoice::AlwaysOn),
            "parentbased_always_off" => parent_based(SamplerChoice::AlwaysOff),
            "parentbased_traceidratio" => parent_based(SamplerChoice::Ratio(ratio()?)),
            other => {
                return Err(invalid(
                    "OTEL_TRACES_SAMPLER",
                    format!(
                        "{other:?} is not supported: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
                    ),
                ));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().map(|(k, v)| (*k, *v)))
    }

    fn config(pairs: &[(&str, &str)]) -> Result<Option<TracingConfig>, ConfigError> {
        TracingConfig::from_env(&env(pairs), "postern-test")
    }

    const ENDPOINT: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        for pairs in [
            &[][..],
            &[("OTEL_SERVICE_NAME", "x")][..],
            &[ENDPOINT, ("OTEL_SDK_DISABLED", "true")][..],
            &[ENDPOINT, ("OTEL_TRACES_EXPORTER", "none")][..],
        ] {
            assert_eq!(config(pairs).unwrap(), None, "{pairs:?}");
        }
    }

    #[test]
    fn defaults_with_an_endpoint() {
        let config = config(&[ENDPOINT]).unwrap().unwrap();
        assert_eq!(config.endpoint, "http://127.0.0.1:4317");
        assert_eq!(config.service_name, "postern-test");
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            config.sampler,
            SamplerChoice::ParentBased(Box::new(SamplerChoice::AlwaysOn))
        );
        assert!(config.headers.is_empty() && config.resource.is_empty());
    }

    #[test]
    fn the_traces_variables_win_over_the_general_ones() {
        let config = config(&[
            ENDPOINT,
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://collector:4317",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "100"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "250"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.endpoint, "https://collector:4317");
        assert_eq!(config.timeout, Duration::from_millis(250));
    }

    #[test]
    fn headers_resource_and_service_are_parsed() {
        let config = config(&[
            ENDPOINT,
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "X-Api-Key=s%3Dcret, x-team = core",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,cloud.region=eu%2Dwest",
            ),
            ("OTEL_SERVICE_NAME", "gw-eu"),
        ])
        .unwrap()
        .unwrap();
        let headers: Vec<_> = config
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.expose()))
            .collect();
        assert_eq!(headers, [("x-api-key", "s=cret"), ("x-team", "core")]);
        assert_eq!(
            config.resource,
            [
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("cloud.region".to_owned(), "eu-west".to_owned())
            ]
        );
        assert_eq!(config.service_name, "gw-eu");
        assert!(
            !format!("{config:?}").contains("s=cret"),
            "headers are masked"
        );
    }

    #[test]
    fn samplers() {
        let cases = [
            ("always_on", None, SamplerChoice::AlwaysOn),
            ("always_off", None, SamplerChoice::AlwaysOff),
            ("traceidratio", Some("0.25"), SamplerChoice::Ratio(0.25)),
            (
                "parentbased_traceidratio",
                Some("0.5"),
                SamplerChoice::ParentBased(Box::new(SamplerChoice::Ratio(0.5))),
            ),
            (
                "parentbased_always_off",
                None,
                SamplerChoice::ParentBased(Box::new(SamplerChoice::AlwaysOff)),
            ),
        ];
        for (name, arg, expected) in cases {
            let mut pairs = vec![ENDPOINT, ("OTEL_TRACES_SAMPLER", name)];
            pairs.extend(arg.map(|arg| ("OTEL_TRACES_SAMPLER_ARG", arg)));
            assert_eq!(config(&pairs).unwrap().unwrap().sampler, expected, "{name}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4317")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                &[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                &[ENDPOINT, ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                &[ENDPOINT, ("OTEL_EXPORTER_OTLP_HEADERS", "novalue")],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                &[ENDPOINT, ("OTEL_EXPORTER_OTLP_HEADERS", "bad name=x")],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                &[
                    ENDPOINT,
                    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
                ],
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
            ),
            (
                &[ENDPOINT, ("OTEL_RESOURCE_ATTRIBUTES", "a=1,b")],
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
            (
                &[ENDPOINT, ("OTEL_TRACES_SAMPLER", "sometimes")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                &[
                    ENDPOINT,
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "2"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                &[ENDPOINT, ("OTEL_TRACES_EXPORTER", "jaeger")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                &[ENDPOINT, ("OTEL_SDK_DISABLED", "maybe")],
                "OTEL_SDK_DISABLED",
            ),
        ];
        for (pairs, var) in cases {
            let error = config(pairs).expect_err(var);
            assert_eq!(error.var, *var, "{pairs:?}: {error}");
        }
    }

    #[test]
    fn a_bad_header_value_is_not_echoed() {
        let error = config(&[
            ENDPOINT,
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-key=top%ZZsecret"),
        ])
        .unwrap_err();
        assert!(!error.message.contains("secret"), "{error}");
    }
}
