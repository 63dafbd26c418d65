//! `ecocityhub user …` and `ecocityhub keys …`: the operator's side of the user pool — the
//! first admin comes from `user create` — and signing-key rotation. Each change is audited
//! (`CreateUser`, `RotateSigningKey`, `RotateMasterKey`).

use std::io::BufRead;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Subcommand;
use ecocityhub_api::keys_at_rest;
use ecocityhub_identity::account::{new_user_id, normalize_email};
use ecocityhub_identity::policy::roles_text;
use ecocityhub_identity::{password, Role, SigningKey};
use ecocityhub_store::identity::User;
use ecocityhub_store::Store;
use serde_json::json;

use crate::audit;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a confirmed user. The password is read from standard input (one line), e.g.
    /// `ecocityhub user create --email a@b.org --role admin < password.txt`.
    Create {
        /// The user's e-mail address (their sign-in name).
        #[arg(long)]
        email: String,
        /// citizen, operator or admin; repeat for several.
        #[arg(long = "role", default_value = "citizen")]
        roles: Vec<String>,
    },
    /// List users (id, e-mail, roles, confirmed).
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key. The previous key keeps verifying the tokens it signed; older
    /// ones are retired.
    Rotate,
    /// List signing keys (kid, created, status).
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a new master key for data at rest: every blob's data key and every signing key's
    /// private half is wrapped again under it (the data itself is not re-encrypted). With a
    /// configured key or KMS, change the key there first; this re-wraps under the current one.
    RotateMaster,
}

pub async fn run_user(command: UserCommand, store: &Arc<dyn Store>) -> Result<()> {
    match command {
        UserCommand::Create { email, roles } => {
            let email = normalize_email(&email)?;
            let mut parsed: Vec<Role> = roles
                .iter()
                .map(|r| r.parse().map_err(anyhow::Error::msg))
                .collect::<Result<_>>()?;
            parsed.sort();
            parsed.dedup();
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let secret = line.trim_end_matches(['\n', '\r']);
            if secret.is_empty() {
                bail!("no password on standard input: pipe one in, e.g. `echo 'S3cret-pass' | ecocityhub user create …`");
            }
            password::check_policy(secret)?;
            let user = User {
                id: new_user_id(),
                email: email.clone(),
                password_hash: password::hash(secret),
                roles: parsed,
                confirmed: true,
                created_at: Utc::now(),
            };
            if !store.insert_user(&user).await? {
                bail!("a user with the e-mail {email} exists already");
            }
            let roles = roles_text(&user.roles);
            let event = audit::event("CreateUser")
                .parameters(json!({"email": user.email, "roles": roles, "confirmed": true}))
                .response(json!({"userId": user.id}));
            audit::record(store, event).await?;
            println!("{}\t{}\t{roles}", user.id, user.email);
            Ok(())
        }
        UserCommand::List { json } => {
            let users = store.users().await?;
            if json {
                let rows: Vec<_> = users
                    .iter()
                    .map(|u| {
                        json!({
                            "id": u.id, "email": u.email, "roles": u.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                            "confirmed": u.confirmed, "created_at": u.created_at.to_rfc3339(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            for u in users {
                println!(
                    "{}\t{}\t{}\t{}",
                    u.id,
                    u.email,
                    roles_text(&u.roles),
                    if u.confirmed {
                        "confirmed"
                    } else {
                        "unconfirmed"
                    }
                );
            }
            Ok(())
        }
    }
}

async fn rotate_master(
    store: &Arc<dyn Store>,
    blobs: &ecocityhub_blobs::OpenedBlobs,
) -> Result<()> {
    use ecocityhub_blobs::{BlobError, KeyError};
    let report = match blobs.blobs.rotate_master().await {
        // A configured key or KMS: the key changes there; re-wrap under the current one.
        Err(BlobError::KeyProvider(KeyError::Unsupported { .. })) => {
            blobs.blobs.rewrap_all(true).await?
        }
        other => other?,
    };
    let sealed = keys_at_rest::reseal_all(store.as_ref(), &blobs.sealer()).await?;
    let mut event = audit::event("RotateMasterKey").response(json!({
        "masterKeyId": report.key_id, "blobsRewrapped": report.rewrapped,
        "blobsEncrypted": report.encrypted_plain, "blobsFailed": report.failed.len(),
        "signingKeysSealed": sealed,
    }));
    if !report.failed.is_empty() {
        event = event.failed("PartialFailure", "some blobs could not be re-wrapped");
    }
    audit::record(store, event).await?;
    println!(
        "master key {}: {} blobs re-wrapped, {} encrypted for the first time, {} already current, {} signing keys sealed again",
        report.key_id, report.rewrapped, report.encrypted_plain, report.unchanged, sealed
    );
    for (key, why) in &report.failed {
        eprintln!("not re-wrapped: {key}: {why}");
    }
    if !report.failed.is_empty() {
        anyhow::bail!("{} blobs could not be re-wrapped", report.failed.len());
    }
    Ok(())
}

pub async fn run_keys(
    command: KeysCommand,
    store: &Arc<dyn Store>,
    blobs: &ecocityhub_blobs::OpenedBlobs,
) -> Result<()> {
    let sealer = blobs.sealer();
    match command {
        KeysCommand::Rotate => rotate(store, &sealer).await,
        KeysCommand::List { json } => {
            let keys = store.signing_keys().await?;
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "kid": k.kid, "created_at": k.created_at.to_rfc3339(),
                            "retired_at": k.retired_at.map(|t| t.to_rfc3339()),
                            "active": k.retired_at.is_none(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            for k in keys {
                let status = k.retired_at.map_or("active".to_string(), |t| {
                    format!("retired {}", t.format("%Y-%m-%d %H:%M"))
                });
                println!(
                    "{}\tcreated {}\t{status}",
                    k.kid,
                    k.created_at.format("%Y-%m-%d %H:%M")
                );
            }
            Ok(())
        }
        KeysCommand::RotateMaster => rotate_master(store, blobs).await,
    }
}

/// A new signing key; the newest old key keeps verifying its tokens until they expire, older
/// ones are retired.
async fn rotate(store: &Arc<dyn Store>, sealer: &ecocityhub_blobs::Sealer) -> Result<()> {
    let mut active: Vec<SigningKey> = store
        .signing_keys()
        .await?
        .into_iter()
        .filter(|k| k.retired_at.is_none())
        .collect();
    active.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    let now = after_second_of(active.first()).await;
    let key = SigningKey::generate(now);
    keys_at_rest::insert(store.as_ref(), Some(sealer), &key).await?;
    let mut retired = Vec::new();
    for old in active.iter().skip(1) {
        store.retire_signing_key(&old.kid, now).await?;
        retired.push(old.kid.clone());
    }
    let event =
        audit::event("RotateSigningKey").response(json!({"kid": key.kid, "retiredKids": retired}));
    audit::record(store, event).await?;
    for kid in &retired {
        println!("retired {kid}");
    }
    println!("new signing key {}", key.kid);
    Ok(())
}

/// Now, once the second in which `newest` was made has passed: keys are stored with whole
/// seconds, and a key made in the same second as the newest would tie with it and might not be
/// the one that signs.
async fn after_second_of(newest: Option<&SigningKey>) -> chrono::DateTime<Utc> {
    let now = Utc::now();
    let Some(newest) = newest else { return now };
    let wait = (newest.created_at.timestamp() + 1) * 1000 - now.timestamp_millis();
    if (1..=1000).contains(&wait) {
        tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
        return Utc::now();
    }
    now
}
