//! Connection settings: the seed connector's JSON (Airbyte `source-microsoft-dataverse`) plus
//! `authority_host`, or the `DATAVERSE_URL` / `AZURE_*` environment variables
//! (ARCHITECTURE.md: "CLI contract").
//!
//! The client secret lives in a [`Secret`], whose `Debug` and `Display` never show it.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use url::Url;

/// Largest page Dataverse serves (`Prefer: odata.maxpagesize`, Web API notes: "Paging").
pub const MAX_PAGE_SIZE: u32 = 5000;
/// Where Microsoft Entra ID issues tokens unless `authority_host` says otherwise.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// Errors in the connection settings. Each names the field and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: String,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The config is not the JSON expected.
    #[error("invalid config {origin}")]
    Parse {
        /// The file, or `the environment`.
        origin: String,
        /// The parser's complaint (it names fields, never values).
        source: serde_json::Error,
    },
    /// A field has a value that cannot work.
    #[error("config field `{field}` {problem}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A required environment variable is not set.
    #[error("missing environment variable {0} (or pass --config FILE)")]
    MissingEnv(&'static str),
}

/// A string that must not leak: shown as `***` everywhere.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is sent to the token endpoint.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Settings for one Dataverse environment.
///
/// Field names follow the seed connector's spec exactly, so an Airbyte config file works
/// unchanged; unknown fields are ignored (its spec allows additional properties).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Config {
    /// Environment URL, e.g. `https://contoso.crm.dynamics.com`.
    pub url: String,
    /// The Entra ID tenant (directory) id.
    pub tenant_id: String,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// The app registration's client secret; never logged or shown.
    pub client_secret_value: Secret,
    /// Rows per page, 1..=5000 (default 5000).
    #[serde(default = "default_page_size")]
    pub odata_maxpagesize: u32,
    /// Token authority, default `https://login.microsoftonline.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    /// Seconds to wait for a connection (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_secs: Option<u64>,
    /// Seconds one request may take, body included (default 150).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_secs: Option<u64>,
    /// The environment's name: its catalog when several are connected, and the prompt's name
    /// (default: the host's first label, `simulator` on loopback). Caches and change tokens
    /// are kept by host and port ([`Config::environment_key`]), whatever the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A config file of several environments, the first the default.
#[derive(Deserialize)]
struct SeveralEnvironments {
    environments: Vec<Config>,
}

/// The file's text; warns (like ssh) when others can read it.
fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    warn_if_readable_by_others(path);
    Ok(text)
}

fn default_page_size() -> u32 {
    MAX_PAGE_SIZE
}

