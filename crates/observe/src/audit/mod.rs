//! The audit trail, shaped like CloudTrail: one record per state-changing action (and every
//! sign-in attempt, key change, role change, promotion, job, denied decision), append-only and
//! hash-chained, with signed hourly digests in the blob store.
//!
//! - [`AuditEvent`] is what a caller says happened (CloudTrail's field names in the JSON);
//!   [`redact`] hides secrets in its parameters before anything is stored.
//! - [`Audit`] appends: a bounded channel to one writer task that commits batches (group
//!   commit). `record(..).await` returns only after the record's transaction committed, so an
//!   action answered after it is never unaudited; see [`writer`].
//! - [`chain`] is the hash rule; [`digest`] signs digests (ECDSA P-256) and expires old records
//!   behind a signed checkpoint; [`verify`] finds the first record or digest that was edited,
//!   deleted, inserted, reordered or is missing; [`search`] filters and pages.

pub mod chain;
pub mod digest;
pub mod redact;
pub mod search;
pub mod verify;
pub mod writer;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use digest::{AuditKey, Digester};
pub use redact::redact;
pub use search::{search, SearchFilter, SearchPage};
pub use verify::{
    verify, verify_paged, Problem, ProblemKind, Subject, VerifyOptions, VerifyReport,
};
pub use writer::{Audit, Receipt};

use crate::http::RequestId;

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityType {
    /// A signed-in user.
    User,
    /// A station's sensor with its device key.
    Device,
    /// Someone not signed in (sign-up, a failed sign-in).
    Anonymous,
    /// The command line on the server's machine.
    Cli,
    /// EcoCityHub itself (jobs, schedules).
    System,
}

/// The credential an action was taken with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Credential {
    /// A web session cookie.
    Session,
    AccessToken,
    RefreshToken,
    DeviceKey,
    Password,
    /// An outside OpenID provider.
    Federated,
    Cli,
}

/// CloudTrail's `userIdentity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    #[serde(rename = "type")]
    pub kind: IdentityType,
    /// User id, station id, OS user…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    /// Which credential (a device key's prefix, a token's `jti`, a session's id hash) — never
    /// the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

impl UserIdentity {
    pub fn user(id: &str, roles: &[impl ToString], credential: Credential) -> UserIdentity {
        UserIdentity {
            kind: IdentityType::User,
            id: Some(id.to_string()),
            roles: roles.iter().map(ToString::to_string).collect(),
            credential: Some(credential),
            credential_id: None,
        }
    }

    /// A station's device with the key of this prefix.
    pub fn device(station: &str, key_prefix: &str) -> UserIdentity {
        UserIdentity {
            kind: IdentityType::Device,
            id: Some(station.to_string()),
            roles: Vec::new(),
            credential: Some(Credential::DeviceKey),
            credential_id: Some(key_prefix.to_string()),
        }
    }

    pub fn anonymous() -> UserIdentity {
        UserIdentity {
            kind: IdentityType::Anonymous,
            id: None,
            roles: Vec::new(),
            credential: None,
            credential_id: None,
        }
    }

    /// The command line, as the OS user running it.
    pub fn cli() -> UserIdentity {
        UserIdentity {
            kind: IdentityType::Cli,
            id: std::env::var("USER")
                .ok()
                .or_else(|| std::env::var("LOGNAME").ok()),
            roles: Vec::new(),
            credential: Some(Credential::Cli),
            credential_id: None,
        }
    }

    /// EcoCityHub itself (`jobs`, `scheduler`…).
    pub fn system(component: &str) -> UserIdentity {
        UserIdentity {
            kind: IdentityType::System,
            id: Some(component.to_string()),
            roles: Vec::new(),
            credential: None,
            credential_id: None,
        }
    }

    pub fn with_credential_id(mut self, id: &str) -> UserIdentity {
        self.credential_id = Some(id.to_string());
        self
    }
}

