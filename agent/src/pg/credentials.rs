//! Database logins the agent resolves locally from a connection's reference.
//! The gateway only ever names a credential (`env:ORDERS`, `file:orders`);
//! the secret itself never leaves the private network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use postern_tunnel::Secret;
use postern_tunnel::env::Env;
use serde::Deserialize;

/// Variables `POSTERN_CRED_<NAME>_USER` / `POSTERN_CRED_<NAME>_PASSWORD`:
/// only variables made for Postern can be named, so a gateway cannot make the
/// agent read an unrelated secret from its environment.
pub const ENV_PREFIX: &str = "POSTERN_CRED_";

/// A login to the database.
#[derive(Clone, PartialEq, Eq)]
pub struct DbLogin {
    pub user: String,
    /// `None`: trust (or another method that needs no password).
    pub password: Option<Secret>,
}

impl std::fmt::Debug for DbLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbLogin")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("no credential reference on the connection (set one: env:NAME or file:NAME)")]
    Missing,
    #[error("credential reference {0:?} is neither env:NAME nor file:NAME")]
    Syntax(String),
    #[error("credential {reference}: {var} is not set on the agent")]
    UnsetVariable { reference: String, var: String },
    #[error("credential {0}: the agent has no POSTERN_CREDENTIALS_DIR")]
    NoDirectory(String),
    #[error("credential {reference}: cannot read {path}: {reason}")]
    Unreadable {
        reference: String,
        path: String,
        reason: String,
    },
}

/// The logins this agent knows: a snapshot of its `POSTERN_CRED_*` variables
/// and the directory credential files are read from (at each session, so a
/// rotated file is picked up without a restart).
#[derive(Clone, Default)]
pub struct Credentials {
    env: BTreeMap<String, String>,
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .env
            .keys()
            .filter_map(|k| k.strip_suffix("_USER"))
            .collect();
        f.debug_struct("Credentials")
            .field("env", &names)
            .field("dir", &self.dir)
            .finish()
    }
}

/// Whether `name` is an acceptable `env:` name.
fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `name` is an acceptable `file:` name: one plain path component.
fn file_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginFile {
    user: String,
    #[serde(default)]
    password: Option<String>,
}

impl Credentials {
    pub fn from_env(env: &Env, dir: Option<PathBuf>) -> Self {
        Self {
            env: env
                .prefixed(ENV_PREFIX)
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            dir,
        }
    }

    /// Adds a login as if from `POSTERN_CRED_<name>_*` (tests, embedded agents).
    pub fn insert(&mut self, name: &str, user: &str, password: Option<&str>) {
        self.env
            .insert(format!("{ENV_PREFIX}{name}_USER"), user.to_owned());
        if let Some(password) = password {
            self.env
                .insert(format!("{ENV_PREFIX}{name}_PASSWORD"), password.to_owned());
        }
    }

    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    pub fn resolve(&self, reference: &str) -> Result<DbLogin, CredentialError> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(CredentialError::Missing);
        }
        match reference.split_once(':') {
            Some(("env", name)) if env_name_ok(name) => self.login_from_variables(reference, name),
            Some(("file", name)) if file_name_ok(name) => {
                let dir = self
                    .dir
                    .as_deref()
                    .ok_or_else(|| CredentialError::NoDirectory(reference.to_owned()))?;
                read_login(reference, &dir.join(name))
            }
            _ => Err(CredentialError::Syntax(reference.to_owned())),
        }
    }

    fn login_from_variables(
        &self,
        reference: &str,
        name: &str,
    ) -> Result<DbLogin, CredentialError> {
        let user_var = format!("{ENV_PREFIX}{name}_USER");
        let user = self
            .env
            .get(&user_var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| CredentialError::UnsetVariable {
                reference: reference.to_owned(),
                var: user_var.clone(),
            })?;
        let password = self
            .env
            .get(&format!("{ENV_PREFIX}{name}_PASSWORD"))
            .filter(|v| !v.is_empty())
            .map(|v| Secret::new(v.clone()));
        Ok(DbLogin {
            user: user.clone(),
            password,
        })
    }
}

