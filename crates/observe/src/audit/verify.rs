//! Verification of the trail, as `ecocityhub audit verify` runs it. In order:
//!
//! 1. **Digests** from the blob store: each signature (with the published public key, or the
//!    keys given), the numbering 1, 2, … without gaps, each naming its predecessor's blob and
//!    signature, their sequence ranges following on, and every digest the store says it wrote
//!    being there.
//! 2. **The checkpoint** of expired records: its signature and that the digest it names ends at
//!    the sequence number and hash it states.
//! 3. **Records**, in sequence order: no gaps, each hash recomputed from its text, place and
//!    predecessor, each naming its predecessor's hash, the searchable columns agreeing with the
//!    text, and the hash of every digest's last record matching the digest.
//!
//! The first problem found is reported with what it was (edited, deleted, inserted, reordered,
//! missing) and where. Records after the newest digest are only as safe as the chain: removing
//! them from the end, or appending well-formed ones, shows only once a digest covered them.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecocityhub_blobs::BlobStore;
use ecocityhub_store::observe::{AuditRow, ObserveStore, AUDIT_GENESIS_HASH};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chain::{record_hash, record_hash_is, type_name};
use super::digest::{
    fingerprint_of_pem, split_blob, verify_signature, CHECKPOINT_PREFIX, DIGEST_PREFIX, KEY_PREFIX,
};
use super::IdentityType;
use crate::Result;

/// Records fetched per query. Small enough that a page stays in the CPU's caches (on SQLite,
/// pages of 20,000 took a third more CPU time, most of it the kernel's, for the same rows).
pub const PAGE: u32 = 2_000;
/// Pages fetched (and prechecked) at once: the database's work on some overlaps the decoding
/// and checking of others, on every core.
const IN_FLIGHT: usize = 4;
/// How far around its place a moved record is looked for.
const REORDER_WINDOW: i64 = 64;

/// What to trust.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Public keys (PEM) digests must be signed with; empty: the keys published in the blob
    /// store.
    pub trusted_keys: Vec<String>,
}

/// What a problem is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "camelCase")]
pub enum Subject {
    /// The record with this sequence number (or the first missing one).
    Record(i64),
    /// The digest with this number.
    Digest(i64),
    Checkpoint,
}

/// What was done to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProblemKind {
    Edited,
    Deleted,
    Inserted,
    Reordered,
    /// A digest that should be there is not.
    Missing,
    /// Signed by no trusted key, or not signed at all.
    Unsigned,
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub subject: Subject,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.subject {
            Subject::Record(s) => format!("record {s}"),
            Subject::Digest(n) => format!("digest {n}"),
            Subject::Checkpoint => "the retention checkpoint".into(),
        };
        write!(f, "{what}: {:?}: {}", self.kind, self.detail)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub records_checked: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub digests_checked: u64,
    /// The last sequence number a signed digest covers.
    pub covered_through: i64,
    /// Records after the newest digest (protected by the chain only).
    pub uncovered_records: u64,
    /// Records expired behind the checkpoint, up to this sequence number.
    pub expired_through: Option<i64>,
    pub problem: Option<Problem>,
    #[serde(skip)]
    pub elapsed: Duration,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

fn problem(kind: ProblemKind, subject: Subject, detail: impl Into<String>) -> Problem {
    Problem {
        kind,
        subject,
        detail: detail.into(),
    }
}

/// A verified digest.
#[derive(Debug, Clone)]
struct Digest {
    number: i64,
    key: String,
    signature: String,
    first: i64,
    last: i64,
    last_hash: String,
    previous_key: Option<String>,
    previous_signature: Option<String>,
}

/// Checks the whole trail; `Ok` with a report either way, `Err` only when the store or blob
/// store cannot be read.
pub async fn verify(
    store: Arc<dyn ObserveStore>,
    blobs: Arc<dyn BlobStore>,
    options: &VerifyOptions,
) -> Result<VerifyReport> {
    verify_paged(store, blobs, options, PAGE).await
}