/// Where a request came from, for its audit record: request id, address, user agent. An axum
/// extractor (never fails); the address comes from `ConnectInfo` when the server provides it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditContext {
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl AuditContext {
    pub fn from_parts(parts: &Parts) -> AuditContext {
        AuditContext {
            request_id: parts
                .extensions
                .get::<RequestId>()
                .map(|r| r.to_string())
                .or_else(|| crate::http::current_request_id().map(|r| r.to_string())),
            source_ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
            user_agent: parts
                .headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(AuditContext::from_parts(parts))
    }
}

/// One audited action, with CloudTrail's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    #[serde(with = "millis")]
    pub event_time: DateTime<Utc>,
    /// `api`, `web`, `cli`, `jobs`…
    pub event_source: String,
    /// `SignIn`, `UpdateUser`, `CreateDeviceKey`, `PromoteModel`, `PostReadings`…
    pub event_name: String,
    pub user_identity: UserIdentity,
    #[serde(rename = "sourceIPAddress", skip_serializing_if = "Option::is_none")]
    pub source_ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_elements: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(rename = "requestID", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub read_only: bool,
}

impl AuditEvent {
    /// A successful, state-changing action happening now.
    pub fn new(source: &str, name: &str, identity: UserIdentity) -> AuditEvent {
        AuditEvent {
            event_time: Utc::now(),
            event_source: source.to_string(),
            event_name: name.to_string(),
            user_identity: identity,
            source_ip_address: None,
            user_agent: None,
            request_parameters: None,
            response_elements: None,
            error_code: None,
            error_message: None,
            request_id: None,
            read_only: false,
        }
    }

    /// The request's id, address and user agent.
    pub fn context(mut self, c: &AuditContext) -> AuditEvent {
        self.request_id = c.request_id.clone();
        self.source_ip_address = c.source_ip.clone();
        self.user_agent = c.user_agent.clone();
        self
    }

    /// What was asked (secrets are redacted when the record is written).
    pub fn parameters(mut self, p: Value) -> AuditEvent {
        self.request_parameters = Some(p);
        self
    }

    /// What was answered.
    pub fn response(mut self, r: Value) -> AuditEvent {
        self.response_elements = Some(r);
        self
    }

    /// The action failed.
    pub fn failed(mut self, code: &str, message: &str) -> AuditEvent {
        self.error_code = Some(code.to_string());
        self.error_message = Some(message.to_string());
        self
    }

    pub fn read_only(mut self) -> AuditEvent {
        self.read_only = true;
        self
    }

    pub fn is_error(&self) -> bool {
        self.error_code.is_some()
    }
}

/// A stored record: the event with its id and place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub event_version: String,
    #[serde(rename = "eventID")]
    pub event_id: String,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// RFC 3339 with milliseconds, always in the same form (the hash covers the text).
mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// How long records are kept and how often digests are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Records older than this many days are expired behind a signed checkpoint; 0 keeps
    /// everything.
    pub retention_days: u32,
    /// Seconds between digests (CloudTrail: an hour).
    pub digest_interval_seconds: u64,
    /// The digest signing key (PKCS#8 PEM, created if missing); without it the key is kept in
    /// the store.
    pub signing_key_file: Option<std::path::PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: 365,
            digest_interval_seconds: 3600,
            signing_key_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_cloudtrail_names() {
        let mut e = AuditEvent::new(
            "api",
            "UpdateUser",
            UserIdentity::user("u1", &["admin"], Credential::AccessToken)
                .with_credential_id("jti-1"),
        )
        .parameters(serde_json::json!({"roles": ["operator"]}))
        .failed("forbidden", "no");
        e.request_id = Some("r-1".into());
        e.source_ip_address = Some("127.0.0.1".into());
        e.event_time = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["eventTime"], "2026-12-01T10:00:00.000Z");
        assert_eq!(v["eventSource"], "api");
        assert_eq!(v["userIdentity"]["type"], "User");
        assert_eq!(v["userIdentity"]["credential"], "accessToken");
        assert_eq!(v["userIdentity"]["credentialId"], "jti-1");
        assert_eq!(v["sourceIPAddress"], "127.0.0.1");
        assert_eq!(v["requestID"], "r-1");
        assert_eq!(v["errorCode"], "forbidden");
        assert_eq!(v["readOnly"], false);
        assert!(v.get("responseElements").is_none());
        let back: AuditEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
