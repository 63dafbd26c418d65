//! `ecocityhub waf check FILE`: replays a labelled request corpus (JSON Lines, the format of
//! `shared/data/waf-corpus.jsonl`) through the firewall as `serve` builds it — the shipped
//! rules with the configuration file's `[waf]` table over them — and prints the report
//! (attacks blocked, strong and weak benign requests blocked, per slice).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use ecocityhub_waf::corpus::{check_file, Split};
use ecocityhub_waf::Waf;

use crate::config::FileConfig;

#[derive(Subcommand)]
pub enum WafCommand {
    /// Replay a labelled corpus through the firewall and print its detection and
    /// false-positive rates (a report: exits 0 whatever the rates; non-zero for a file that
    /// cannot be read, naming the bad line). The rules are the shipped ones with the
    /// `[waf]` table of `--config` over them.
    Check {
        /// The corpus: one JSON request per line.
        file: PathBuf,
        /// All records, or one of the two halves chosen by a hash of the record id.
        #[arg(long, value_enum, default_value_t = SplitArg::All)]
        split: SplitArg,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SplitArg {
    All,
    Development,
    HeldOut,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::All => Split::All,
            SplitArg::Development => Split::Development,
            SplitArg::HeldOut => Split::HeldOut,
        }
    }
}

pub fn run(command: WafCommand, file: &FileConfig) -> Result<()> {
    match command {
        WafCommand::Check {
            file: corpus,
            split,
            json,
        } => {
            let waf = Waf::new(file.waf.clone()).context("the firewall's configuration")?;
            let report = check_file(&waf, &corpus, split.into())
                .with_context(|| format!("in the corpus {}", corpus.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
    }
}