impl Config {
    /// Parses and validates a JSON config of one environment. `origin` names the source in
    /// error messages. A file of several (see [`Config::all_from_json`]) is refused here.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut all = Self::all_from_json(text, origin)?;
        if all.len() > 1 {
            return Err(ConfigError::Invalid {
                field: "environments",
                problem: format!(
                    "lists {} environments in {origin}; this reads one: give a file with one",
                    all.len()
                ),
            });
        }
        Ok(all.remove(0))
    }

    /// Parses and validates a JSON config of one environment, or of several:
    /// `{"environments": [{"name": "prod", "url": …}, {"name": "dev", …}]}`, the first the
    /// default, in the order written.
    pub fn all_from_json(text: &str, origin: &str) -> Result<Vec<Self>, ConfigError> {
        let parse_error = |source| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        };
        // Which of the two forms, by the key; then parsed again as that form, so a field's
        // error keeps its line and column.
        let value: serde_json::Value = serde_json::from_str(text).map_err(parse_error)?;
        let configs = if value.get("environments").is_some() {
            let file: SeveralEnvironments = serde_json::from_str(text).map_err(parse_error)?;
            if file.environments.is_empty() {
                return Err(ConfigError::Invalid {
                    field: "environments",
                    problem: format!("is empty in {origin}"),
                });
            }
            file.environments
        } else {
            vec![serde_json::from_str(text).map_err(parse_error)?]
        };
        for config in &configs {
            config.validate()?;
        }
        Ok(configs)
    }

    /// Reads a JSON config file of one environment; warns (like ssh) when others can read it.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = read_config_file(path)?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Reads a JSON config file of one environment or several (`"environments": […]`).
    pub fn all_from_file(path: &Path) -> Result<Vec<Self>, ConfigError> {
        let text = read_config_file(path)?;
        Self::all_from_json(&text, &path.display().to_string())
    }

    /// Builds a config from `DATAVERSE_URL`, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET` and optional `AZURE_AUTHORITY_HOST`, `DATAVERSE_MAXPAGESIZE`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] over any variable lookup (testable without touching the process env).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let need = |name: &'static str| get(name).ok_or(ConfigError::MissingEnv(name));
        let odata_maxpagesize = match get("DATAVERSE_MAXPAGESIZE") {
            None => MAX_PAGE_SIZE,
            Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                field: "odata_maxpagesize",
                problem: format!("must be a whole number, got {v:?}"),
            })?,
        };
        let config = Config {
            url: need("DATAVERSE_URL")?,
            tenant_id: need("AZURE_TENANT_ID")?,
            client_id: need("AZURE_CLIENT_ID")?,
            client_secret_value: Secret::new(need("AZURE_CLIENT_SECRET")?),
            odata_maxpagesize,
            authority_host: get("AZURE_AUTHORITY_HOST"),
            connect_timeout_secs: None,
            request_timeout_secs: None,
            name: None,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_origin("url", &self.url)?;
        if let Some(host) = &self.authority_host {
            check_origin("authority_host", host)?;
        }
        for (field, value) in [
            ("tenant_id", self.tenant_id.as_str()),
            ("client_id", self.client_id.as_str()),
            ("client_secret_value", self.client_secret_value.expose()),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    field,
                    problem: "must not be empty".into(),
                });
            }
        }
        if self.tenant_id.contains(['/', '?', '#']) {
            return Err(ConfigError::Invalid {
                field: "tenant_id",
                problem: "must be a tenant GUID or domain name".into(),
            });
        }
        for (field, value) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
        ] {
            if value == Some(0) {
                return Err(ConfigError::Invalid {
                    field,
                    problem: "must be at least 1 second".into(),
                });
            }
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.odata_maxpagesize) {
            return Err(ConfigError::Invalid {
                field: "odata_maxpagesize",
                problem: format!(
                    "must be between 1 and {MAX_PAGE_SIZE} (Dataverse's largest page), got {}",
                    self.odata_maxpagesize
                ),
            });
        }
        Ok(())
    }

    /// The environment URL without a trailing slash, e.g. `https://contoso.crm.dynamics.com`.
    pub fn environment_url(&self) -> Url {
        // validate() has checked that it parses.
        let mut url = Url::parse(self.url.trim()).expect("validated URL");
        url.set_path("");
        url.set_query(None);
        url.set_fragment(None);
        url
    }

    /// The Web API root, `{url}/api/data/v9.2/`.
    pub fn api_root(&self) -> Url {
        self.environment_url()
            .join("api/data/v9.2/")
            .expect("static path")
    }

    /// `{authority_host}/{tenant_id}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> Url {
        let host = self
            .authority_host
            .as_deref()
            .unwrap_or(DEFAULT_AUTHORITY_HOST)
            .trim_end_matches('/');
        Url::parse(&format!(
            "{host}/{}/oauth2/v2.0/token",
            self.tenant_id.trim()
        ))
        .expect("validated authority host")
    }

    /// The OAuth scope for client credentials: `{url}/.default` (Web API notes: "Token request").
    pub fn scope(&self) -> String {
        format!(
            "{}/.default",
            self.environment_url().as_str().trim_end_matches('/')
        )
    }

    /// A short, file-name-safe key for this environment (host and port), used for the
    /// metadata cache and the change-token store.
    pub fn environment_key(&self) -> String {
        let url = self.environment_url();
        let host = url.host_str().unwrap_or("unknown");
        match url.port() {
            Some(port) => format!("{host}_{port}"),
            None => host.to_string(),
        }
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
    }

    /// A short name for prompts, banners and catalogs: [`Config::name`] when given, else the
    /// first label of the host (`contoso`).
    pub fn environment_name(&self) -> String {
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            return name.to_string();
        }
        let url = self.environment_url();
        let host = url.host_str().unwrap_or("dataverse");
        if is_loopback(&url) {
            return "simulator".into();
        }
        host.split('.').next().unwrap_or(host).to_string()
    }
}

/// `https://` is required, except for loopback hosts (the simulator, local proxies).
fn check_origin(field: &'static str, value: &str) -> Result<(), ConfigError> {
    let url = Url::parse(value.trim()).map_err(|e| ConfigError::Invalid {
        field,
        problem: format!("is not a URL ({e}): {value:?}"),
    })?;
    if url.host_str().is_none() {
        return Err(ConfigError::Invalid {
            field,
            problem: format!("has no host: {value:?}"),
        });
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(ConfigError::Invalid {
            field,
            problem: format!(
                "must use https:// (plain http is allowed only for loopback hosts): {value:?}"
            ),
        }),
        other => Err(ConfigError::Invalid {
            field,
            problem: format!("must be an https:// URL, not {other}://"),
        }),
    }
}

