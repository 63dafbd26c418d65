//! Replays a labelled request corpus (the JSON Lines format of
//! `shared/data/WAF-CORPUS.md`) through a [`Waf`] and scores it: the share of attacks
//! blocked and of benign requests blocked, strong and weak benign labels apart, per
//! category, source, Core Rule Set paranoia level and GoTestWAF placement.

use crate::{InspectedRequest, Waf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

/// Why a corpus could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// Which records to replay: all, or one half chosen by a hash of the record id (for
/// developing on one half and checking on the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    All,
    Development,
    HeldOut,
}

impl Split {
    fn keeps(self, id: &str) -> bool {
        let hash = id.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        match self {
            Split::All => true,
            Split::Development => hash % 2 == 0,
            Split::HeldOut => hash % 2 == 1,
        }
    }
}

/// One corpus record (the fields the replay uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub id: String,
    pub source: String,
    pub method: String,
    pub uri: String,
    #[serde(default)]
    pub headers: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub body: String,
    pub attack: bool,
    pub category: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub label_strength: Option<String>,
    #[serde(default)]
    pub autocomplete_headers: Option<bool>,
    #[serde(default)]
    pub crs_paranoia_level: Option<u8>,
    #[serde(default)]
    pub placement: Option<String>,
}

impl Record {
    /// The request as a client would send it: a `Content-Length` computed from the body
    /// and, for a body without one, a form `Content-Type` (as go-ftw completes CRS tests),
    /// unless the record says its headers must be sent as they are.
    pub fn to_request(&self) -> InspectedRequest {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect();
        let has =
            |hs: &[(String, String)], n: &str| hs.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if self.autocomplete_headers != Some(false) && !self.body.is_empty() {
            if !has(&headers, "content-type") {
                headers.push((
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ));
            }
            if !has(&headers, "content-length") && !has(&headers, "transfer-encoding") {
                headers.push(("Content-Length".into(), self.body.len().to_string()));
            }
        }
        InspectedRequest {
            method: self.method.clone(),
            uri: self.uri.clone(),
            version: self.version.clone().unwrap_or_else(|| "HTTP/1.1".into()),
            headers,
            body: self.body.as_bytes().to_vec(),
            body_complete: true,
        }
    }

    fn is_strong(&self) -> bool {
        self.label_strength.as_deref() != Some("weak")
    }
}

/// How many, and how many of them were blocked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub total: u64,
    pub blocked: u64,
}

impl Tally {
    fn add(&mut self, blocked: bool) {
        self.total += 1;
        self.blocked += blocked as u64;
    }

    /// Blocked share in percent (0 when empty).
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.blocked as f64 / self.total as f64
        }
    }
}

/// Attacks and benign requests of one slice of the corpus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    pub attacks: Tally,
    pub benign_strong: Tally,
    pub benign_weak: Tally,
}

impl Breakdown {
    fn add(&mut self, r: &Record, blocked: bool) {
        match (r.attack, r.is_strong()) {
            (true, _) => self.attacks.add(blocked),
            (false, true) => self.benign_strong.add(blocked),
            (false, false) => self.benign_weak.add(blocked),
        }
    }
}

/// The outcome of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub id: String,
    pub category: String,
    pub attack: bool,
    pub strong: bool,
    pub blocked: bool,
    /// The blocking rule.
    pub rule: Option<String>,
}

/// The score of a corpus.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CorpusReport {
    pub split: Option<Split>,
    pub requests: u64,
    pub attacks: Tally,
    pub benign_strong: Tally,
    pub benign_weak: Tally,
    pub by_category: BTreeMap<String, Breakdown>,
    pub by_source: BTreeMap<String, Breakdown>,
    /// Core Rule Set cases by the paranoia level of the rule they test.
    pub by_crs_paranoia: BTreeMap<String, Breakdown>,
    /// GoTestWAF cases by where the payload was placed.
    pub by_placement: BTreeMap<String, Breakdown>,
    /// Which rules blocked attacks, and how many.
    pub attacks_blocked_by_rule: BTreeMap<String, u64>,
    /// Which rules blocked benign requests (strong and weak), and how many.
    pub benign_blocked_by_rule: BTreeMap<String, u64>,
}

