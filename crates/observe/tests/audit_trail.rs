//! The audit trail on a real database (SQLite and PostgreSQL): records written through the
//! [`Audit`] writer, digests signed into a blob store, then each kind of tampering done to the
//! rows or blobs with plain SQL — and `verify` must name the first record or digest affected.

use std::sync::Arc;

use chrono::{Duration, Utc};
use ecocityhub_blobs::{BlobStore, ObjectBlobs};
use ecocityhub_observe::audit::chain::record_hash;
use ecocityhub_observe::audit::digest::{signed_blob, split_blob, DIGEST_PREFIX};
use ecocityhub_observe::audit::redact::HIDDEN;
use ecocityhub_observe::audit::{
    search, verify, verify_paged, Audit, AuditEvent, AuditKey, Credential, Digester, ProblemKind,
    SearchFilter, Subject, UserIdentity, VerifyOptions, VerifyReport,
};
use ecocityhub_observe::ObserveError;
use ecocityhub_store::observe::{AuditOutcome, ObserveStore};
use ecocityhub_store::SqlStore;
use serde_json::json;
use sqlx::{AnyPool, Row};

/// A trail of 60 records: digest 1 covers 1–20, digest 2 covers 21–50, 51–60 are not covered yet.
struct Trail {
    store: Arc<dyn ObserveStore>,
    blobs: Arc<dyn BlobStore>,
    sql: AnyPool,
    digester: Digester,
}

fn event(i: usize) -> AuditEvent {
    let user = format!("user-{}", i % 3);
    let name = if i.is_multiple_of(5) {
        "SignIn"
    } else {
        "UpdateUser"
    };
    let e = AuditEvent::new(
        "api",
        name,
        UserIdentity::user(&user, &["admin"], Credential::AccessToken),
    )
    .parameters(json!({"target": i, "password": "Secr3t-passw0rd!"}));
    if i.is_multiple_of(4) {
        e.failed("forbidden", "denied")
    } else {
        e.response(json!({"ok": true}))
    }
}

