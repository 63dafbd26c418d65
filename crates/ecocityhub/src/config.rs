//! Configuration: command-line flags, then environment variables (clap reads both), then an
//! optional TOML file (`--config`, `ECOCITYHUB_CONFIG`, or `./ecocityhub.toml` if present),
//! then defaults that work with no set-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ecocityhub_api::federation::{OidcProviderConfig, DEFAULT_SCOPES};
use serde::Deserialize;

/// Settings that may come from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `HOST:PORT`; the host may be a name (`localhost:8080`).
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_format: Option<String>,
    pub demo: Option<bool>,
    pub replay: Option<bool>,
    pub public_url: Option<String>,
    pub blobs_dir: Option<PathBuf>,
    /// Map tiles under the stations (`https://tile.example.org/{z}/{x}/{y}.png`).
    pub map_tile_url: Option<String>,
    /// The tiles' attribution, shown under the map.
    pub map_tile_attribution: Option<String>,
    /// The name in the pages' header and titles (default "EcoCityHub").
    pub site_name: Option<String>,
    /// The index the pages put first: `us_aqi` (the default) or `eaqi` (the European index).
    pub headline_index: Option<String>,
    /// How often the token-signing keys are read again from the database, in seconds.
    pub key_refresh_seconds: Option<u64>,
    /// The blob layer (`[blobs]`: backend, keys, versioning, uploads, photos).
    pub blobs: Option<ecocityhub_blobs::BlobsConfig>,
    /// The notification layer (`[notify]`: mail, webhooks, push, the delivery worker, alarms).
    #[serde(default)]
    pub notify: ecocityhub_notify::NotifyConfig,
    /// Monitoring and the audit trail (`[observe]`: metrics listener, alarms, retention).
    #[serde(default)]
    pub observe: ecocityhub_observe::ObserveConfig,
    /// The edge (`[edge]`: rate limits, load shedding, cache, compression, timeouts, TLS).
    #[serde(default)]
    pub edge: ecocityhub_edge::config::EdgeConfig,
    /// Citizens' reports (`[reports]`: categories, rate limits).
    #[serde(default)]
    pub reports: ecocityhub_api::reports::ReportsConfig,
    /// The web application firewall (`[waf]`: rule actions and exclusions over the shipped set).
    #[serde(default)]
    pub waf: ecocityhub_waf::WafConfig,
    /// Backups (`[backup]`: schedule, retention, PostgreSQL client tools).
    #[serde(default)]
    pub backup: ecocityhub_backup::BackupConfig,
    /// Outside OpenID Connect providers users may sign in with (`[[oidc_providers]]`).
    #[serde(default)]
    pub oidc_providers: Vec<OidcProviderFile>,
}

/// One `[[oidc_providers]]` table. Every field but `name` may instead (or also: the
/// environment wins) come from `ECOCITYHUB_OIDC_<NAME>_<FIELD>`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderFile {
    pub name: String,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scopes: Option<String>,
    pub token_endpoint: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub assume_email_verified: Option<bool>,
}

/// Never shows the client secret.
impl std::fmt::Debug for OidcProviderFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProviderFile")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("scopes", &self.scopes)
            .field("token_endpoint", &self.token_endpoint)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("assume_email_verified", &self.assume_email_verified)
            .finish()
    }
}

/// Names providers by environment alone: `ECOCITYHUB_OIDC_PROVIDERS=google,facebook`.
pub const OIDC_PROVIDERS_ENV: &str = "ECOCITYHUB_OIDC_PROVIDERS";

/// The environment variable of one provider's field: `ECOCITYHUB_OIDC_GOOGLE_CLIENT_ID`.
pub fn oidc_env_name(provider: &str, field: &str) -> String {
    format!(
        "ECOCITYHUB_OIDC_{}_{}",
        provider.to_uppercase().replace('-', "_"),
        field.to_uppercase()
    )
}