/// True for `localhost`, `127.0.0.0/8` and `[::1]`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "config file {} is readable by other users and holds a client secret; \
             run `chmod 600 {}`",
            path.display(),
            path.display()
        );
        eprintln!(
            "warning: config file {} is accessible by other users (it holds a client secret); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(feature = "simulator")]
impl Config {
    /// Settings for connecting to a running [`crate::sim::Simulator`].
    pub fn for_simulator(sim: &crate::sim::SimulatorHandle) -> Config {
        Config {
            url: sim.url(),
            tenant_id: sim.tenant_id().to_string(),
            client_id: sim.client_id().to_string(),
            client_secret_value: Secret::new(sim.client_secret()),
            odata_maxpagesize: MAX_PAGE_SIZE,
            authority_host: Some(sim.authority_host()),
            connect_timeout_secs: None,
            request_timeout_secs: None,
            name: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(extra: &str) -> String {
        format!(
            r#"{{"url":"https://contoso.crm.dynamics.com","tenant_id":"t1","client_id":"c1","client_secret_value":"s3cr3t"{extra}}}"#
        )
    }

    #[test]
    fn seed_connector_json_is_accepted_with_defaults() {
        let c = Config::from_json(&json(r#","unknown_field":1"#), "test").unwrap();
        assert_eq!(c.odata_maxpagesize, 5000);
        assert_eq!(
            c.api_root().as_str(),
            "https://contoso.crm.dynamics.com/api/data/v9.2/"
        );
        assert_eq!(
            c.token_url().as_str(),
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
        assert_eq!(c.scope(), "https://contoso.crm.dynamics.com/.default");
        assert_eq!(c.environment_name(), "contoso");
    }

    #[test]
    fn secret_never_appears_in_debug_or_errors() {
        let c = Config::from_json(&json(""), "test").unwrap();
        let shown = format!("{c:?} {}", c.client_secret_value);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let bad = Config::from_json(&json(r#","odata_maxpagesize":0"#), "test").unwrap_err();
        assert!(!bad.to_string().contains("s3cr3t"));
    }

    #[test]
    fn page_size_must_be_within_dataverse_limits() {
        for bad in ["0", "99999"] {
            let err = Config::from_json(&json(&format!(r#","odata_maxpagesize":{bad}"#)), "t")
                .unwrap_err()
                .to_string();
            assert!(err.contains("odata_maxpagesize"), "{err}");
        }
        let err = Config::from_json(&json(r#","odata_maxpagesize":"big""#), "t").unwrap_err();
        assert!(err.to_string().contains("invalid config"), "{err}");
    }

    #[test]
    fn plain_http_only_for_loopback() {
        let mut c = Config::from_json(&json(""), "t").unwrap();
        c.url = "http://contoso.crm.dynamics.com".into();
        assert!(c.validate().unwrap_err().to_string().contains("https://"));
        c.url = "http://127.0.0.1:8080".into();
        c.validate().unwrap();
        c.url = "not a url".into();
        assert!(c.validate().unwrap_err().to_string().contains("not a URL"));
    }

    #[test]
    fn missing_fields_are_named() {
        let err =
            Config::from_json(r#"{"url":"https://x.crm.dynamics.com"}"#, "f.json").unwrap_err();
        let report = crate::error_report(&err);
        assert!(report.contains("f.json"), "{report}");
        assert!(report.contains("tenant_id"), "{report}");
    }

    #[test]
    fn one_file_can_list_several_environments_in_order() {
        let (prod, dev) = (json(r#","name":"prod""#), json(r#","name":"dev""#));
        let text = format!(r#"{{"environments": [{prod}, {dev}]}}"#);
        let all = Config::all_from_json(&text, "envs.json").unwrap();
        let names: Vec<String> = all.iter().map(Config::environment_name).collect();
        assert_eq!(names, ["prod", "dev"]);
        // A single-environment file reads the same through either function.
        assert_eq!(Config::all_from_json(&prod, "one.json").unwrap().len(), 1);
        // Where one environment is read (Airbyte, sync), a list is refused by name.
        let err = Config::from_json(&text, "envs.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lists 2 environments in envs.json"), "{err}");
        let empty = Config::all_from_json(r#"{"environments": []}"#, "e.json").unwrap_err();
        assert!(empty.to_string().contains("environments"), "{empty}");
        // Each listed environment is validated, and its errors name the field.
        let bad =
            format!(r#"{{"environments": [{prod}, {{"url": "https://x.crm.dynamics.com"}}]}}"#);
        let report = crate::error_report(&Config::all_from_json(&bad, "envs.json").unwrap_err());
        assert!(report.contains("tenant_id"), "{report}");
    }

    #[test]
    fn env_lookup_builds_a_config() {
        let env = |k: &str| match k {
            "DATAVERSE_URL" => Some("https://org.crm4.dynamics.com/".to_string()),
            "AZURE_TENANT_ID" => Some("tenant".into()),
            "AZURE_CLIENT_ID" => Some("client".into()),
            "AZURE_CLIENT_SECRET" => Some("secret".into()),
            _ => None,
        };
        let c = Config::from_lookup(env).unwrap();
        assert_eq!(c.environment_key(), "org.crm4.dynamics.com");
        let missing = Config::from_lookup(|_| None).unwrap_err().to_string();
        assert!(missing.contains("DATAVERSE_URL"), "{missing}");
    }
}
