//! The saved login: gateway URL, token and CA, in the user's config directory
//! (file mode 0600). `POSTERN_GATEWAY_URL`, `POSTERN_TOKEN` and `POSTERN_CA_CERT`
//! override it, for automation; `POSTERN_CONFIG` names another file.

use std::path::{Path, PathBuf};

use postern_tunnel::Secret;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "not logged in: run `postern login <gateway-url> --token <token>` (or set POSTERN_GATEWAY_URL and POSTERN_TOKEN)"
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
    pub token: Secret,
    pub ca_cert: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct StoredLogin {
    gateway_url: String,
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_cert: Option<PathBuf>,
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
        let token = env("POSTERN_TOKEN").or_else(|| saved.as_ref().map(|s| s.token.clone()));
        let ca_cert = env("POSTERN_CA_CERT")
            .map(PathBuf::from)
            .or_else(|| saved.as_ref().and_then(|s| s.ca_cert.clone()));
        match (gateway_url, token) {
            (Some(gateway_url), Some(token)) => Ok(Self {
                gateway_url,
                token: Secret::new(token),
                ca_cert,
            }),
            _ => Err(ConfigError::NotLoggedIn),
        }
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
        };
        let json = serde_json::to_vec_pretty(&stored).expect("a login serialises");
        std::fs::write(path, json).map_err(write_err)?;
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