/// A JSON file `{"user": …, "password": …}`, or a directory holding `user`
/// and `password` files (how Kubernetes mounts a secret).
fn read_login(reference: &str, path: &Path) -> Result<DbLogin, CredentialError> {
    let unreadable = |reason: String| CredentialError::Unreadable {
        reference: reference.to_owned(),
        path: path.display().to_string(),
        reason,
    };
    // Bounded: a credential is small; anything else is a mistake.
    let read = |path: &Path| -> Result<Option<String>, CredentialError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unreadable(e.to_string())),
            Ok(meta) if meta.len() > 64 * 1024 => Err(unreadable("larger than 64 KiB".into())),
            Ok(_) => std::fs::read_to_string(path)
                .map(Some)
                .map_err(|e| unreadable(e.to_string())),
        }
    };
    if path.is_dir() {
        let user = read(&path.join("user"))?
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| unreadable("the directory has no `user` file".into()))?;
        let password = read(&path.join("password"))?
            .map(|p| p.trim_end_matches(['\r', '\n']).to_owned())
            .filter(|p| !p.is_empty())
            .map(Secret::new);
        return Ok(DbLogin { user, password });
    }
    let text = read(path)?.ok_or_else(|| unreadable("no such file".into()))?;
    let file: LoginFile = serde_json::from_str(&text).map_err(|e| {
        // serde's message names the field, never the value.
        unreadable(format!("not a JSON {{\"user\", \"password\"}} object: {e}"))
    })?;
    Ok(DbLogin {
        user: file.user,
        password: file.password.filter(|p| !p.is_empty()).map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_read_only_postern_variables() {
        let env = Env::from_pairs([
            ("POSTERN_CRED_ORDERS_USER", "app"),
            ("POSTERN_CRED_ORDERS_PASSWORD", "s3cret"),
            ("POSTERN_CRED_TRUST_USER", "reader"),
            ("AWS_SECRET_ACCESS_KEY", "nope"),
        ]);
        let credentials = Credentials::from_env(&env, None);
        let login = credentials.resolve("env:ORDERS").unwrap();
        assert_eq!(login.user, "app");
        assert_eq!(login.password.unwrap().expose(), "s3cret");
        assert_eq!(credentials.resolve("env:TRUST").unwrap().password, None);
        assert_eq!(
            credentials.resolve("env:MISSING").unwrap_err(),
            CredentialError::UnsetVariable {
                reference: "env:MISSING".into(),
                var: "POSTERN_CRED_MISSING_USER".into()
            }
        );
        for bad in [
            "env:aws",
            "env:",
            "vault:x",
            "ORDERS",
            "env:A-B",
            "file:../etc",
        ] {
            assert!(
                matches!(credentials.resolve(bad), Err(CredentialError::Syntax(_))),
                "{bad}"
            );
        }
        assert_eq!(credentials.resolve(" "), Err(CredentialError::Missing));
        assert!(!format!("{credentials:?}").contains("s3cret"));
        assert!(!format!("{:?}", credentials.resolve("env:ORDERS")).contains("s3cret"));
    }

    #[test]
    fn file_references_read_json_or_a_secret_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("orders.json"),
            r#"{"user": "app", "password": "pw"}"#,
        )
        .unwrap();
        let k8s = dir.path().join("reports");
        std::fs::create_dir(&k8s).unwrap();
        std::fs::write(k8s.join("user"), "reporter\n").unwrap();
        std::fs::write(k8s.join("password"), "pa:ss\n").unwrap();
        std::fs::write(
            dir.path().join("broken"),
            r#"{"user": "x", "pass": "leak"}"#,
        )
        .unwrap();

        let credentials = Credentials::default();
        assert_eq!(
            credentials.resolve("file:orders.json"),
            Err(CredentialError::NoDirectory("file:orders.json".into()))
        );
        let credentials = credentials.with_dir(dir.path());
        let login = credentials.resolve("file:orders.json").unwrap();
        assert_eq!(
            (login.user.as_str(), login.password.unwrap().expose()),
            ("app", "pw")
        );
        let login = credentials.resolve("file:reports").unwrap();
        assert_eq!(
            (login.user.as_str(), login.password.unwrap().expose()),
            ("reporter", "pa:ss")
        );
        let err = credentials.resolve("file:broken").unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        assert!(!err.contains("leak"), "{err}");
        let err = credentials.resolve("file:absent").unwrap_err().to_string();
        assert!(err.contains("no such file"), "{err}");
    }
}