impl CorpusReport {
    fn add(&mut self, r: &Record, outcome: &Outcome) {
        let blocked = outcome.blocked;
        self.requests += 1;
        match (r.attack, r.is_strong()) {
            (true, _) => self.attacks.add(blocked),
            (false, true) => self.benign_strong.add(blocked),
            (false, false) => self.benign_weak.add(blocked),
        }
        self.by_category
            .entry(r.category.clone())
            .or_default()
            .add(r, blocked);
        self.by_source
            .entry(r.source.clone())
            .or_default()
            .add(r, blocked);
        if r.source == "owasp-crs" {
            let pl = r
                .crs_paranoia_level
                .map_or("none".to_owned(), |p| format!("PL{p}"));
            self.by_crs_paranoia.entry(pl).or_default().add(r, blocked);
        }
        if let Some(p) = &r.placement {
            self.by_placement
                .entry(p.clone())
                .or_default()
                .add(r, blocked);
        }
        if let Some(rule) = &outcome.rule {
            let book = if r.attack {
                &mut self.attacks_blocked_by_rule
            } else {
                &mut self.benign_blocked_by_rule
            };
            *book.entry(rule.clone()).or_default() += 1;
        }
    }

    /// A plain-text table: one line per slice with attacks blocked and benign blocked.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let cell = |t: &Tally| {
            if t.total == 0 {
                format!("{:>17}", "-")
            } else {
                format!("{:>6}/{:<6}{:>5.1}%", t.blocked, t.total, t.percent())
            }
        };
        let header = format!(
            "{:<22}{:>19}{:>19}{:>19}\n",
            "", "attacks blocked", "strong benign", "weak benign"
        );
        let line = |name: &str, b: &Breakdown| {
            format!(
                "{:<22}{:>19}{:>19}{:>19}\n",
                name,
                cell(&b.attacks),
                cell(&b.benign_strong),
                cell(&b.benign_weak)
            )
        };
        let total = Breakdown {
            attacks: self.attacks,
            benign_strong: self.benign_strong,
            benign_weak: self.benign_weak,
        };
        out.push_str(&header);
        out.push_str(&line("all", &total));
        for (title, map) in [
            ("category", &self.by_category),
            ("source", &self.by_source),
            ("CRS paranoia", &self.by_crs_paranoia),
            ("GoTestWAF placement", &self.by_placement),
        ] {
            out.push_str(&format!("\nby {title}\n"));
            for (name, b) in map {
                out.push_str(&line(&format!("  {name}"), b));
            }
        }
        out
    }
}

/// Replays every record of `reader` (JSON Lines) that `split` keeps.
pub fn replay(
    waf: &Waf,
    reader: impl BufRead,
    split: Split,
) -> Result<(CorpusReport, Vec<Outcome>), CorpusError> {
    let mut report = CorpusReport {
        split: Some(split),
        ..CorpusReport::default()
    };
    let mut outcomes = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| CorpusError::Line {
            line: n + 1,
            reason: e.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line).map_err(|e| CorpusError::Line {
            line: n + 1,
            reason: e.to_string(),
        })?;
        if !split.keeps(&record.id) {
            continue;
        }
        let verdict = waf.inspect(&record.to_request());
        let outcome = Outcome {
            id: record.id.clone(),
            category: record.category.clone(),
            attack: record.attack,
            strong: record.is_strong(),
            blocked: verdict.is_blocked(),
            rule: verdict.blocking_rule().map(|m| m.rule.clone()),
        };
        report.add(&record, &outcome);
        outcomes.push(outcome);
    }
    Ok((report, outcomes))
}

/// Replays a corpus file and scores it.
pub fn check_file(waf: &Waf, path: &Path, split: Split) -> Result<CorpusReport, CorpusError> {
    let file = std::fs::File::open(path).map_err(|source| CorpusError::Io {
        path: path.display().to_string(),
        source,
    })?;
    replay(waf, std::io::BufReader::new(file), split).map(|(report, _)| report)
}
