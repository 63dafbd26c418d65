//! `ecocityhub user …` and `ecocityhub keys …`: the operator's side of the user pool — the
//! first admin comes from `user create` — and signing-key rotation.

use std::io::BufRead;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Subcommand;
use ecocityhub_api::keys_at_rest;
use ecocityhub_identity::account::{new_user_id, normalize_email};
use ecocityhub_identity::policy::roles_text;
use ecocityhub_identity::{password, Role, SigningKey};
use ecocityhub_store::identity::User;
use ecocityhub_store::Store;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a confirmed user. The password is read from standard input (one line), e.g.
    /// `ecocityhub user create --email a@b.org --role admin < password.txt`.
    Create {
        #[arg(long)]
        email: String,
        /// citizen, operator or admin; repeat for several.
        #[arg(long = "role", default_value = "citizen")]
        roles: Vec<String>,
    },
    /// List users (id, e-mail, roles, confirmed).
    List,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key. The previous key keeps verifying the tokens it signed; older
    /// ones are retired.
    Rotate,
    /// List signing keys (kid, created, status).
    List,
    /// Make a new master key for data at rest: every blob's data key and every signing key's
    /// private half is wrapped again under it (the data itself is not re-encrypted). With a
    /// configured key or KMS, change the key there first; this re-wraps under the current one.
    RotateMaster,
}

pub async fn run_user(command: UserCommand, store: &dyn Store) -> Result<()> {
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
            println!("{}\t{}\t{}", user.id, user.email, roles_text(&user.roles));
            Ok(())
        }
        UserCommand::List => {
            for u in store.users().await? {
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

async fn rotate_master(store: &dyn Store, blobs: &ecocityhub_blobs::OpenedBlobs) -> Result<()> {
    use ecocityhub_blobs::{BlobError, KeyError};
    let report = match blobs.blobs.rotate_master().await {
        // A configured key or KMS: the key changes there; re-wrap under the current one.
        Err(BlobError::KeyProvider(KeyError::Unsupported { .. })) => {
            blobs.blobs.rewrap_all(true).await?
        }
        other => other?,
    };
    let sealed = keys_at_rest::reseal_all(store, &blobs.sealer()).await?;
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
    store: &dyn Store,
    blobs: &ecocityhub_blobs::OpenedBlobs,
) -> Result<()> {
    let sealer = blobs.sealer();
    match command {
        KeysCommand::Rotate => {
            let now = Utc::now();
            let mut active: Vec<SigningKey> = store
                .signing_keys()
                .await?
                .into_iter()
                .filter(|k| k.retired_at.is_none())
                .collect();
            active.sort_by_key(|k| std::cmp::Reverse(k.created_at));
            let key = SigningKey::generate(now);
            keys_at_rest::insert(store, Some(&sealer), &key).await?;
            // The newest old key keeps verifying its tokens until they expire; older ones go.
            for old in active.iter().skip(1) {
                store.retire_signing_key(&old.kid, now).await?;
                println!("retired {}", old.kid);
            }
            println!("new signing key {}", key.kid);
            Ok(())
        }
        KeysCommand::List => {
            for k in store.signing_keys().await? {
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