/// [`verify`] reading `page` records per query (tests use small pages so that tampering lands
/// on and across page boundaries).
pub async fn verify_paged(
    store: Arc<dyn ObserveStore>,
    blobs: Arc<dyn BlobStore>,
    options: &VerifyOptions,
    page: u32,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let mut report = VerifyReport {
        records_checked: 0,
        first_seq: None,
        last_seq: None,
        digests_checked: 0,
        covered_through: 0,
        uncovered_records: 0,
        expired_through: None,
        problem: None,
        elapsed: Duration::ZERO,
    };
    let keys = trusted_keys(blobs.as_ref(), options).await?;
    let digests = match check_digests(store.as_ref(), blobs.as_ref(), &keys).await? {
        Ok(d) => d,
        Err(p) => return Ok(done(report, Some(p), started)),
    };
    report.digests_checked = digests.len() as u64;
    report.covered_through = digests.last().map_or(0, |d| d.last);
    let start = match check_checkpoint(store.as_ref(), blobs.as_ref(), &keys, &digests).await? {
        Ok(s) => s,
        Err(p) => return Ok(done(report, Some(p), started)),
    };
    report.expired_through = start.as_ref().map(|(through, _)| *through);
    let found = walk_records(store, &digests, start, &mut report, page).await?;
    Ok(done(report, found, started))
}

fn done(mut report: VerifyReport, found: Option<Problem>, started: Instant) -> VerifyReport {
    report.problem = found;
    report.elapsed = started.elapsed();
    report
}

/// Fingerprint → public key PEM.
async fn trusted_keys(
    blobs: &dyn BlobStore,
    options: &VerifyOptions,
) -> Result<HashMap<String, String>> {
    let mut keys = HashMap::new();
    let pems: Vec<String> = if options.trusted_keys.is_empty() {
        let mut out = Vec::new();
        for k in blobs.list(KEY_PREFIX).await? {
            if let Some(b) = blobs.get(&k).await? {
                out.push(String::from_utf8_lossy(&b).into_owned());
            }
        }
        out
    } else {
        options.trusted_keys.clone()
    };
    for pem in pems {
        if let Some(fp) = fingerprint_of_pem(&pem) {
            keys.insert(fp, pem);
        }
    }
    Ok(keys)
}

/// Reads and checks a signed blob; the body's fields.
fn signed_body(
    text: &str,
    keys: &HashMap<String, String>,
    subject: Subject,
) -> std::result::Result<Value, Problem> {
    let (body, canonical, signature) = split_blob(text).ok_or_else(|| {
        problem(
            ProblemKind::Edited,
            subject.clone(),
            "not a signed JSON document",
        )
    })?;
    let fp = body["digestPublicKeyFingerprint"]
        .as_str()
        .unwrap_or_default();
    let Some(pem) = keys.get(fp) else {
        return Err(problem(
            ProblemKind::Unsigned,
            subject,
            format!("signed with an unknown key {fp:?}"),
        ));
    };
    if !verify_signature(pem, canonical.as_bytes(), &signature) {
        return Err(problem(
            ProblemKind::Edited,
            subject,
            "its signature does not match its content",
        ));
    }
    let mut body = body;
    body["_signature"] = Value::String(signature);
    Ok(body)
}

fn parse_digest(body: &Value, key: &str) -> Option<Digest> {
    let text = |k: &str| body[k].as_str().map(str::to_string);
    Some(Digest {
        number: body["digestNumber"].as_i64()?,
        key: key.to_string(),
        signature: text("_signature")?,
        first: body["firstSequence"].as_i64()?,
        last: body["lastSequence"].as_i64()?,
        last_hash: text("lastRecordHash")?,
        previous_key: text("previousDigestBlobKey"),
        previous_signature: text("previousDigestSignature"),
    })
}

