//! The saved login: gateway URL, token and CA, in the user's config directory
//! (file mode 0600), and for an OIDC login the refresh token, the access
//! token's expiry and the token endpoint. `POSTERN_GATEWAY_URL`, `POSTERN_TOKEN`
//! and `POSTERN_CA_CERT` override it, for automation; `POSTERN_CONFIG` names
//! another file. Files written before OIDC logins existed load unchanged.

use std::path::{Path, PathBuf};

use postern_tunnel::Secret;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "not logged in: run `postern login <gateway-url>` (or set POSTERN_GATEWAY_URL and POSTERN_TOKEN)"
    )]
    NotLoggedIn,
    #[error("cannot find a config directory: set POSTERN_CONFIG")]
    NoConfigDir,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid postern config: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Login {
    pub gateway_url: String,
    /// An API token, or an OIDC access token (then `oidc` is set).
    pub token: Secret,
    pub ca_cert: Option<PathBuf>,
    /// How to renew `token`; `None` for API tokens and for `POSTERN_TOKEN`.
    pub oidc: Option<OidcSession>,
}

/// What renews an OIDC login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSession {
    pub issuer: String,
    pub client_id: String,
    pub token_endpoint: String,
    pub refresh_token: Option<Secret>,
    /// When `token` expires, in milliseconds since the epoch (if known).
    pub expires_at_ms: Option<i64>,
    /// Logged in with `--mfa`: logging in again needs it too.
    pub mfa: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredLogin {
    gateway_url: String,
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oidc: Option<StoredOidc>,
}

#[derive(Serialize, Deserialize)]
struct StoredOidc {
    issuer: String,
    client_id: String,
    token_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
    #[serde(default)]
    mfa: bool,
}

impl From<StoredOidc> for OidcSession {
    fn from(s: StoredOidc) -> Self {
        Self {
            issuer: s.issuer,
            client_id: s.client_id,
            token_endpoint: s.token_endpoint,
            refresh_token: s.refresh_token.map(Secret::new),
            expires_at_ms: s.expires_at_ms,
            mfa: s.mfa,
        }
    }
}

impl From<&OidcSession> for StoredOidc {
    fn from(s: &OidcSession) -> Self {
        Self {
            issuer: s.issuer.clone(),
            client_id: s.client_id.clone(),
            token_endpoint: s.token_endpoint.clone(),
            refresh_token: s.refresh_token.as_ref().map(|t| t.expose().to_owned()),
            expires_at_ms: s.expires_at_ms,
            mfa: s.mfa,
        }
    }
}

pub fn config_path() -> Result<PathBuf, ConfigError> {
    if let Some(path) = std::env::var_os("POSTERN_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    dirs::config_dir()
        .map(|dir| dir.join("postern").join("config.json"))
        .ok_or(ConfigError::NoConfigDir)
}

impl Login {
    /// The saved login with environment overrides applied.
    pub fn load() -> Result<Self, ConfigError> {
        let path = config_path()?;
        let saved =
            match std::fs::read(&path) {
                Ok(bytes) => Some(serde_json::from_slice::<StoredLogin>(&bytes).map_err(
                    |source| ConfigError::Parse {
                        path: path.clone(),
                        source,
                    },
                )?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(ConfigError::Read { path, source }),
            };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let gateway_url =
            env("POSTERN_GATEWAY_URL").or_else(|| saved.as_ref().map(|s| s.gateway_url.clone()));
        let ca_cert = env("POSTERN_CA_CERT")
            .map(PathBuf::from)
            .or_else(|| saved.as_ref().and_then(|s| s.ca_cert.clone()));
        // A token from the environment is used as it is: never renewed.
        let (token, oidc) = match env("POSTERN_TOKEN") {
            Some(token) => (Some(token), None),
            None => match saved {
                Some(saved) => (Some(saved.token), saved.oidc.map(OidcSession::from)),
                None => (None, None),
            },
        };
        match (gateway_url, token) {
            (Some(gateway_url), Some(token)) => Ok(Self {
                gateway_url,
                token: Secret::new(token),
                ca_cert,
                oidc,
            }),
            _ => Err(ConfigError::NotLoggedIn),
        }
    }

    /// Saves to the config file (`POSTERN_CONFIG` or the default).
    pub fn save_default(&self) -> Result<PathBuf, ConfigError> {
        let path = config_path()?;
        self.save(&path)?;
        Ok(path)
    }

    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let write_err = |source| ConfigError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let stored = StoredLogin {
            gateway_url: self.gateway_url.clone(),
            token: self.token.expose().to_owned(),
            ca_cert: self.ca_cert.clone(),
            oidc: self.oidc.as_ref().map(StoredOidc::from),
        };
        let json = serde_json::to_vec_pretty(&stored).expect("a login serialises");
        // Written beside the file with mode 0600 from the start, then renamed
        // over it: the tokens are never readable by others, and a CLI reading
        // concurrently (a refresh in another terminal) never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let written = options.open(&tmp).and_then(|mut file| {
            use std::io::Write;
            file.write_all(&json)?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(write_err)?;
        }
        Ok(())
    }

    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        self.ca_cert
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_config_files_still_load_and_new_ones_round_trip() {
        let old: StoredLogin = serde_json::from_str(
            r#"{"gateway_url":"https://gw","token":"pst_user_x","ca_cert":"/ca.pem"}"#,
        )
        .unwrap();
        assert!(old.oidc.is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postern").join("config.json");
        let login = Login {
            gateway_url: "https://gw".into(),
            token: Secret::new("access"),
            ca_cert: None,
            oidc: Some(OidcSession {
                issuer: "https://idp".into(),
                client_id: "cli".into(),
                token_endpoint: "https://idp/token".into(),
                refresh_token: Some(Secret::new("refresh")),
                expires_at_ms: Some(42),
                mfa: true,
            }),
        };
        login.save(&path).unwrap();
        let stored: StoredLogin = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(stored.token, "access");
        assert_eq!(OidcSession::from(stored.oidc.unwrap()), login.oidc.unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }
}
