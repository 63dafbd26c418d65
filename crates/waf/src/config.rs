//! The firewall's configuration. The defaults live in `default.toml` in this crate; a
//! `[waf]` table of the binary's TOML file overrides any field (the `rules` and `groups`
//! action tables are merged into the shipped ones, other fields replace them).

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The shipped default configuration.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Answer 403 and stop.
    Block,
    /// Record the match (log, metric) and go on.
    Count,
    /// Let the request through without looking further.
    Allow,
    /// Do not evaluate the rule.
    Off,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Count => "count",
            Action::Allow => "allow",
            Action::Off => "off",
        }
    }
}

/// What to do with a body longer than `body_limit` (AWS WAF's oversize handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Oversize {
    /// Inspect the first `body_limit` bytes and pass the rest unseen.
    Continue,
    /// Block the request (rule `size-body-oversize`).
    Block,
}

/// Requests some rules do not inspect: on a route (method and path), the named rules
/// skip the named parts of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    /// Why the exclusion exists.
    #[serde(default)]
    pub description: String,
    /// Methods it applies to; empty for all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The path, exactly, or a prefix ending in `*`.
    pub path: String,
    /// Rule ids, group names (`sqli`), id prefixes ending in `*` (`rce-932*`), or `*`.
    pub rules: Vec<String>,
    /// Parts of the request: `body`, `query`, `arg:NAME`, `cookie:NAME`, `header:NAME`, or `*`.
    pub targets: Vec<String>,
}

/// Size restrictions (rule group `size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_uri_bytes: usize,
    pub max_args: usize,
    pub max_arg_name_bytes: usize,
    pub max_arg_bytes: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// Everything the firewall is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WafConfig {
    /// Off: every request passes uninspected.
    #[serde(default = "shipped::enabled")]
    pub enabled: bool,
    /// Bytes of a body that are inspected (AWS WAF on CloudFront: 16 KiB).
    #[serde(default = "shipped::body_limit")]
    pub body_limit: usize,
    #[serde(default = "shipped::oversize")]
    pub oversize: Oversize,
    /// Core Rule Set signatures above this paranoia level are not loaded (1–4).
    #[serde(default = "shipped::paranoia")]
    pub paranoia: u8,
    /// The action of a rule that neither `rules` nor `groups` names.
    #[serde(default = "shipped::default_action")]
    pub default_action: Action,
    /// Action per rule group (`sqli`, `xss`, `protocol`…).
    #[serde(default = "shipped::groups", deserialize_with = "merge_groups")]
    pub groups: BTreeMap<String, Action>,
    /// Action per rule id; wins over the group's.
    #[serde(default = "shipped::rules", deserialize_with = "merge_rules")]
    pub rules: BTreeMap<String, Action>,
    /// Per-route exclusions (replaces the shipped list).
    #[serde(default = "shipped::exclusions")]
    pub exclusions: Vec<Exclusion>,
    /// Exclusions added to `exclusions`.
    #[serde(default = "shipped::extra_exclusions")]
    pub extra_exclusions: Vec<Exclusion>,
    #[serde(default = "shipped::limits")]
    pub limits: Limits,
    #[serde(default = "shipped::allowed_methods")]
    pub allowed_methods: Vec<String>,
    #[serde(default = "shipped::allowed_http_versions")]
    pub allowed_http_versions: Vec<String>,
    /// Media types a body may have (lower case, without parameters).
    #[serde(default = "shipped::allowed_content_types")]
    pub allowed_content_types: Vec<String>,
    #[serde(default = "shipped::allowed_charsets")]
    pub allowed_charsets: Vec<String>,
    /// File extensions no request path may end in (`.bak`, `.sql`…).
    #[serde(default = "shipped::restricted_extensions")]
    pub restricted_extensions: Vec<String>,
    /// Header names no request may carry (`proxy`, `x-http-method-override`…).
    #[serde(default = "shipped::restricted_headers")]
    pub restricted_headers: Vec<String>,
    /// How many blocked requests are kept for `Waf::samples`.
    #[serde(default = "shipped::sample_size")]
    pub sample_size: usize,
}

impl Default for WafConfig {
    fn default() -> Self {
        shipped_config().clone()
    }
}

impl WafConfig {
    /// Parses a TOML document (the contents of a `[waf]` table) over the defaults.
    pub fn from_toml(text: &str) -> Result<WafConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// All exclusions in force.
    pub fn all_exclusions(&self) -> impl Iterator<Item = &Exclusion> {
        self.exclusions.iter().chain(&self.extra_exclusions)
    }
}

fn shipped_table() -> &'static toml::Table {
    static TABLE: OnceLock<toml::Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        DEFAULT_TOML
            .parse()
            .expect("default.toml is valid TOML (tested)")
    })
}

fn shipped_config() -> &'static WafConfig {
    static CONFIG: OnceLock<WafConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        toml::from_str(DEFAULT_TOML).expect("default.toml is a valid configuration (tested)")
    })
}

fn shipped_value<T: serde::de::DeserializeOwned>(key: &str) -> T {
    let value = shipped_table()
        .get(key)
        .unwrap_or_else(|| panic!("default.toml sets `{key}` (tested)"));
    value
        .clone()
        .try_into()
        .unwrap_or_else(|e| panic!("default.toml: `{key}`: {e}"))
}

macro_rules! shipped_fields {
    ($($name:ident: $ty:ty),* $(,)?) => {
        mod shipped {
            use super::*;
            $(pub fn $name() -> $ty { shipped_value(stringify!($name)) })*
        }
    };
}

shipped_fields! {
    enabled: bool, body_limit: usize, oversize: Oversize, paranoia: u8, default_action: Action,
    groups: BTreeMap<String, Action>, rules: BTreeMap<String, Action>,
    exclusions: Vec<Exclusion>, extra_exclusions: Vec<Exclusion>, limits: Limits,
    allowed_methods: Vec<String>, allowed_http_versions: Vec<String>,
    allowed_content_types: Vec<String>, allowed_charsets: Vec<String>,
    restricted_extensions: Vec<String>, restricted_headers: Vec<String>, sample_size: usize,
}

fn merge_groups<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Action>, D::Error> {
    let mut merged = shipped::groups();
    merged.extend(BTreeMap::<String, Action>::deserialize(d)?);
    Ok(merged)
}

fn merge_rules<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Action>, D::Error> {
    let mut merged = shipped::rules();
    merged.extend(BTreeMap::<String, Action>::deserialize(d)?);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_sets_every_field() {
        let table = shipped_table();
        let config: WafConfig = toml::from_str(DEFAULT_TOML).unwrap();
        let fields = toml::Table::try_from(&config).unwrap();
        for key in fields.keys() {
            assert!(table.contains_key(key), "default.toml lacks `{key}`");
        }
        assert_eq!(config.body_limit, 16 * 1024);
    }

    #[test]
    fn an_override_changes_only_what_it_names() {
        let c = WafConfig::from_toml("body_limit = 1024\n[rules]\nsqli-libinjection = \"count\"\n")
            .unwrap();
        assert_eq!(c.body_limit, 1024);
        assert_eq!(c.rules.get("sqli-libinjection"), Some(&Action::Count));
        let d = WafConfig::default();
        for (k, v) in &d.rules {
            assert_eq!(c.rules.get(k), Some(v), "shipped rule action {k} kept");
        }
        assert_eq!(c.exclusions, d.exclusions);
        assert!(WafConfig::from_toml("bogus = 1").is_err());
    }
}