async fn check_digests(
    store: &dyn ObserveStore,
    blobs: &dyn BlobStore,
    keys: &HashMap<String, String>,
) -> Result<std::result::Result<Vec<Digest>, Problem>> {
    let mut by_number: BTreeMap<i64, Digest> = BTreeMap::new();
    let mut names = blobs.list(DIGEST_PREFIX).await?;
    names.sort();
    for name in names {
        let Some(bytes) = blobs.get(&name).await? else {
            continue;
        };
        let hinted = name[DIGEST_PREFIX.len()..]
            .split('-')
            .next()
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0);
        let body = match signed_body(
            &String::from_utf8_lossy(&bytes),
            keys,
            Subject::Digest(hinted),
        ) {
            Ok(b) => b,
            Err(p) => return Ok(Err(p)),
        };
        let Some(d) = parse_digest(&body, &name) else {
            return Ok(Err(problem(
                ProblemKind::Edited,
                Subject::Digest(hinted),
                "fields are missing",
            )));
        };
        if body["digestBlobKey"].as_str() != Some(name.as_str()) {
            return Ok(Err(problem(
                ProblemKind::Reordered,
                Subject::Digest(d.number),
                format!("stored as {name} but signed as {}", body["digestBlobKey"]),
            )));
        }
        if by_number.contains_key(&d.number) {
            return Ok(Err(problem(
                ProblemKind::Inserted,
                Subject::Digest(d.number),
                "two digests have this number",
            )));
        }
        by_number.insert(d.number, d);
    }
    let digests: Vec<Digest> = by_number.into_values().collect();
    for (i, d) in digests.iter().enumerate() {
        let expected = i as i64 + 1;
        if d.number != expected {
            return Ok(Err(problem(
                ProblemKind::Missing,
                Subject::Digest(expected),
                format!("digests go from {} to {}", expected - 1, d.number),
            )));
        }
        let (want_key, want_sig, want_first, min_last) = match i.checked_sub(1).map(|j| &digests[j])
        {
            Some(p) => (Some(&p.key), Some(&p.signature), p.last + 1, p.last),
            None => (None, None, 1, 0),
        };
        if d.previous_key.as_ref() != want_key || d.previous_signature.as_ref() != want_sig {
            return Ok(Err(problem(
                ProblemKind::Edited,
                Subject::Digest(d.number),
                "it does not name the digest before it (its blob key and signature)",
            )));
        }
        if d.first != want_first || d.last < min_last {
            return Ok(Err(problem(
                ProblemKind::Edited,
                Subject::Digest(d.number),
                format!(
                    "covers {}..{} where {want_first}.. was due",
                    d.first, d.last
                ),
            )));
        }
    }
    let in_blobs: HashMap<i64, &Digest> = digests.iter().map(|d| (d.number, d)).collect();
    for row in store.audit_digests().await? {
        if row.written_at.is_some() && !in_blobs.contains_key(&row.number) {
            return Ok(Err(problem(
                ProblemKind::Missing,
                Subject::Digest(row.number),
                format!("the store wrote it to {} but it is not there", row.blob_key),
            )));
        }
    }
    Ok(Ok(digests))
}

/// The expired-through sequence number and its hash, from a valid checkpoint.
async fn check_checkpoint(
    store: &dyn ObserveStore,
    blobs: &dyn BlobStore,
    keys: &HashMap<String, String>,
    digests: &[Digest],
) -> Result<std::result::Result<Option<(i64, String)>, Problem>> {
    let text = match store.audit_checkpoint().await? {
        Some(c) => Some(super::digest::signed_blob(&c.body, &c.signature)),
        None => {
            let mut names = blobs.list(CHECKPOINT_PREFIX).await?;
            names.sort();
            match names.last() {
                Some(n) => blobs
                    .get(n)
                    .await?
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                None => None,
            }
        }
    };
    let Some(text) = text else {
        return Ok(Ok(None));
    };
    let body = match signed_body(&text, keys, Subject::Checkpoint) {
        Ok(b) => b,
        Err(p) => return Ok(Err(p)),
    };
    let (Some(through), Some(hash), Some(number)) = (
        body["throughSequence"].as_i64(),
        body["lastExpiredHash"].as_str(),
        body["digestNumber"].as_i64(),
    ) else {
        return Ok(Err(problem(
            ProblemKind::Edited,
            Subject::Checkpoint,
            "fields are missing",
        )));
    };
    match digests.iter().find(|d| d.number == number) {
        Some(d) if d.last == through && d.last_hash == hash => {
            Ok(Ok(Some((through, hash.to_string()))))
        }
        Some(_) => Ok(Err(problem(
            ProblemKind::Edited,
            Subject::Checkpoint,
            format!("digest {number} does not end at record {through} with that hash"),
        ))),
        None => Ok(Err(problem(
            ProblemKind::Missing,
            Subject::Digest(number),
            "the checkpoint names it",
        ))),
    }
}

