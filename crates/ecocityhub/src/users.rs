//! `ecocityhub user …` and `ecocityhub keys …`: the operator's side of the user pool — the
//! first admin comes from `user create` — and signing-key rotation.

use std::io::BufRead;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Subcommand;
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

pub async fn run_keys(command: KeysCommand, store: &dyn Store) -> Result<()> {
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
            store.insert_signing_key(&key).await?;
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
    }
}