async fn trail(store: SqlStore, url: &str) -> Trail {
    let store: Arc<dyn ObserveStore> = Arc::new(store);
    let blobs: Arc<dyn BlobStore> = Arc::new(ObjectBlobs::in_memory());
    let key = AuditKey::in_store(store.as_ref()).await.unwrap();
    let digester = Digester::open(store.clone(), blobs.clone(), key)
        .await
        .unwrap();
    let audit = Audit::start(store.clone());
    let mut i = 0;
    for (count, digest) in [(20, true), (30, true), (10, false)] {
        // Concurrent callers: the writer batches them.
        let tasks: Vec<_> = (0..count)
            .map(|_| {
                i += 1;
                let (audit, e) = (audit.clone(), event(i));
                tokio::spawn(async move { audit.record(e).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        if digest {
            digester.write_digest(Utc::now()).await.unwrap();
        }
    }
    audit.close().await;
    sqlx::any::install_default_drivers();
    let sql = AnyPool::connect(url).await.unwrap();
    Trail {
        store,
        blobs,
        sql,
        digester,
    }
}

impl Trail {
    /// Verifies the trail, and again in pages of 1, 3 and 7 records (so that every tampering
    /// lands on or across page boundaries): the same report each time.
    async fn verify(&self) -> VerifyReport {
        let options = VerifyOptions::default();
        let mut report = verify(self.store.clone(), self.blobs.clone(), &options)
            .await
            .unwrap();
        report.elapsed = std::time::Duration::ZERO;
        for page in [1, 3, 7] {
            let mut paged = verify_paged(self.store.clone(), self.blobs.clone(), &options, page)
                .await
                .unwrap();
            paged.elapsed = std::time::Duration::ZERO;
            assert_eq!(paged, report, "in pages of {page}");
        }
        report
    }

    /// Verifies in pages of `page` records only.
    async fn verify_in_pages_of(&self, page: u32) -> VerifyReport {
        verify_paged(
            self.store.clone(),
            self.blobs.clone(),
            &VerifyOptions::default(),
            page,
        )
        .await
        .unwrap()
    }

    /// Verifies in pages of [`BOUNDARY_PAGE`] (where records 24 and 25 are on either side of a
    /// page boundary) and as [`Trail::verify`] does; expects `kind` at record `seq`.
    async fn expect_across_the_boundary(&self, kind: ProblemKind, seq: i64) {
        expect(
            &self.verify_in_pages_of(BOUNDARY_PAGE).await,
            kind,
            Subject::Record(seq),
        );
        expect(&self.verify().await, kind, Subject::Record(seq));
    }

    /// Moves the records from `at` on up by one and puts a forged record at `at` that links to
    /// its predecessor and is hashed right.
    async fn insert_forged(&self, at: i64) {
        self.shift(at, 1).await;
        let (record, _, hash_before) = self.row(at - 1).await;
        let forged = record
            .replace("UpdateUser", "GrantAdmin")
            .replace("SignIn", "GrantAdmin");
        let hash = record_hash(&hash_before, at, &forged);
        sqlx::query(
            "INSERT INTO audit_records (seq, event_id, event_time, event_source, event_name, user_type, user_id, \
             error_code, read_only, request_id, record, prev_hash, hash) \
             SELECT $1, event_id, event_time, event_source, 'GrantAdmin', user_type, user_id, error_code, read_only, \
             request_id, $2, $3, $4 FROM audit_records WHERE seq = $5",
        )
        .bind(at)
        .bind(&forged)
        .bind(&hash_before)
        .bind(&hash)
        .bind(at - 1)
        .execute(&self.sql)
        .await
        .unwrap();
    }

    /// Swaps the sequence numbers of records `a` and `b`.
    async fn swap(&self, a: i64, b: i64) {
        for (from, to) in [(a, -1), (b, a), (-1, b)] {
            sqlx::query("UPDATE audit_records SET seq = $1 WHERE seq = $2")
                .bind(to)
                .bind(from)
                .execute(&self.sql)
                .await
                .unwrap();
        }
    }

    async fn exec(&self, sql: &str) {
        sqlx::query(sql).execute(&self.sql).await.unwrap();
    }

    async fn row(&self, seq: i64) -> (String, String, String) {
        let r = sqlx::query("SELECT record, prev_hash, hash FROM audit_records WHERE seq = $1")
            .bind(seq)
            .fetch_one(&self.sql)
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    }

    /// Rewrites record `seq`'s text and recomputes its hash, as someone who knows the rule would.
    async fn rewrite(&self, seq: i64, from: &str, to: &str) -> String {
        let (record, prev, _) = self.row(seq).await;
        let record = record.replace(from, to);
        let hash = record_hash(&prev, seq, &record);
        sqlx::query("UPDATE audit_records SET record = $1, hash = $2 WHERE seq = $3")
            .bind(&record)
            .bind(&hash)
            .bind(seq)
            .execute(&self.sql)
            .await
            .unwrap();
        hash
    }

    /// Shifts the sequence numbers of records `>= from` by `by` (through negatives, so no two
    /// rows ever share a number).
    async fn shift(&self, from: i64, by: i64) {
        sqlx::query("UPDATE audit_records SET seq = -seq WHERE seq >= $1")
            .bind(from)
            .execute(&self.sql)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_records SET seq = -seq + $1 WHERE seq < 0")
            .bind(by)
            .execute(&self.sql)
            .await
            .unwrap();
    }

    async fn digest_keys(&self) -> Vec<String> {
        let mut keys = self.blobs.list(DIGEST_PREFIX).await.unwrap();
        keys.sort();
        keys
    }

    async fn blob_text(&self, key: &str) -> String {
        String::from_utf8(self.blobs.get(key).await.unwrap().unwrap().to_vec()).unwrap()
    }
}

fn expect(report: &VerifyReport, kind: ProblemKind, subject: Subject) {
    let p = report
        .problem
        .as_ref()
        .unwrap_or_else(|| panic!("tampering not found: {report:?}"));
    assert_eq!((p.kind, &p.subject), (kind, &subject), "{p}");
}

async fn an_intact_trail_verifies(t: Trail) {
    let r = t.verify().await;
    assert!(r.is_intact(), "{:?}", r.problem);
    assert_eq!(
        (r.records_checked, r.first_seq, r.last_seq),
        (60, Some(1), Some(60))
    );
    assert_eq!(
        (r.digests_checked, r.covered_through, r.uncovered_records),
        (2, 50, 10)
    );
    // Digests with nothing new since the last one still chain.
    t.digester.write_digest(Utc::now()).await.unwrap();
    t.digester.write_digest(Utc::now()).await.unwrap();
    let r = t.verify().await;
    assert!(r.is_intact(), "{:?}", r.problem);
    assert_eq!((r.digests_checked, r.uncovered_records), (4, 0));
}

async fn secrets_are_redacted_and_search_pages(t: Trail) {
    let (record, _, _) = t.row(7).await;
    assert!(!record.contains("Secr3t"), "{record}");
    assert!(record.contains(HIDDEN), "{record}");
    let v: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(v["eventVersion"], "1.0");
    assert_eq!(v["userIdentity"]["type"], "User");
    assert_eq!(v["eventID"].as_str().unwrap().len(), 36);

    let mut seen = Vec::new();
    let mut filter = SearchFilter {
        user_id: Some("user-1".into()),
        outcome: Some(AuditOutcome::Success),
        limit: Some(7),
        ..Default::default()
    };
    loop {
        let page = search(t.store.as_ref(), &filter).await.unwrap();
        for f in &page.records {
            assert_eq!(f.record["userIdentity"]["id"], "user-1");
            assert!(f.record.get("errorCode").is_none());
            seen.push(f.seq);
        }
        match page.next {
            Some(n) => filter.before = Some(n),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );
    // Which sequence numbers those are depends on the writer's order: count them by content.
    let mut expected = 0;
    for seq in 1..=60 {
        let v: serde_json::Value = serde_json::from_str(&t.row(seq).await.0).unwrap();
        if v["userIdentity"]["id"] == "user-1" && v.get("errorCode").is_none() {
            expected += 1;
        }
    }
    assert_eq!(seen.len(), expected);
    let filter = SearchFilter {
        event_name: Some("SignIn".into()),
        limit: Some(100),
        ..Default::default()
    };
    assert_eq!(
        search(t.store.as_ref(), &filter)
            .await
            .unwrap()
            .records
            .len(),
        12
    );
    let filter = SearchFilter {
        from: Some(Utc::now() + Duration::hours(1)),
        ..Default::default()
    };
    let none = search(t.store.as_ref(), &filter).await.unwrap();
    assert!(none.records.is_empty() && none.next.is_none());
}

async fn an_edited_record_is_caught(t: Trail) {
    t.exec("UPDATE audit_records SET record = replace(record, '\"admin\"', '\"citizen\"') WHERE seq = 33")
        .await;
    expect(&t.verify().await, ProblemKind::Edited, Subject::Record(33));
}

async fn an_edited_and_rehashed_record_is_caught(t: Trail) {
    t.rewrite(12, "UpdateUser", "DeleteUser").await;
    t.rewrite(12, "SignIn", "DeleteUser").await;
    t.exec("UPDATE audit_records SET event_name = 'DeleteUser' WHERE seq = 12")
        .await;
    expect(&t.verify().await, ProblemKind::Edited, Subject::Record(12));
}

async fn a_rewritten_chain_is_caught_by_the_signed_digest(t: Trail) {
    // Edit record 25 and recompute every hash after it: the chain is consistent again, but
    // digest 2 signed the old hash of record 50.
    let mut prev = t.rewrite(25, "\"admin\"", "\"citizen\"").await;
    for seq in 26..=60 {
        let (record, _, _) = t.row(seq).await;
        let hash = record_hash(&prev, seq, &record);
        sqlx::query("UPDATE audit_records SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(&t.sql)
            .await
            .unwrap();
        prev = hash;
    }
    expect(&t.verify().await, ProblemKind::Edited, Subject::Record(21));
}

async fn an_edited_search_column_is_caught(t: Trail) {
    t.exec("UPDATE audit_records SET user_id = 'someone-else' WHERE seq = 8")
        .await;
    expect(&t.verify().await, ProblemKind::Edited, Subject::Record(8));
}

async fn a_deleted_record_is_caught(t: Trail) {
    t.exec("DELETE FROM audit_records WHERE seq = 17").await;
    expect(&t.verify().await, ProblemKind::Deleted, Subject::Record(17));
}

async fn deleted_and_renumbered_records_are_caught(t: Trail) {
    t.exec("DELETE FROM audit_records WHERE seq IN (30, 31)")
        .await;
    t.shift(32, -2).await;
    expect(&t.verify().await, ProblemKind::Deleted, Subject::Record(30));
}

async fn records_deleted_from_the_end_of_a_digest_are_caught(t: Trail) {
    t.exec("DELETE FROM audit_records WHERE seq > 45").await;
    expect(&t.verify().await, ProblemKind::Deleted, Subject::Record(46));
}

async fn the_oldest_records_deleted_without_a_checkpoint_are_caught(t: Trail) {
    t.exec("DELETE FROM audit_records WHERE seq <= 3").await;
    expect(&t.verify().await, ProblemKind::Deleted, Subject::Record(1));
}

async fn an_inserted_record_is_caught(t: Trail) {
    // A forged record at 40, the rest renumbered; the forgery links to 39 and is hashed right.
    t.insert_forged(40).await;
    expect(
        &t.verify().await,
        ProblemKind::Inserted,
        Subject::Record(40),
    );
}

async fn reordered_records_are_caught(t: Trail) {
    t.swap(14, 18).await;
    expect(
        &t.verify().await,
        ProblemKind::Reordered,
        Subject::Record(14),
    );
}

/// Pages of 4 records: 21–24 and 25–28 are two pages (no digest ends there).
const BOUNDARY_PAGE: u32 = 4;

async fn a_field_edited_at_a_page_boundary_is_caught(t: Trail) {
    // The last record of a page, and then the first of the next.
    t.exec("UPDATE audit_records SET record = replace(record, '\"admin\"', '\"citizen\"') WHERE seq = 24")
        .await;
    t.expect_across_the_boundary(ProblemKind::Edited, 24).await;
    t.exec("UPDATE audit_records SET record = replace(record, '\"citizen\"', '\"admin\"') WHERE seq = 24")
        .await;
    assert!(t.verify_in_pages_of(BOUNDARY_PAGE).await.is_intact());
    t.exec("UPDATE audit_records SET read_only = 1 - read_only WHERE seq = 25")
        .await;
    t.expect_across_the_boundary(ProblemKind::Edited, 25).await;
}

async fn an_edit_rehashed_at_the_end_of_a_page_is_caught_in_the_next(t: Trail) {
    // Record 24 is self-consistent again; only record 25, on the next page, names its old hash.
    t.rewrite(24, "\"admin\"", "\"citizen\"").await;
    t.expect_across_the_boundary(ProblemKind::Edited, 24).await;
}

async fn records_deleted_across_a_page_boundary_are_caught(t: Trail) {
    t.exec("DELETE FROM audit_records WHERE seq IN (24, 25)")
        .await;
    t.expect_across_the_boundary(ProblemKind::Deleted, 24).await;
    // Renumbered to close the gap: record 26 now stands at 24, the end of a page.
    t.shift(26, -2).await;
    t.expect_across_the_boundary(ProblemKind::Deleted, 24).await;
}

async fn a_record_deleted_first_on_a_page_is_caught(t: Trail) {
    t.exec("DELETE FROM audit_records WHERE seq = 25").await;
    t.expect_across_the_boundary(ProblemKind::Deleted, 25).await;
}

async fn a_pair_swapped_across_a_page_boundary_is_caught(t: Trail) {
    t.swap(24, 25).await;
    t.expect_across_the_boundary(ProblemKind::Reordered, 24)
        .await;
}

async fn a_record_inserted_at_a_page_boundary_is_caught(t: Trail) {
    // The forgery starts the page at 25 and links to record 24 at the end of the one before.
    t.insert_forged(25).await;
    t.expect_across_the_boundary(ProblemKind::Inserted, 25)
        .await;
}

async fn a_deleted_digest_is_caught(t: Trail) {
    t.digester.write_digest(Utc::now()).await.unwrap();
    let keys = t.digest_keys().await;
    t.blobs.delete(&keys[1]).await.unwrap();
    expect(&t.verify().await, ProblemKind::Missing, Subject::Digest(2));
}

async fn the_newest_digest_deleted_is_caught(t: Trail) {
    let keys = t.digest_keys().await;
    t.blobs.delete(&keys[1]).await.unwrap();
    expect(&t.verify().await, ProblemKind::Missing, Subject::Digest(2));
}

async fn an_edited_digest_is_caught(t: Trail) {
    let keys = t.digest_keys().await;
    let text = t.blob_text(&keys[0]).await;
    let edited = text.replace("\"lastSequence\":20", "\"lastSequence\":19");
    assert_ne!(edited, text);
    t.blobs.put(&keys[0], edited.into()).await.unwrap();
    expect(&t.verify().await, ProblemKind::Edited, Subject::Digest(1));
}

async fn a_digest_signed_with_another_key_is_caught(t: Trail) {
    // Someone with another key replaces digest 2.
    let keys = t.digest_keys().await;
    let (body, canonical, _) = split_blob(&t.blob_text(&keys[1]).await).unwrap();
    let other = AuditKey::generate();
    let old_fingerprint = body["digestPublicKeyFingerprint"].as_str().unwrap();
    let forged = canonical.replace(old_fingerprint, other.fingerprint());
    let blob = signed_blob(&forged, &other.sign(forged.as_bytes()));
    t.blobs.put(&keys[1], blob.into()).await.unwrap();
    expect(&t.verify().await, ProblemKind::Unsigned, Subject::Digest(2));
    // Trusting only a given key refuses the published one too.
    let strict = VerifyOptions {
        trusted_keys: vec![other.public_pem()],
    };
    let r = verify(t.store.clone(), t.blobs.clone(), &strict)
        .await
        .unwrap();
    expect(&r, ProblemKind::Unsigned, Subject::Digest(1));
}

async fn expired_records_leave_a_verifiable_chain(t: Trail) {
    // Digests 1 and 2 count as old: everything they cover expires.
    let cutoff = Utc::now() + Duration::seconds(1);
    let expiry = t
        .digester
        .expire(cutoff, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((expiry.through_seq, expiry.deleted), (50, 50));
    assert_eq!(t.digester.expire(cutoff, Utc::now()).await.unwrap(), None);
    let r = t.verify().await;
    assert!(r.is_intact(), "{:?}", r.problem);
    assert_eq!(
        (r.expired_through, r.records_checked, r.first_seq),
        (Some(50), 10, Some(51))
    );
    // New records and digests go on from there.
    let audit = Audit::start(t.store.clone());
    audit.record(event(99)).await.unwrap();
    audit.close().await;
    t.digester.write_digest(Utc::now()).await.unwrap();
    assert!(t.verify().await.is_intact());
    // Deleting the first record after the checkpoint is still caught.
    t.exec("DELETE FROM audit_records WHERE seq = 51").await;
    expect(&t.verify().await, ProblemKind::Deleted, Subject::Record(51));
}

async fn an_edited_checkpoint_is_caught(t: Trail) {
    let cutoff = Utc::now() + Duration::seconds(1);
    t.digester
        .expire(cutoff, Utc::now())
        .await
        .unwrap()
        .unwrap();
    t.exec("UPDATE audit_checkpoint SET body = replace(body, '\"throughSequence\":50', '\"throughSequence\":49')")
        .await;
    expect(&t.verify().await, ProblemKind::Edited, Subject::Checkpoint);
}

async fn the_writer_batches_concurrent_callers_and_closes(t: Trail) {
    let audit = Audit::start(t.store.clone());
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let audit = audit.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for j in 0..5 {
                    seqs.push(audit.record(event(1000 + i * 5 + j)).await.unwrap().seq);
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (61..=380).collect::<Vec<_>>());
    audit.close().await;
    assert!(matches!(
        audit.record(event(1)).await,
        Err(ObserveError::AuditClosed)
    ));
    assert!(t.verify().await.is_intact());
}

async fn two_writers_on_one_database_keep_one_chain(t: Trail, url: String) {
    // The CLI beside a running server: another connection pool on the same database.
    let other: Arc<dyn ObserveStore> = Arc::new(ecocityhub_store::connect(&url).await.unwrap());
    let (a, b) = (Audit::start(t.store.clone()), Audit::start(other));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let audit = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { audit.record(event(i)).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    a.close().await;
    b.close().await;
    t.digester.write_digest(Utc::now()).await.unwrap();
    let r = t.verify().await;
    assert!(r.is_intact(), "{:?}", r.problem);
    assert_eq!(r.records_checked, 100);
}

macro_rules! both_backends {
    ($($name:ident $(($url:ident))?),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    use ecocityhub_store::Store;
                    let dir = tempfile::tempdir().unwrap();
                    let url = ecocityhub_store::testing::sqlite_url(dir.path());
                    let store = ecocityhub_store::connect(&url).await.unwrap();
                    store.migrate().await.unwrap();
                    let t = super::trail(store, &url).await;
                    super::$name(t $(, { let $url = url.clone(); $url })?).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    use ecocityhub_store::Store;
                    let Some(url) = ecocityhub_store::testing::fresh_postgres_url().await else { return };
                    let store = ecocityhub_store::connect(&url).await.unwrap();
                    store.migrate().await.unwrap();
                    let t = super::trail(store, &url).await;
                    super::$name(t $(, { let $url = url.clone(); $url })?).await;
                }
            )*
        }
    };
}

both_backends!(
    an_intact_trail_verifies,
    secrets_are_redacted_and_search_pages,
    an_edited_record_is_caught,
    an_edited_and_rehashed_record_is_caught,
    a_rewritten_chain_is_caught_by_the_signed_digest,
    an_edited_search_column_is_caught,
    a_deleted_record_is_caught,
    deleted_and_renumbered_records_are_caught,
    records_deleted_from_the_end_of_a_digest_are_caught,
    the_oldest_records_deleted_without_a_checkpoint_are_caught,
    an_inserted_record_is_caught,
    reordered_records_are_caught,
    a_field_edited_at_a_page_boundary_is_caught,
    an_edit_rehashed_at_the_end_of_a_page_is_caught_in_the_next,
    records_deleted_across_a_page_boundary_are_caught,
    a_record_deleted_first_on_a_page_is_caught,
    a_pair_swapped_across_a_page_boundary_is_caught,
    a_record_inserted_at_a_page_boundary_is_caught,
    a_deleted_digest_is_caught,
    the_newest_digest_deleted_is_caught,
    an_edited_digest_is_caught,
    a_digest_signed_with_another_key_is_caught,
    expired_records_leave_a_verifiable_chain,
    an_edited_checkpoint_is_caught,
    the_writer_batches_concurrent_callers_and_closes,
    two_writers_on_one_database_keep_one_chain(url),
);