/// The columns of a record as its text states them (borrowed from the text: a string is
/// copied only when it has escapes).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stated<'a> {
    #[serde(rename = "eventID", borrow)]
    event_id: Text<'a>,
    #[serde(borrow)]
    event_time: Text<'a>,
    #[serde(borrow)]
    event_source: Text<'a>,
    #[serde(borrow)]
    event_name: Text<'a>,
    #[serde(borrow)]
    user_identity: StatedIdentity<'a>,
    #[serde(default, borrow)]
    error_code: Option<Text<'a>>,
    read_only: bool,
    #[serde(rename = "requestID", default, borrow)]
    request_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct StatedIdentity<'a> {
    #[serde(rename = "type")]
    kind: IdentityType,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
}

/// A JSON string, borrowed unless it has escapes. (A bare `Option<Cow<str>>` would always
/// copy: serde borrows only a `Cow<str>` field itself.)
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl Text<'_> {
    fn is(&self, column: &str) -> bool {
        self.0 == column
    }
}

fn same(stated: &Option<Text>, column: &Option<String>) -> bool {
    match (stated, column) {
        (Some(s), Some(c)) => s.is(c),
        (None, None) => true,
        _ => false,
    }
}

fn columns_agree(row: &AuditRow) -> bool {
    let Ok(s) = serde_json::from_str::<Stated>(&row.record) else {
        return false;
    };
    let time_ok = chrono::DateTime::parse_from_rfc3339(&s.event_time.0)
        .is_ok_and(|t| t.timestamp_millis() == row.event_time);
    time_ok
        && s.event_id.is(&row.event_id)
        && s.event_source.is(&row.event_source)
        && s.event_name.is(&row.event_name)
        && type_name(s.user_identity.kind) == row.user_type
        && same(&s.user_identity.id, &row.user_id)
        && same(&s.error_code, &row.error_code)
        && s.read_only == row.read_only
        && same(&s.request_id, &row.request_id)
}

/// A page of records, each with what [`precheck`] found of it.
type Checked = (Vec<AuditRow>, Vec<Sound>);

/// Pages being fetched and prechecked ahead of the walk (aborted when dropped).
struct Ahead(VecDeque<tokio::task::JoinHandle<Result<Checked>>>);

impl Drop for Ahead {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Fetches the page of records from `from` and prechecks it off the async threads.
fn fetch(
    store: &Arc<dyn ObserveStore>,
    from: i64,
    page: u32,
) -> tokio::task::JoinHandle<Result<Checked>> {
    let store = store.clone();
    tokio::spawn(async move {
        let rows = store.audit_records(from, page).await?;
        tokio::task::spawn_blocking(move || {
            let sound = precheck(&rows);
            (rows, sound)
        })
        .await
        .map_err(task_failed)
    })
}

fn task_failed(e: tokio::task::JoinError) -> crate::ObserveError {
    crate::ObserveError::Config(format!("verification task: {e}"))
}

/// Walks the records in pages of `page`. [`IN_FLIGHT`] pages are fetched and prechecked at
/// once, each from where it would start were there no gaps; a page that starts earlier (after
/// a gap) only repeats records, which are skipped, so the walk sees exactly the rows a
/// page-after-page read would.
async fn walk_records(
    store: Arc<dyn ObserveStore>,
    digests: &[Digest],
    start: Option<(i64, String)>,
    report: &mut VerifyReport,
    page: u32,
) -> Result<Option<Problem>> {
    let page = page.max(1);
    let (through, first_prev) = start.unwrap_or((0, AUDIT_GENESIS_HASH.to_string()));
    let anchors: HashMap<i64, &Digest> = digests
        .iter()
        .filter(|d| d.last > through && d.last > 0)
        .map(|d| (d.last, d))
        .collect();
    let mut walk = Walk {
        expected: through + 1,
        prev_hash: first_prev,
        recent: VecDeque::with_capacity(REORDER_WINDOW as usize),
    };
    // A full page of distinct sequence numbers from `from` ends at `from + page - 1` or later,
    // so the next page from there misses nothing.
    let mut next_from = walk.expected;
    let mut ahead = Ahead(VecDeque::new());
    for _ in 0..IN_FLIGHT {
        ahead.0.push_back(fetch(&store, next_from, page));
        next_from = next_from.saturating_add(i64::from(page));
    }
    let mut seen = through;
    while let Some(task) = ahead.0.pop_front() {
        let (rows, sound) = task.await.map_err(task_failed)??;
        let full = rows.len() >= page as usize;
        if full {
            ahead.0.push_back(fetch(&store, next_from, page));
            next_from = next_from.saturating_add(i64::from(page));
        }
        let fresh = rows.partition_point(|r| r.seq <= seen);
        for (row, sound) in rows[fresh..].iter().zip(&sound[fresh..]) {
            if report.first_seq.is_none() {
                report.first_seq = Some(row.seq);
            }
            match walk.check(row, *sound, &anchors) {
                Ok(()) => {}
                Err(Flaw::Found(p)) => return Ok(Some(p)),
                Err(Flaw::HashMismatch) => {
                    return Ok(Some(walk.misplaced_or_edited(row, store.as_ref()).await?))
                }
            }
            report.records_checked += 1;
            report.last_seq = Some(row.seq);
        }
        seen = seen.max(rows.last().map_or(seen, |r| r.seq));
        if !full {
            break;
        }
    }
    drop(ahead);
    let seen = walk.expected - 1;
    if let Some(d) = digests.last().filter(|d| d.last > seen) {
        return Ok(Some(problem(
            ProblemKind::Deleted,
            Subject::Record(seen + 1),
            format!(
                "digest {} covers records up to {} but the trail ends at {seen}",
                d.number, d.last
            ),
        )));
    }
    report.uncovered_records = (seen - report.covered_through).max(0) as u64;
    Ok(None)
}

/// What can be checked of each record alone: its hash and its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sound {
    hash: bool,
    columns: bool,
}

