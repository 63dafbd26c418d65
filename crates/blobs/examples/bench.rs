//! Prints the blob layer's benchmarks (what `ecocityhub bench` will call):
//! `cargo run --release -p ecocityhub-blobs --example bench`.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let photo = ecocityhub_blobs::bench::photo_processing(5);
    println!("{photo:?}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cost = ecocityhub_blobs::bench::encryption_cost(dir.path(), 1_000_000, 200)
        .await
        .expect("the encryption benchmark runs");
    println!("{cost:?}");
    let uploads = ecocityhub_blobs::bench::upload_urls(5_000).await;
    println!("{uploads:?}");
}