/// The outside OIDC providers: the TOML file's `[[oidc_providers]]`, then those named only in
/// `ECOCITYHUB_OIDC_PROVIDERS`; `env` (the process environment, in tests a map) fills and
/// overrides their fields.
pub fn oidc_providers(
    file: &FileConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<OidcProviderConfig>> {
    let mut declared: Vec<OidcProviderFile> = Vec::new();
    for p in &file.oidc_providers {
        if declared.iter().any(|d| d.name == p.name) {
            bail!("the OIDC provider {:?} is configured twice", p.name);
        }
        declared.push(OidcProviderFile {
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.clone(),
            scopes: p.scopes.clone(),
            token_endpoint: p.token_endpoint.clone(),
            token_endpoint_auth_method: p.token_endpoint_auth_method.clone(),
            assume_email_verified: p.assume_email_verified,
        });
    }
    for name in env(OIDC_PROVIDERS_ENV)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        if !declared.iter().any(|d| d.name == name) {
            declared.push(OidcProviderFile {
                name: name.to_string(),
                ..Default::default()
            });
        }
    }
    declared
        .into_iter()
        .map(|p| {
            let name = p.name;
            let valid_name = !name.is_empty()
                && name.len() <= 32
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !valid_name {
                bail!("the OIDC provider name {name:?} must be 1 to 32 lower-case letters, digits, '-' or '_'");
            }
            let field = |key: &str, from_file: Option<String>| {
                env(&oidc_env_name(&name, key))
                    .filter(|v| !v.is_empty())
                    .or(from_file)
            };
            let required = |key: &str, from_file: Option<String>| {
                field(key, from_file).with_context(|| {
                    format!(
                        "the OIDC provider {name:?} needs its {key}: `{key}` in its [[oidc_providers]] table or {}",
                        oidc_env_name(&name, key)
                    )
                })
            };
            let issuer = required("issuer", p.issuer)?;
            if !issuer.starts_with("https://") && !issuer.starts_with("http://") {
                bail!("the OIDC provider {name:?} has the issuer {issuer:?}: it must be an https:// URL");
            }
            let mut config = OidcProviderConfig::new(
                name.clone(),
                issuer,
                required("client_id", p.client_id)?,
                required("client_secret", p.client_secret)?,
            );
            config.scopes = field("scopes", p.scopes).unwrap_or_else(|| DEFAULT_SCOPES.into());
            if !config.scopes.split(' ').any(|s| s == "openid") {
                bail!("the OIDC provider {name:?} needs `openid` among its scopes");
            }
            config.token_endpoint = field("token_endpoint", p.token_endpoint);
            config.token_endpoint_auth_method =
                match field("token_endpoint_auth_method", p.token_endpoint_auth_method) {
                    Some(method) => Some(method.parse().map_err(|e| {
                        anyhow::anyhow!("the OIDC provider {name:?}'s token_endpoint_auth_method: {e}")
                    })?),
                    None => None,
                };
            config.assume_email_verified = match env(&oidc_env_name(&name, "assume_email_verified")) {
                Some(v) => matches!(v.as_str(), "1" | "true" | "yes"),
                None => p.assume_email_verified.unwrap_or(false),
            };
            Ok(config)
        })
        .collect()
}

impl FileConfig {
    /// Reads the file named by `explicit`, or `./ecocityhub.toml` when it exists.
    pub fn load(explicit: Option<&Path>) -> Result<FileConfig> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None if Path::new("ecocityhub.toml").exists() => PathBuf::from("ecocityhub.toml"),
            None => return Ok(FileConfig::default()),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid", path.display()))
    }
}

/// The database to use: `DATABASE_URL` if given, else an SQLite file `ecocityhub.db` in the
/// data directory. Nothing is created here: whether a command may make a missing database is
/// decided by `crate::prepare_database`.
pub fn database_url(
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    file: &FileConfig,
) -> Result<String> {
    let data_dir = data_dir
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("data"));
    match database_url.or_else(|| file.database_url.clone()) {
        Some(url) if !url.is_empty() => Ok(url),
        _ => Ok(format!(
            "sqlite://{}",
            data_dir.join("ecocityhub.db").display()
        )),
    }
}

/// An address to listen on, `HOST:PORT`: an IP address (`127.0.0.1:8080`, `[::1]:8080`) or a
/// host name (`localhost:8080`) with the addresses it resolves to, IPv4 first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindAddress {
    pub text: String,
    pub addrs: Vec<SocketAddr>,
}

impl std::fmt::Display for BindAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses (and resolves) an address to listen on; the error says what is expected.
pub fn parse_bind(text: &str) -> Result<BindAddress, String> {
    use std::net::ToSocketAddrs;
    let expected =
        "expected HOST:PORT, such as 127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080 or localhost:8080";
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(BindAddress {
            text: text.to_string(),
            addrs: vec![addr],
        });
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("invalid address {text:?}: no port; {expected}"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("invalid address {text:?}: {expected}"));
    }
    let mut addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| {
            format!("invalid address {text:?}: cannot resolve {host:?} ({e}); {expected}")
        })?
        .collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs.dedup();
    if addrs.is_empty() {
        return Err(format!(
            "invalid address {text:?}: {host:?} resolves to no address"
        ));
    }
    Ok(BindAddress {
        text: text.to_string(),
        addrs,
    })
}

/// The data directory: the flag or variable, the file's `data_dir`, else `./data`.
pub fn data_dir(data_dir: Option<PathBuf>, file: &FileConfig) -> PathBuf {
    data_dir
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("data"))
}

/// The blob layer's settings: the file's `[blobs]` table, with the directory from
/// `--blobs-dir`, `ECOCITYHUB_BLOBS_DIR` or `blobs_dir` when given (else `[blobs] dir`, else
/// `DATA_DIR/blobs`).
pub fn blobs_config(
    data_dir: Option<PathBuf>,
    blobs_dir_arg: Option<PathBuf>,
    file: &FileConfig,
) -> ecocityhub_blobs::BlobsConfig {
    let mut config = file.blobs.clone().unwrap_or_default();
    if blobs_dir_arg.is_some() || file.blobs_dir.is_some() || config.dir.is_none() {
        config.dir = Some(blobs_dir(data_dir, blobs_dir_arg, file));
    }
    config
}