fn precheck(page: &[AuditRow]) -> Vec<Sound> {
    page.iter()
        .map(|r| Sound {
            hash: record_hash_is(&r.prev_hash, r.seq, &r.record, &r.hash),
            columns: columns_agree(r),
        })
        .collect()
}

/// Why [`Walk::check`] stopped at a record.
enum Flaw {
    Found(Problem),
    /// Its hash does not match at its place: [`Walk::misplaced_or_edited`] tells why.
    HashMismatch,
}

struct Walk {
    expected: i64,
    prev_hash: String,
    /// The last records' sequence numbers and hashes, to recognise an insertion.
    recent: VecDeque<(i64, String)>,
}

impl Walk {
    fn check(
        &mut self,
        row: &AuditRow,
        sound: Sound,
        anchors: &HashMap<i64, &Digest>,
    ) -> std::result::Result<(), Flaw> {
        let here = Subject::Record(row.seq);
        if row.seq > self.expected {
            let detail = if self.expected == row.seq - 1 {
                "it is missing".to_string()
            } else {
                format!("records {}..{} are missing", self.expected, row.seq - 1)
            };
            return Err(Flaw::Found(problem(
                ProblemKind::Deleted,
                Subject::Record(self.expected),
                detail,
            )));
        }
        if !sound.hash {
            return Err(Flaw::HashMismatch);
        }
        if row.prev_hash != self.prev_hash {
            return Err(Flaw::Found(self.broken_link(row)));
        }
        if !sound.columns {
            return Err(Flaw::Found(problem(
                ProblemKind::Edited,
                here,
                "its searchable columns disagree with its content",
            )));
        }
        if let Some(d) = anchors.get(&row.seq) {
            if d.last_hash != row.hash {
                return Err(Flaw::Found(problem(
                    ProblemKind::Edited,
                    Subject::Record(d.first),
                    format!(
                        "digest {} signed another hash for record {}: a record from {} on was changed and the chain rewritten",
                        d.number, d.last, d.first
                    ),
                )));
            }
        }
        self.expected = row.seq + 1;
        self.prev_hash.clear();
        self.prev_hash.push_str(&row.hash);
        // The window's oldest entry is reused for the newest (no allocation per record).
        let mut slot = if self.recent.len() >= REORDER_WINDOW as usize {
            self.recent.pop_front().expect("the window is full")
        } else {
            (0, String::new())
        };
        slot.0 = row.seq;
        slot.1.clear();
        slot.1.push_str(&row.hash);
        self.recent.push_back(slot);
        Ok(())
    }

