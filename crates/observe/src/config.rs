//! The observe layer's settings, read by the binary from flags, the environment and the TOML
//! file like the rest (`[observe]` or flattened; every field has a default that just works).
//!
//! ```toml
//! metrics_bind = "127.0.0.1:9464"      # --metrics-bind / ECOCITYHUB_METRICS_BIND; off by default
//! [audit]
//! retention_days = 365                 # 0 keeps every record
//! digest_interval_seconds = 3600
//! signing_key_file = "/etc/ecocityhub/audit-key.pem"   # default: kept in the database
//! [[alarms]]                           # see alarms::AlarmDefinition
//! name = "http-5xx-rate"
//! enabled = false
//! ```

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::alarms::AlarmDefinition;
use crate::audit::AuditConfig;
use crate::rollups::RollupConfig;
use crate::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObserveConfig {
    /// Where `GET /metrics` (Prometheus) listens; `None`: no listener.
    pub metrics_bind: Option<SocketAddr>,
    /// The CloudWatch namespace of EMF metrics under Lambda.
    pub emf_namespace: String,
    /// The `Service` dimension of EMF metrics.
    pub service_name: String,
    pub rollups: RollupConfig,
    /// Alarms over the built-in ones (same name replaces; `enabled = false` turns one off).
    pub alarms: Vec<AlarmDefinition>,
    pub audit: AuditConfig,
    /// An active station is silent after this many seconds without a reading…
    pub silent_station_seconds: i64,
    /// …and retired (no longer alarming) after this many.
    pub retired_station_seconds: i64,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        ObserveConfig {
            metrics_bind: None,
            emf_namespace: "EcoCityHub".into(),
            service_name: "ecocityhub".into(),
            rollups: RollupConfig::default(),
            alarms: Vec::new(),
            audit: AuditConfig::default(),
            silent_station_seconds: 2 * 3600,
            retired_station_seconds: 30 * 86_400,
        }
    }
}

impl ObserveConfig {
    pub fn validate(&self) -> Result<()> {
        self.rollups.validate()?;
        for a in &self.alarms {
            a.validate()?;
        }
        if self.audit.digest_interval_seconds < 60 {
            return Err(crate::ObserveError::Config(
                "audit.digest_interval_seconds must be at least 60".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults_and_fields_read_from_toml() {
        let c: ObserveConfig = toml::from_str("").unwrap();
        assert_eq!(c, ObserveConfig::default());
        c.validate().unwrap();
        let c: ObserveConfig = toml::from_str(
            r#"
            metrics_bind = "127.0.0.1:9464"
            [audit]
            retention_days = 30
            [[alarms]]
            name = "http-5xx-rate"
            metric = { name = "ecocityhub_http_requests_total" }
            statistic = "sum"
            threshold = 1
            comparison = ">"
            enabled = false
            "#,
        )
        .unwrap();
        assert_eq!(c.metrics_bind, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.audit.retention_days, 30);
        assert_eq!(c.audit.digest_interval_seconds, 3600);
        assert!(!c.alarms[0].enabled);
        assert!(toml::from_str::<ObserveConfig>("metrics_bnd = 1").is_err());
    }
}
