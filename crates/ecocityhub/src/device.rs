//! `ecocityhub device …`: create, list and revoke a station's device API keys (creating and
//! revoking are audited as `CreateDeviceKey` and `RevokeDeviceKey`, by prefix only).

use std::sync::Arc;

use anyhow::{bail, Result};
use chrono::Utc;
use clap::Subcommand;
use ecocityhub_api::device_auth;
use ecocityhub_domain::StationId;
use ecocityhub_store::Store;
use serde_json::json;

use crate::audit;

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Create a key for a station and print it (once: only its hash is stored).
    Create {
        /// The station the device reports for (see `station list`).
        #[arg(long)]
        station: String,
        /// A note to recognise the device by.
        #[arg(long)]
        label: Option<String>,
    },
    /// List a station's keys (prefix, label, created, last used, revoked).
    List {
        /// The station whose keys to list.
        #[arg(long)]
        station: String,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its prefix (the 12 characters after `ech_`).
    Revoke {
        /// The key's prefix, as `device list` shows it.
        prefix: String,
    },
}

pub async fn run(command: DeviceCommand, store: &Arc<dyn Store>) -> Result<()> {
    match command {
        DeviceCommand::Create { station, label } => {
            let id = StationId::parse(&station)?;
            if store.station(&id).await?.is_none() {
                bail!("station {id} does not exist (import data for it first, or check the id)");
            }
            let (plain, record) = device_auth::generate(&id, label, Utc::now());
            store.insert_device_key(&record).await?;
            let event = audit::event("CreateDeviceKey")
                .parameters(json!({"station": id.as_str(), "label": record.label}))
                .response(json!({"prefix": record.prefix}));
            audit::record(store, event).await?;
            eprintln!(
                "Created a key for station {id}. It is shown only now; store it on the device:"
            );
            println!("{plain}");
            Ok(())
        }
        DeviceCommand::List { station, json } => {
            let id = StationId::parse(&station)?;
            let keys = store.device_keys(&id).await?;
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "prefix": k.prefix, "station": id.as_str(), "label": k.label,
                            "created_at": k.created_at.to_rfc3339(),
                            "last_used_at": k.last_used_at.map(|t| t.to_rfc3339()),
                            "revoked_at": k.revoked_at.map(|t| t.to_rfc3339()),
                            "active": k.revoked_at.is_none(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            for k in keys {
                println!(
                    "{}\t{}\tcreated {}\tlast used {}\t{}",
                    k.prefix,
                    k.label.as_deref().unwrap_or("-"),
                    k.created_at.format("%Y-%m-%d %H:%M"),
                    k.last_used_at
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "never".into()),
                    if k.revoked_at.is_some() {
                        "REVOKED"
                    } else {
                        "active"
                    }
                );
            }
            Ok(())
        }
        DeviceCommand::Revoke { prefix } => {
            if store.revoke_device_key(&prefix, Utc::now()).await? {
                let event = audit::event("RevokeDeviceKey").parameters(json!({"prefix": prefix}));
                audit::record(store, event).await?;
                println!("revoked {prefix}");
                Ok(())
            } else {
                bail!("no active key with prefix {prefix}")
            }
        }
    }
}
