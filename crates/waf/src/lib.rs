//! EcoCityHub's web application firewall: the role AWS WAF plays on CloudFront.
//!
//! [`Waf`] inspects a request's method, target (raw and decoded), headers, cookies and
//! the first `body_limit` bytes of its body (parsed per content type) with rule groups
//! like AWS WAF's managed ones: SQL injection and XSS (libinjection's tokenisers and the
//! OWASP Core Rule Set's signatures), path traversal and file access, command
//! injection, PHP/Java/Node injection, SSRF, protocol anomalies, known bad inputs and
//! size restrictions. Every rule has a stable id and an action (block, count, allow,
//! off) set per rule or group; per-route exclusions are configuration
//! ([`WafConfig`], shipped as `default.toml`). [`WafLayer`] puts it in front of a tower
//! service; [`corpus`] replays a labelled request corpus and scores it; [`bench`]
//! measures inspection cost.

pub mod bench;
pub mod config;
pub mod corpus;
mod detectors;
mod engine;
pub mod layer;
mod protocol;
mod request;
mod samples;
mod signatures;
#[cfg(test)]
mod tests;
mod transform;

pub use config::{Action, Exclusion, Limits, Oversize, WafConfig};
pub use engine::{RuleInfo, RuleMatch, Verdict, Waf};
pub use layer::{WafLayer, WafService};
pub use request::InspectedRequest;
pub use samples::Sample;

/// Why a firewall could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WafError {
    #[error("invalid WAF configuration: {0}")]
    Config(String),
    #[error("rule file {file}: {reason}")]
    RuleFile { file: String, reason: String },
    #[error("rule {id}: {reason}")]
    Rule { id: String, reason: String },
}