    /// A record whose hash does not match at its place: moved (it matches at another place),
    /// or edited.
    async fn misplaced_or_edited(
        &self,
        row: &AuditRow,
        store: &dyn ObserveStore,
    ) -> Result<Problem> {
        let belongs = (row.seq - REORDER_WINDOW..=row.seq + REORDER_WINDOW)
            .filter(|s| *s != row.seq && *s > 0)
            .find(|s| record_hash(&row.prev_hash, *s, &row.record) == row.hash);
        let Some(belongs) = belongs else {
            return Ok(problem(
                ProblemKind::Edited,
                Subject::Record(row.seq),
                "its content does not match its hash",
            ));
        };
        // Swapped with the record stored at its place?
        if let Some(other) = store.audit_record(belongs).await? {
            if record_hash(&other.prev_hash, row.seq, &other.record) == other.hash {
                return Ok(problem(
                    ProblemKind::Reordered,
                    Subject::Record(row.seq),
                    format!(
                        "the records at {} and {belongs} have changed places",
                        row.seq
                    ),
                ));
            }
        }
        Ok(if belongs > row.seq {
            problem(
                ProblemKind::Deleted,
                Subject::Record(row.seq),
                format!(
                    "the record stored here was written as {belongs}: {} record(s) before it were deleted and the rest renumbered",
                    belongs - row.seq
                ),
            )
        } else {
            problem(
                ProblemKind::Inserted,
                Subject::Record(belongs),
                format!(
                    "the record stored at {} was written as {belongs}: {} record(s) were inserted from {belongs} on",
                    row.seq,
                    row.seq - belongs
                ),
            )
        })
    }

