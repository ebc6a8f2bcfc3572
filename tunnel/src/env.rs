//! Configuration from environment variables, validated with errors that name
//! the variable. Reads from a snapshot map, so tests never touch the process env.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use crate::Secret;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

/// A snapshot of the environment variables with a given prefix.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Snapshot of the process environment.
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.insert(name.to_owned(), value.into());
    }

    /// The raw value; empty strings count as unset.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn optional<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.raw(name)
            .map(|value| {
                value.trim().parse::<T>().map_err(|e| ConfigError {
                    var: name.to_owned(),
                    message: format!("invalid value {value:?}: {e}"),
                })
            })
            .transpose()
    }

    pub fn or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    pub fn required<T>(&self, name: &str, hint: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.optional(name)?.ok_or_else(|| ConfigError {
            var: name.to_owned(),
            message: format!("is required: {hint}"),
        })
    }

    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.raw(name).map(|v| Secret::new(v.trim()))
    }

    /// `true`/`false`/`1`/`0`/`yes`/`no`.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError {
                    var: name.to_owned(),
                    message: format!("invalid value {v:?}: expected true or false"),
                }),
            },
        }
    }

    /// A duration in whole milliseconds, at least `min`.
    pub fn millis(
        &self,
        name: &str,
        default: Duration,
        min: Duration,
    ) -> Result<Duration, ConfigError> {
        let value = self
            .optional::<u64>(name)?
            .map(Duration::from_millis)
            .unwrap_or(default);
        if value < min {
            return Err(ConfigError {
                var: name.to_owned(),
                message: format!("must be at least {} ms", min.as_millis()),
            });
        }
        Ok(value)
    }

    /// The variables whose names start with `prefix`, set or empty.
    pub fn prefixed<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .range(prefix.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Variables with `prefix` that are not in `known`: most likely typos, which
    /// would otherwise silently leave a default in force.
    pub fn unknown(&self, prefix: &str, known: &[&str]) -> Vec<String> {
        self.vars
            .keys()
            .filter(|k| k.starts_with(prefix) && !known.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn errors_name_the_variable() {
        let env = Env::from_pairs([("POSTERN_LISTEN_ADDR", "nope"), ("POSTERN_X", "maybe")]);
        let err = env
            .optional::<SocketAddr>("POSTERN_LISTEN_ADDR")
            .unwrap_err();
        assert_eq!(err.var, "POSTERN_LISTEN_ADDR");
        assert!(
            err.to_string()
                .starts_with("POSTERN_LISTEN_ADDR: invalid value \"nope\""),
            "{err}"
        );
        assert!(
            env.flag("POSTERN_X", false)
                .unwrap_err()
                .to_string()
                .contains("POSTERN_X")
        );
        let err = env
            .required::<String>("POSTERN_TOKEN", "the agent token")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "POSTERN_TOKEN: is required: the agent token"
        );
    }

    #[test]
    fn defaults_apply_only_when_unset() {
        let env = Env::from_pairs([("A", "5"), ("EMPTY", " ")]);
        assert_eq!(env.or("A", 1u32).unwrap(), 5);
        assert_eq!(env.or("B", 1u32).unwrap(), 1);
        assert_eq!(env.or("EMPTY", 1u32).unwrap(), 1);
        assert!(
            env.millis("A", Duration::from_secs(1), Duration::from_millis(10))
                .is_err()
        );
        assert_eq!(
            env.millis("B", Duration::from_secs(1), Duration::ZERO)
                .unwrap(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn unknown_variables_are_reported() {
        let env = Env::from_pairs([
            ("POSTERN_LISTEN_ADR", "x"),
            ("POSTERN_TOKEN", "t"),
            ("HOME", "/"),
        ]);
        assert_eq!(
            env.unknown("POSTERN_", &["POSTERN_TOKEN"]),
            vec!["POSTERN_LISTEN_ADR"]
        );
    }
}
