//! Times `audit::verify` over a trail that persists between runs (filled once), so that the
//! verifier can be measured again and again without appending a million records each time:
//!
//! ```text
//! cargo run --release -p ecocityhub-observe --example verify_bench -- URL DIR [N] [REPEATS] [fetch]
//! ```
//!
//! `URL` is the database (`sqlite:///tmp/vb/audit.db` or `postgres://…`), `DIR` holds the blob
//! store with the signed digest. An empty trail is first filled with `N` records (default
//! 1,000,000) and a digest of them. `REPEATS` (default 3) verifications follow, each in pages of
//! `VB_PAGE` records if set (else [`PAGE`], as `verify` reads). `fetch` first times reading
//! the pages alone, without checking them.
use std::sync::Arc;
use std::time::Instant;

use ecocityhub_blobs::{BlobStore, ObjectBlobs};
use ecocityhub_observe::audit::verify::PAGE;
use ecocityhub_observe::audit::{verify_paged, AuditKey, Digester, VerifyOptions};
use ecocityhub_observe::bench::fill_audit;
use ecocityhub_store::observe::ObserveStore;
use ecocityhub_store::Store;

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, dir, ..] = args.as_slice() else {
        return Err("usage: verify_bench URL DIR [N] [REPEATS] [fetch]".into());
    };
    let number = |i: usize, default: usize| -> Result<usize, Error> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (n, repeats) = (number(2, 1_000_000)?, number(3, 3)?);
    let fetch_only_first = args.get(4).is_some_and(|s| s == "fetch");
    let page: u32 = match std::env::var("VB_PAGE") {
        Ok(p) => p.parse()?,
        Err(_) => PAGE,
    };

    if let Some(path) = url.strip_prefix("sqlite://") {
        if let Some(parent) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let store = ecocityhub_store::connect(url).await?;
    store.migrate().await?;
    let store: Arc<dyn ObserveStore> = Arc::new(store);
    let blobs: Arc<dyn BlobStore> = Arc::new(ObjectBlobs::local(
        &std::path::Path::new(dir).join("blobs"),
    )?);
    if store.audit_head().await?.seq == 0 {
        let t = Instant::now();
        fill_audit(store.as_ref(), n).await?;
        let key = AuditKey::in_store(store.as_ref()).await?;
        Digester::open(store.clone(), blobs.clone(), key)
            .await?
            .write_digest(chrono::Utc::now())
            .await?;
        println!("filled {n} records in {:.1} s", t.elapsed().as_secs_f64());
    }

    if fetch_only_first {
        let t = Instant::now();
        let (mut from, mut count) = (1, 0);
        loop {
            let rows = store.audit_records(from, page).await?;
            let Some(last) = rows.last() else { break };
            from = last.seq + 1;
            count += rows.len();
        }
        let s = t.elapsed().as_secs_f64();
        println!("fetch only, pages of {page}: {count} records in {s:.2} s");
    }
    for _ in 0..repeats {
        let t = Instant::now();
        let r = verify_paged(
            store.clone(),
            blobs.clone(),
            &VerifyOptions::default(),
            page,
        )
        .await?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "verify, pages of {page}: {} records in {s:.2} s, {:.0} records/s (intact: {}, digests: {})",
            r.records_checked,
            r.records_checked as f64 / s,
            r.is_intact(),
            r.digests_checked
        );
    }
    Ok(())
}