    /// A record that is intact but does not name its predecessor.
    fn broken_link(&self, row: &AuditRow) -> Problem {
        if let Some((s, _)) = self.recent.iter().find(|(_, h)| *h == row.prev_hash) {
            return problem(
                ProblemKind::Inserted,
                Subject::Record(s + 1),
                format!(
                    "record {} follows record {s}: records {}..{} were inserted",
                    row.seq,
                    s + 1,
                    row.seq - 1
                ),
            );
        }
        if row.seq == self.expected && self.recent.is_empty() {
            return problem(
                ProblemKind::Deleted,
                Subject::Record(row.seq),
                "the first record does not follow the start of the trail (or the checkpoint): records before it were removed",
            );
        }
        problem(
            ProblemKind::Edited,
            Subject::Record(row.seq - 1),
            format!(
                "record {} names another hash for it: it was replaced",
                row.seq
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::seal;
    use crate::audit::writer::prepare;
    use crate::audit::{AuditEvent, Credential, UserIdentity};

    fn row(user: &str, failed: bool) -> AuditRow {
        let mut e = AuditEvent::new(
            "api",
            "UpdateUser",
            UserIdentity::user(user, &["admin"], Credential::AccessToken),
        );
        e.request_id = Some("req-1".into());
        if failed {
            e = e.failed("forbidden", "denied");
        }
        seal(&prepare(e), 7, AUDIT_GENESIS_HASH)
    }

    /// The columns as the former check (owned strings throughout) read them.
    fn columns_agree_owned(row: &AuditRow) -> bool {
        let Ok(v) = serde_json::from_str::<Value>(&row.record) else {
            return false;
        };
        let text = |v: &Value| v.as_str().map(str::to_string);
        let time_ok = v["eventTime"].as_str().is_some_and(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .is_ok_and(|t| t.timestamp_millis() == row.event_time)
        });
        time_ok
            && text(&v["eventID"]).as_ref() == Some(&row.event_id)
            && text(&v["eventSource"]).as_ref() == Some(&row.event_source)
            && text(&v["eventName"]).as_ref() == Some(&row.event_name)
            && text(&v["userIdentity"]["type"]).as_ref() == Some(&row.user_type)
            && text(&v["userIdentity"]["id"]) == row.user_id
            && text(&v["errorCode"]) == row.error_code
            && v["readOnly"].as_bool() == Some(row.read_only)
            && text(&v["requestID"]) == row.request_id
    }

    #[test]
    fn the_columns_are_compared_with_the_text_exactly() {
        for failed in [false, true] {
            // A user id with a quote, a backslash and a non-ASCII letter: escaped in the text.
            for user in ["user-1", "o\"brien\\é", ""] {
                let good = row(user, failed);
                assert!(columns_agree(&good), "{}", good.record);
                let mut edits: Vec<AuditRow> = Vec::new();
                let mut edit = |f: &dyn Fn(&mut AuditRow)| {
                    let mut r = good.clone();
                    f(&mut r);
                    edits.push(r);
                };
                edit(&|r| r.event_id.push('x'));
                edit(&|r| r.event_time += 1);
                edit(&|r| r.event_source = "web".into());
                edit(&|r| r.event_name = "DeleteUser".into());
                edit(&|r| r.user_type = "Device".into());
                edit(&|r| r.user_id = None);
                edit(&|r| r.user_id = Some(format!("{user} ")));
                edit(&|r| r.error_code = if failed { None } else { Some("x".into()) });
                edit(&|r| r.read_only = !r.read_only);
                edit(&|r| r.request_id = None);
                edit(&|r| r.request_id = Some("req-2".into()));
                edit(&|r| r.record = r.record.replace("\"eventName\"", "\"eventName2\""));
                edit(&|r| {
                    r.record.pop();
                });
                for (i, bad) in edits.iter().enumerate() {
                    assert!(!columns_agree(bad), "edit {i} not caught");
                    assert!(!columns_agree_owned(bad), "edit {i}");
                }
            }
        }
        // The text need not be canonical: escapes and spaces that state the same columns agree,
        // as they did when the strings were copied; a stated null is no value.
        let mut r = row("user-1", false);
        r.record = r
            .record
            .replace("\"UpdateUser\"", "\"Update\\u0055ser\"")
            .replace("\"user-1\"", " \"user\\u002d1\" ")
            .replace("\"req-1\"", "\"req\\/1\"");
        r.request_id = Some("req/1".into());
        assert!(columns_agree(&r) && columns_agree_owned(&r), "{}", r.record);
        let mut r = row("user-1", false);
        r.record = r.record.replacen('{', "{\"errorCode\":null,", 1);
        assert!(columns_agree(&r) && columns_agree_owned(&r), "{}", r.record);
        // A field stated twice is refused.
        let mut r = row("user-1", false);
        r.record = r.record.replacen('{', "{\"eventSource\":\"api\",", 1);
        assert!(!columns_agree(&r));
    }

    #[test]
    fn the_walk_reuses_its_window() {
        let mut walk = Walk {
            expected: 1,
            prev_hash: AUDIT_GENESIS_HASH.to_string(),
            recent: VecDeque::new(),
        };
        let anchors = HashMap::new();
        let sound = Sound {
            hash: true,
            columns: true,
        };
        let mut prev = AUDIT_GENESIS_HASH.to_string();
        for seq in 1..=200 {
            let r = AuditRow {
                seq,
                prev_hash: prev.clone(),
                hash: format!("{seq:064}"),
                ..row("u", false)
            };
            assert!(walk.check(&r, sound, &anchors).is_ok());
            prev = r.hash;
        }
        assert_eq!(walk.expected, 201);
        assert_eq!(walk.prev_hash, prev);
        assert_eq!(walk.recent.len(), REORDER_WINDOW as usize);
        let expect: Vec<(i64, String)> = (200 - REORDER_WINDOW + 1..=200)
            .map(|s| (s, format!("{s:064}")))
            .collect();
        assert_eq!(walk.recent, expect);
        // A record naming one of the window's hashes shows the records after it inserted.
        let r = AuditRow {
            seq: 201,
            prev_hash: format!("{:064}", 190),
            hash: "h".into(),
            ..row("u", false)
        };
        let Err(Flaw::Found(p)) = walk.check(&r, sound, &anchors) else {
            panic!("not caught")
        };
        assert_eq!(
            (p.kind, p.subject),
            (ProblemKind::Inserted, Subject::Record(191))
        );
        // One whose hash does not match is looked into.
        let r = AuditRow {
            seq: 201,
            ..row("u", false)
        };
        let bad = Sound {
            hash: false,
            columns: true,
        };
        assert!(matches!(
            walk.check(&r, bad, &anchors),
            Err(Flaw::HashMismatch)
        ));
    }
}
