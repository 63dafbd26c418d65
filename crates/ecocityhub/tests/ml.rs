//! The ML layer through the real binary: backtests, training, the registry from the CLI, and
//! SageMaker's training and inference container contracts with temporary directories.

mod common;

use std::path::{Path, PathBuf};

use common::{stderr, stdout, Env, Server};
use serde_json::{json, Value};

fn demo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("demo")
        .join(name)
}

/// An environment with the demo's three months of Marylebone Road imported.
fn london() -> Env {
    let env = futures::executor::block_on(Env::sqlite());
    let file = demo_file("london-marylebone-2004q4.csv");
    let out = env.run(&["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    env
}

#[test]
fn backtest_prints_per_horizon_scores_and_refuses_bad_windows() {
    let env = london();
    let out = env.run(&[
        "ml",
        "backtest",
        "--station",
        "marylebone_road",
        "--parameter",
        "no2",
        "--from",
        "2004-12-01",
        "--to",
        "2004-12-15",
        "--retrain-days",
        "7",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(result["folds"], 2);
    let horizons = result["horizons"].as_array().unwrap();
    assert_eq!(horizons.len(), 24);
    for h in horizons {
        for method in ["model", "persistence", "seasonal_naive", "climatology"] {
            let mae = h[method]["mae"].as_f64().unwrap();
            assert!(mae > 0.0 && mae < 200.0, "{method}: {h}");
            assert!(h[method]["rmse"].as_f64().unwrap() >= mae);
        }
    }
    // Persistence and the same hour yesterday are one forecast at 24 h.
    assert_eq!(horizons[23]["persistence"], horizons[23]["seasonal_naive"]);

    let text = env.run(&[
        "ml",
        "backtest",
        "--station",
        "marylebone_road",
        "--parameter",
        "no2",
        "--from",
        "2004-12-01",
        "--to",
        "2004-12-08",
    ]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stdout(&text).contains("skill"), "{}", stdout(&text));

    for (args, expected) in [
        (
            vec!["--from", "2004-12-15", "--to", "2004-12-01"],
            "--to must be after --from",
        ),
        (
            vec!["--from", "2004-10-02", "--to", "2004-10-10"],
            "not enough history",
        ),
        (
            vec!["--from", "yesterday", "--to", "2004-12-01"],
            "not an ISO-8601",
        ),
    ] {
        let mut all = vec![
            "ml",
            "backtest",
            "--station",
            "marylebone_road",
            "--parameter",
            "no2",
        ];
        all.extend(args);
        let out = env.run(&all);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    }
    let out = env.run(&[
        "ml",
        "backtest",
        "--station",
        "nowhere",
        "--parameter",
        "no2",
        "--from",
        "2004-12-01",
        "--to",
        "2004-12-02",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn train_registers_versions_and_promote_and_rollback_switch_the_serving_one() {
    let env = london();
    let train = |extra: &[&str]| {
        let mut args = vec![
            "ml",
            "train",
            "--station",
            "marylebone_road",
            "--parameter",
            "no2",
        ];
        args.extend_from_slice(extra);
        let out = env.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert!(train(&[]).contains("1 models trained"));
    train(&[]);
    let models = || -> Vec<Value> {
        let out = env.run(&["ml", "models", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let listed = models();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (listed[0]["version"].as_i64(), listed[0]["status"].as_str()),
        (Some(2), Some("candidate"))
    );
    assert_eq!(listed[1]["status"], "serving");
    let v2 = listed[0]["id"].as_i64().unwrap().to_string();

    // A damaged artifact is refused and the serving model stays.
    let blobs = env.data_dir().join("blobs");
    let artifact = walk(&blobs)
        .into_iter()
        .filter(|p| p.ends_with("model.json.gz"))
        .max_by_key(|p| p.to_string_lossy().to_string())
        .unwrap();
    let good = std::fs::read(&artifact).unwrap();
    std::fs::write(&artifact, &good[..good.len() / 2]).unwrap();
    let out = env.run(&["ml", "promote", &v2]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("checksum"), "{}", stderr(&out));
    assert_eq!(models()[1]["status"], "serving");

    std::fs::write(&artifact, &good).unwrap();
    let out = env.run(&["ml", "promote", &v2]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(models()[0]["status"], "serving");
    let out = env.run(&[
        "ml",
        "rollback",
        "--station",
        "marylebone_road",
        "--parameter",
        "no2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("v1"), "{}", stdout(&out));
    assert_eq!(models()[1]["status"], "serving");
    let out = env.run(&[
        "ml",
        "rollback",
        "--station",
        "marylebone_road",
        "--parameter",
        "no2",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no earlier promotion"),
        "{}",
        stderr(&out)
    );

    let out = env.run(&["ml", "train", "--parameter", "temperature"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not forecast"), "{}", stderr(&out));

    // The training runs (the refused one too), the promotions (the first model's by its run)
    // and the rollback that happened are audited; refused ones change nothing.
    let audited = |event: &str| -> Vec<Value> {
        let out = env.run(&["audit", "search", "--json", "--event", event]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut found: Vec<Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        found.reverse(); // search answers newest first; these read oldest first
        found
    };
    let runs = audited("TrainModels");
    assert_eq!(runs.len(), 3, "two runs and the refused one: {runs:?}");
    assert_eq!(runs[2]["errorCode"], "NotForecastable", "{}", runs[2]);
    assert_eq!(
        runs[2]["requestParameters"]["request"]["parameters"][0],
        "temperature"
    );
    for (run, promoted) in runs.iter().zip([true, false]) {
        assert_eq!(run["eventSource"], "cli");
        assert_eq!(run["responseElements"]["status"], "succeeded", "{run}");
        assert_eq!(
            run["responseElements"]["models"][0]["promoted"], promoted,
            "{run}"
        );
        assert_eq!(
            run["requestParameters"]["request"]["stations"][0],
            "marylebone_road"
        );
        assert!(run.get("errorCode").is_none(), "{run}");
    }
    let promotions = audited("PromoteModel");
    assert_eq!(promotions.len(), 2, "{promotions:?}");
    assert_eq!(
        promotions[0]["responseElements"]["modelId"],
        listed[1]["id"]
    );
    assert_eq!(promotions[0]["requestParameters"]["by"], "TrainModels");
    assert_eq!(
        promotions[1]["responseElements"]["modelId"],
        listed[0]["id"]
    );
    let rollbacks = audited("RollbackModel");
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    assert_eq!(rollbacks[0]["responseElements"]["modelId"], listed[1]["id"]);
    assert_eq!(rollbacks[0]["eventSource"], "cli");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// SageMaker's directory layout under a temporary prefix.
fn sagemaker_prefix(hyperparameters: Value) -> tempfile::TempDir {
    let prefix = tempfile::tempdir().unwrap();
    let data = prefix.path().join("input/data/train");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(
        demo_file("london-marylebone-2004q4.csv"),
        data.join("london.csv"),
    )
    .unwrap();
    let config = prefix.path().join("input/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("hyperparameters.json"),
        hyperparameters.to_string(),
    )
    .unwrap();
    prefix
}

#[tokio::test]
async fn the_sagemaker_training_and_inference_contracts_hold() {
    let env = Env::sqlite().await;
    // SageMaker passes hyperparameters as strings.
    let prefix = sagemaker_prefix(json!({"parameter": "no2", "trees": "30"}));
    let p = prefix.path().to_str().unwrap();
    let out = env.run(&["ml", "train-container", "--prefix", p]);
    assert!(out.status.success(), "{}", stderr(&out));
    let model_dir = prefix.path().join("model");
    for file in [
        "model.json.gz",
        "model.json.gz.sha256",
        "report.md",
        "error-by-horizon.svg",
    ] {
        assert!(model_dir.join(file).is_file(), "{file} missing");
    }
    assert!(!prefix.path().join("output/failure").exists());

    let server = Server::start_command(
        &env,
        &[
            "ml",
            "serve-model",
            "--model-dir",
            model_dir.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ],
    );
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(server.url("/ping"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let history: Vec<Value> = (0..72)
        .map(|h| json!({"time": format!("2004-12-{:02}T{:02}:00:00Z", 28 + h / 24, h % 24), "value": 60.0 + (h % 24) as f64}))
        .collect();
    let resp = client
        .post(server.url("/invocations"))
        .json(&json!({"history": history, "weather": {"wind_speed": [{"time": "2004-12-30T23:00:00Z", "value": 3.0}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let forecast: Value = resp.json().await.unwrap();
    assert_eq!(forecast["origin"], "2004-12-30T23:00:00Z");
    let hours = forecast["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(hours[0]["time"], "2004-12-31T00:00:00Z");
    assert!(hours.iter().all(|h| h["value"].as_f64().unwrap() > 0.0));

    for (body, content_type, status) in [
        ("{\"history\": []}", "application/json", 400),
        ("{\"histories\": []}", "application/json", 400),
        ("not json", "application/json", 400),
        ("time,value\n", "text/csv", 415),
    ] {
        let resp = client
            .post(server.url("/invocations"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{body}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    drop(server);

    // A damaged model is refused at start, with the reason.
    let bytes = std::fs::read(model_dir.join("model.json.gz")).unwrap();
    std::fs::write(model_dir.join("model.json.gz"), &bytes[..100]).unwrap();
    let out = env.run(&[
        "ml",
        "serve-model",
        "--model-dir",
        model_dir.to_str().unwrap(),
        "--bind",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
}

#[test]
fn a_failed_training_container_writes_output_failure() {
    let env = futures::executor::block_on(Env::sqlite());
    for (hyper, reason) in [
        (json!({"parameter": "temperature"}), "not forecast"),
        (json!({"parameter": "no2", "trees": "many"}), "trees"),
        (
            json!({"parameter": "no2", "colour": "red"}),
            "unknown hyperparameter",
        ),
        (json!({}), "`parameter` is required"),
    ] {
        let prefix = sagemaker_prefix(hyper);
        let out = env.run(&[
            "ml",
            "train-container",
            "--prefix",
            prefix.path().to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let failure = std::fs::read_to_string(prefix.path().join("output/failure")).unwrap();
        assert!(failure.contains(reason), "{failure}");
        assert!(!prefix.path().join("model/model.json.gz").exists());
    }
}

/// Encryption at rest through the binary: after `ml train` and `keys rotate`, no file of the
/// blob store holds a model artifact or report in the clear (every one is an envelope), the
/// key file is private to its owner, the signing keys' private halves in the database are
/// sealed, and a flipped bit in an artifact is refused with a clear error.
#[tokio::test]
async fn blobs_and_signing_keys_are_encrypted_at_rest() {
    let env = london();
    let out = env.run(&[
        "ml",
        "train",
        "--station",
        "marylebone_road",
        "--parameter",
        "no2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&[
        "ml",
        "train",
        "--station",
        "marylebone_road",
        "--parameter",
        "no2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for _ in 0..2 {
        let out = env.run(&["keys", "rotate"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    let files = walk(&env.data_dir().join("blobs"));
    assert!(files.len() >= 2, "an artifact and a report: {files:?}");
    for file in &files {
        let raw = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !raw.starts_with(&[0x1f, 0x8b]),
            "{} is a plain gzip file",
            file.display()
        );
        // Strings long enough never to turn up in ciphertext by chance.
        for clear in ["marylebone_road", "<svg xmlns", "\"trees\":", "Backtest"] {
            assert!(
                !text.contains(clear),
                "{} holds {clear:?} in the clear",
                file.display()
            );
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.data_dir().join("master-keys.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the key file is the owner's only: {mode:o}"
        );
    }

    use sqlx::{Connection, Row};
    let url = ecocityhub_store::testing::sqlite_url(&env.data_dir());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let keys = sqlx::query("SELECT private_pem FROM signing_keys")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "the first key and the rotated one");
    for row in keys {
        let pem: String = row.get(0);
        assert!(pem.starts_with("sealed:v1:"), "{pem:.40}");
        assert!(!pem.contains("PRIVATE KEY"));
    }
    db.close().await.unwrap();

    // One flipped bit in the candidate's artifact: promoting it is refused.
    let artifact = files
        .iter()
        .filter(|p| p.to_string_lossy().contains("model.json.gz"))
        .max_by_key(|p| p.to_string_lossy().to_string())
        .unwrap();
    let mut raw = std::fs::read(artifact).unwrap();
    let middle = raw.len() / 2;
    raw[middle] ^= 0x01;
    std::fs::write(artifact, &raw).unwrap();
    let listed: Vec<Value> =
        serde_json::from_str(&stdout(&env.run(&["ml", "models", "--json"]))).unwrap();
    let id = listed[0]["id"].as_i64().unwrap().to_string();
    assert_eq!(listed[0]["status"], "candidate");
    let out = env.run(&["ml", "promote", &id]);
    assert!(!out.status.success());
    eprintln!("{}", stderr(&out));
    assert!(stderr(&out).contains("checksum"), "{}", stderr(&out));
}