/// The directory of blobs: the flag or variable, the file's `blobs_dir`, else `blobs` inside
/// the data directory.
pub fn blobs_dir(
    data_dir: Option<PathBuf>,
    blobs_dir: Option<PathBuf>,
    file: &FileConfig,
) -> PathBuf {
    blobs_dir
        .or_else(|| file.blobs_dir.clone())
        .unwrap_or_else(|| {
            data_dir
                .or_else(|| file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from("data"))
                .join("blobs")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_fills_what_flags_leave_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "bind = \"0.0.0.0:9000\"\ndatabase_url = \"postgres://x/y\"\n",
        )
        .unwrap();
        let file = FileConfig::load(Some(&path)).unwrap();
        assert_eq!(file.bind.as_deref(), Some("0.0.0.0:9000"));
        assert_eq!(database_url(None, None, &file).unwrap(), "postgres://x/y");
        let url = database_url(
            Some(dir.path().to_path_buf()),
            Some(String::new()),
            &FileConfig::default(),
        )
        .unwrap();
        assert!(url.ends_with("ecocityhub.db"));
        std::fs::write(&path, "colour = 1\n").unwrap();
        assert!(FileConfig::load(Some(&path)).is_err());
    }

    #[test]
    fn bind_addresses_may_name_a_host() {
        let ip = parse_bind("127.0.0.1:8080").unwrap();
        assert_eq!(ip.addrs, vec!["127.0.0.1:8080".parse().unwrap()]);
        let v6 = parse_bind("[::1]:0").unwrap();
        assert_eq!(v6.addrs.len(), 1);
        let named = parse_bind("localhost:8080").unwrap();
        assert!(!named.addrs.is_empty(), "{named:?}");
        assert!(named
            .addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8080));
        for bad in [
            "not-an-address",
            "localhost",
            ":8080",
            "localhost:http",
            "localhost:70000",
        ] {
            let e = parse_bind(bad).unwrap_err();
            assert!(
                e.contains("invalid address") && e.contains("HOST:PORT"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn oidc_providers_come_from_the_file_and_the_environment() {
        let file: FileConfig = toml::from_str(
            r#"
            [[oidc_providers]]
            name = "google"
            issuer = "https://accounts.google.com"
            client_id = "123.apps.googleusercontent.com"

            [[oidc_providers]]
            name = "facebook"
            issuer = "https://www.facebook.com"
            client_id = "file-app-id"
            client_secret = "file-secret"
            scopes = "openid email"
            token_endpoint = "https://graph.facebook.com/oauth/access_token"
            token_endpoint_auth_method = "client_secret_post"
            assume_email_verified = true
            "#,
        )
        .unwrap();
        let env: std::collections::HashMap<&str, &str> = [
            ("ECOCITYHUB_OIDC_GOOGLE_CLIENT_SECRET", "google-secret"),
            ("ECOCITYHUB_OIDC_FACEBOOK_CLIENT_ID", "env-app-id"),
            ("ECOCITYHUB_OIDC_PROVIDERS", "google, city-sso"),
            (
                "ECOCITYHUB_OIDC_CITY_SSO_ISSUER",
                "https://sso.city.example",
            ),
            ("ECOCITYHUB_OIDC_CITY_SSO_CLIENT_ID", "ecocityhub"),
            ("ECOCITYHUB_OIDC_CITY_SSO_CLIENT_SECRET", "sso-secret"),
        ]
        .into_iter()
        .collect();
        let providers = oidc_providers(&file, |k| env.get(k).map(|v| v.to_string())).unwrap();
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["google", "facebook", "city-sso"]);
        assert_eq!(providers[0].client_secret, "google-secret");
        assert_eq!(providers[0].scopes, "openid email profile");
        assert!(!providers[0].assume_email_verified);
        assert_eq!(providers[1].client_id, "env-app-id", "the environment wins");
        assert_eq!(providers[1].scopes, "openid email");
        assert!(providers[1].assume_email_verified);
        assert!(providers[1].token_endpoint.is_some());
        assert_eq!(
            providers[1].token_endpoint_auth_method,
            Some(ecocityhub_api::federation::TokenAuthMethod::ClientSecretPost)
        );
        assert_eq!(providers[2].issuer, "https://sso.city.example");

        let missing = oidc_providers(&file, |_| None).unwrap_err().to_string();
        assert!(
            missing.contains("client_secret")
                && missing.contains("ECOCITYHUB_OIDC_GOOGLE_CLIENT_SECRET"),
            "{missing}"
        );
        let bad: FileConfig = toml::from_str("[[oidc_providers]]\nname = \"Google!\"\n").unwrap();
        assert!(oidc_providers(&bad, |_| None).is_err());
        assert!(
            toml::from_str::<FileConfig>("[[oidc_providers]]\nname = \"x\"\nsecret = \"s\"\n")
                .is_err()
        );
        assert!(!format!("{file:?}").contains("file-secret"));
    }
}
