//! `ecocityhub audit …` and the command line's own records: `audit verify` checks the hash
//! chain and the signed digests, `audit search` filters the trail (both through
//! `ecocityhub_observe::audit`), and [`record`] writes the record of a CLI action that changed
//! something (event source `cli`, the OS user as identity).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use ecocityhub_identity::account::normalize_email;
use ecocityhub_observe::audit::search::Found;
use ecocityhub_observe::audit::{
    search, verify, Audit, AuditEvent, SearchFilter, UserIdentity, VerifyOptions, VerifyReport,
};
use ecocityhub_store::observe::AuditOutcome;
use ecocityhub_store::Store;
use serde_json::{json, Value};

use crate::config::FileConfig;
use crate::{open_blobs, open_store, StorageArgs};

/// The event source of the command line's records.
pub const SOURCE: &str = "cli";

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and the signed digests; exits non-zero naming the first record or
    /// digest that was edited, deleted, inserted, reordered or is missing.
    Verify {
        /// A public key (PEM) digests must be signed with; repeat for several. Default: the
        /// keys published in the blob store.
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Search the trail, newest first.
    Search(SearchArgs),
}

#[derive(clap::Args)]
pub struct SearchArgs {
    /// Who acted: a user id (or a user's e-mail), a station id, an OS user.
    #[arg(long)]
    user: Option<String>,
    /// The event name (`CreateUser`, `SignIn`, `PromoteModel`…).
    #[arg(long)]
    event: Option<String>,
    /// The event source (`api`, `web`, `cli`, `jobs`…).
    #[arg(long)]
    source: Option<String>,
    /// From this time on (RFC 3339, inclusive).
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339, exclusive).
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// Only successes (`ok`) or only failures (`error`, the records with an error code).
    #[arg(long, value_enum)]
    outcome: Option<Outcome>,
    /// At most this many records (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// One JSON record (CloudTrail's fields) per line instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Outcome {
    Ok,
    Error,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time (such as 2026-01-31T12:00:00Z): {e}"))
}

/// A record of the command line: action `name`, by the OS user running it.
pub fn event(name: &str) -> AuditEvent {
    AuditEvent::new(SOURCE, name, UserIdentity::cli())
}

/// Writes one CLI action's record (its secrets redacted) and waits until it is committed.
pub async fn record(store: &Arc<dyn Store>, event: AuditEvent) -> Result<()> {
    let name = event.event_name.clone();
    let audit = Audit::start(store.clone());
    let written = audit.record(event).await;
    audit.close().await;
    written
        .map(|_| ())
        .with_context(|| format!("done, but its audit record ({name}) was not written"))
}

pub async fn run(command: AuditCommand, file: &FileConfig) -> Result<()> {
    match command {
        AuditCommand::Verify {
            trusted_keys,
            json,
            storage,
        } => run_verify(&storage, file, &trusted_keys, json).await,
        AuditCommand::Search(args) => run_search(args, file).await,
    }
}

async fn run_verify(
    storage: &StorageArgs,
    file: &FileConfig,
    trusted: &[PathBuf],
    json: bool,
) -> Result<()> {
    let options = VerifyOptions {
        trusted_keys: trusted
            .iter()
            .map(|p| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            })
            .collect::<Result<_>>()?,
    };
    let store = open_store(storage, file).await?;
    let blobs = open_blobs(storage, file).await?;
    let report = verify(store, blobs.store(), &options)
        .await
        .context("cannot read the audit trail")?;
    if json {
        let mut v = serde_json::to_value(&report)?;
        v["elapsedMs"] = json!(report.elapsed.as_secs_f64() * 1000.0);
        println!("{v}");
    }
    match &report.problem {
        None => {
            if !json {
                println!("{}", summary(&report));
            }
            Ok(())
        }
        Some(p) => bail!(
            "the audit trail is not intact: {p} ({} and {} checked before it)",
            plural(report.records_checked, "record"),
            plural(report.digests_checked, "digest")
        ),
    }
}

/// The text of an intact trail's report.
fn summary(r: &VerifyReport) -> String {
    let range = match (r.first_seq, r.last_seq) {
        (Some(a), Some(b)) => format!(" ({a}..{b})"),
        _ => String::new(),
    };
    let mut out = format!(
        "audit trail intact: {}{range} and {} checked in {:.1} ms",
        plural(r.records_checked, "record"),
        plural(r.digests_checked, "signed digest"),
        r.elapsed.as_secs_f64() * 1000.0
    );
    let n = r.uncovered_records;
    let verb = if n == 1 { "is" } else { "are" };
    if n > 0 && r.covered_through == 0 {
        out.push_str(&format!(
            "; no digest yet: {} {verb} protected by the chain only until `serve` signs one",
            plural(n, "record")
        ));
    } else if n > 0 {
        out.push_str(&format!(
            "; {} after record {}, the last a digest covers, {verb} protected by the chain only",
            plural(n, "record"),
            r.covered_through
        ));
    }
    if let Some(t) = r.expired_through {
        out.push_str(&format!(
            "; records up to {t} expired behind a signed checkpoint"
        ));
    }
    out
}

/// `1 record`, `2 records`.
fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

async fn run_search(args: SearchArgs, file: &FileConfig) -> Result<()> {
    let store = open_store(&args.storage, file).await?;
    let user_id = match args.user {
        Some(u) => Some(actor_id(store.as_ref(), u).await?),
        None => None,
    };
    let filter = SearchFilter {
        user_id,
        event_name: args.event,
        event_source: args.source,
        from: args.since,
        to: args.until,
        outcome: args.outcome.map(|o| match o {
            Outcome::Ok => AuditOutcome::Success,
            Outcome::Error => AuditOutcome::Error,
        }),
        before: None,
        limit: Some(args.limit),
    };
    let page = search(store.as_ref(), &filter)
        .await
        .context("cannot search the audit trail")?;
    if args.json {
        for f in &page.records {
            println!("{}", f.record);
        }
    } else {
        print!("{}", table(&page.records));
    }
    if page.next.is_some() {
        eprintln!(
            "(more records match: narrow the search or raise --limit, at most {})",
            ecocityhub_observe::audit::search::MAX_LIMIT
        );
    }
    Ok(())
}

/// The id records name an actor by: a user's id for a user's e-mail, else what was given.
async fn actor_id(store: &dyn Store, user: String) -> Result<String> {
    let Ok(email) = normalize_email(&user) else {
        return Ok(user);
    };
    Ok(store.user_by_email(&email).await?.map_or(user, |u| u.id))
}

/// The records found as a table: sequence, time, source, event, who, outcome.
fn table(records: &[Found]) -> String {
    if records.is_empty() {
        return "no audit records match\n".into();
    }
    let mut out = format!(
        "{:>7}  {:<24}  {:<6}  {:<22}  {:<30}  {}\n",
        "seq", "time", "source", "event", "who", "outcome"
    );
    for f in records {
        let r = &f.record;
        let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
        let who = format!(
            "{}:{}",
            text(&r["userIdentity"]["type"]),
            text(&r["userIdentity"]["id"])
        );
        let outcome = r["errorCode"]
            .as_str()
            .map_or("ok".to_string(), |c| format!("error {c}"));
        out.push_str(&format!(
            "{:>7}  {:<24}  {:<6}  {:<22}  {:<30}  {outcome}\n",
            f.seq,
            text(&r["eventTime"]),
            text(&r["eventSource"]),
            text(&r["eventName"]),
            who
        ));
    }
    out
}
