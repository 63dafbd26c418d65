//! The command line: help everywhere, imports that are idempotent and report what they skip,
//! device keys, clear messages with a non-zero exit for bad input, the audit records of CLI
//! actions with `audit search` and `audit verify` (which finds tampering), and `waf check`.

mod common;

use common::{stderr, stdout, Env};
use ecocityhub_store::Store;

#[tokio::test]
async fn every_command_has_help() {
    let env = Env::sqlite().await;
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["import", "--help"],
        vec!["device", "--help"],
        vec!["device", "create", "--help"],
        vec!["device", "list", "--help"],
        vec!["device", "revoke", "--help"],
        vec!["bench", "--help"],
        vec!["user", "create", "--help"],
        vec!["user", "list", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "list", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["audit", "search", "--help"],
        vec!["waf", "check", "--help"],
        vec!["station", "create", "--help"],
        vec!["station", "edit", "--help"],
        vec!["station", "list", "--help"],
        vec!["ml", "models", "--help"],
        vec!["ml", "backtest", "--help"],
        vec!["backup", "list", "--help"],
        vec!["static", "export", "--help"],
    ] {
        let out = env.run(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            stdout(&out).contains("Usage:"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
}

const WIDE: &str = "time,site,no2_ppb,pm10_ugm3,humid_pct,cbwd,mystery_xyz\n\
2024-01-01T00:00:00Z,st1,20,30,50,NW,1\n\
2024-01-01T01:00:00Z,st1,21,,55,NW,1\n\
2024-01-01T02:00:00Z,st1,22,-5,150,NW,1\n\
2024-01-01T00:00:00Z,ghost,1,1,1,NW,1\n";

#[tokio::test]
async fn imports_are_idempotent_and_report_what_they_skip() {
    let env = Env::sqlite().await;
    let stations = env.file(
        "stations.csv",
        "site,name,lat,lon\nst1,Test One,51.5,-0.1\n",
    );
    let data = env.file("wide.csv", WIDE);
    let args = [
        "import",
        data.to_str().unwrap(),
        "--stations",
        stations.to_str().unwrap(),
    ];
    let out = env.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // 3 rows of st1: 3 no2 + 1 pm10 + 2 humidity stored; pm10 -5 and humidity 150 rejected.
    assert!(text.contains("6 readings stored"), "{text}");
    assert!(
        text.contains("readings: 6 new or changed, 0 unchanged, 2 rejected"),
        "{text}"
    );
    assert!(
        text.contains("stations: 1 new (st1), 0 known already"),
        "{text}"
    );
    assert!(text.contains("skipped column cbwd"), "{text}");
    assert!(text.contains("skipped column mystery_xyz"), "{text}");
    assert!(text.contains("ghost"), "unknown sites are named: {text}");

    let store = env.store().await;
    assert_eq!(store.count_readings().await.unwrap(), 6);
    let again = env.run(&args);
    assert!(again.status.success());
    let text = stdout(&again);
    assert!(text.contains("stations: 0 new, 1 known already"), "{text}");
    assert!(
        text.contains("readings: 0 new or changed, 6 unchanged, 2 rejected"),
        "re-imported rows are reported unchanged: {text}"
    );
    assert_eq!(
        store.count_readings().await.unwrap(),
        6,
        "re-importing changes nothing"
    );

    // The long layout, with units.
    let long = env.file("long.csv", "station,parameter,time,value,unit\nst1,o3,2024-01-01T00:00:00Z,40,ppb\nst1,co,2024-01-01T00:00:00Z,0.5,ppm\n");
    let out = env.run(&["import", long.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(store.count_readings().await.unwrap(), 8);
}

#[tokio::test]
async fn device_keys_are_created_listed_and_revoked() {
    let env = Env::sqlite().await;
    let key = env.station_with_key();
    assert!(key.starts_with("ech_"), "{key}");
    let prefix = key.split('_').nth(1).unwrap();
    let list = env.run(&["device", "list", "--station", "st1"]);
    let listed = stdout(&list);
    assert!(
        listed.contains(prefix) && listed.contains("active"),
        "{listed}"
    );
    assert!(
        !listed.contains(key.rsplit('_').next().unwrap()),
        "the secret is never shown again"
    );
    assert!(env.run(&["device", "revoke", prefix]).status.success());
    assert!(stdout(&env.run(&["device", "list", "--station", "st1"])).contains("REVOKED"));
    let again = env.run(&["device", "revoke", prefix]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("no active key"));
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_a_non_zero_exit() {
    let env = Env::sqlite().await;
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["import".into(), "/no/such/file.csv".into()],
            "cannot open",
        ),
        (
            vec![
                "import".into(),
                env.file("junk.csv", "a,b\n1,2\n").display().to_string(),
            ],
            "unrecognised CSV header",
        ),
        (
            vec![
                "import".into(),
                env.file("w.csv", WIDE).display().to_string(),
                "--stations".into(),
                env.file("s.csv", "site,lat,lon\nst1,95,0\n")
                    .display()
                    .to_string(),
            ],
            "latitude",
        ),
        (
            vec![
                "device".into(),
                "create".into(),
                "--station".into(),
                "nowhere".into(),
            ],
            "does not exist",
        ),
        (
            vec!["serve".into(), "--bind".into(), "not-an-address".into()],
            "invalid",
        ),
    ];
    for (args, expected) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.run(&a);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr(&out)
                .to_lowercase()
                .contains(&expected.to_lowercase()),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let bad_db = env
        .cmd(&["migrate"])
        .env("DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!bad_db.status.success());
    assert!(stderr(&bad_db).contains("sqlite://"), "{}", stderr(&bad_db));
    let bad_config = env
        .cmd(&[
            "migrate",
            "--config",
            env.file("c.toml", "colour = 1\n").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!bad_config.status.success());
    assert!(
        stderr(&bad_config).contains("c.toml"),
        "{}",
        stderr(&bad_config)
    );
}

#[tokio::test]
async fn a_first_serve_loads_the_demo_city() {
    let env = Env::sqlite().await;
    let server = common::Server::start(&env, &[]);
    let stations: serde_json::Value = server.get_json("/api/v1/stations").await;
    let ids: Vec<&str> = stations
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"marylebone_road")
            && ids.contains(&"beijing_us_embassy")
            && ids.contains(&"JFK"),
        "{ids:?}"
    );
    assert_eq!(ids.len(), 4 + 43, "the German network is there too");
    let latest: serde_json::Value = server
        .get_json("/api/v1/latest?station=marylebone_road")
        .await;
    assert!(latest[0]["aqi"]["aqi"].as_u64().is_some(), "{latest}");
    // Beijing's wind comes from the file's compass quarter and cumulated speed.
    let beijing: serde_json::Value = server
        .get_json("/api/v1/latest?station=beijing_us_embassy")
        .await;
    let value_of = |parameter: &str| {
        beijing[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["parameter"] == parameter)
            .and_then(|r| r["value"].as_f64())
    };
    let speed = value_of("wind_speed").expect("Beijing has wind speed");
    assert!((0.0..60.0).contains(&speed), "{beijing}");
    let direction = value_of("wind_direction").expect("Beijing has wind direction");
    assert!(
        [45.0, 135.0, 225.0, 315.0].contains(&direction),
        "{beijing}"
    );
    drop(server);

    // Replay: the same data on today's calendar, labelled as such.
    let env = Env::sqlite().await;
    let server = common::Server::start(&env, &["--replay"]);
    let latest: serde_json::Value = server
        .get_json("/api/v1/latest?station=marylebone_road")
        .await;
    assert_eq!(latest[0]["stale"], false, "{latest}");
    let newest = chrono::DateTime::parse_from_rfc3339(latest[0]["time"].as_str().unwrap()).unwrap();
    let age = chrono::Utc::now().signed_duration_since(newest);
    assert!(
        age >= chrono::Duration::zero() && age < chrono::Duration::hours(1),
        "the replay ends in the current hour: {age}"
    );
    let german: serde_json::Value = server.get_json("/api/v1/latest?station=DEBB053").await;
    assert_eq!(
        german[0]["stale"], false,
        "daily means are not stale within their day: {german}"
    );
    let station: serde_json::Value = server.get_json("/api/v1/stations/marylebone_road").await;
    assert!(
        station["metadata"]["replay"]["note"]
            .as_str()
            .unwrap()
            .contains("not live"),
        "{station}"
    );
}

#[tokio::test]
async fn the_first_admin_comes_from_the_cli_and_keys_rotate_under_a_running_server() {
    let env = Env::sqlite().await;
    // The first user makes the database: `--create`.
    let create = [
        "user",
        "create",
        "--email",
        "Root@Example.org",
        "--role",
        "admin",
        "--create",
    ];
    let weak = env.run_with_stdin(&create, "password\n");
    assert!(!weak.status.success());
    assert!(stderr(&weak).contains("upper-case"), "{}", stderr(&weak));
    let none = env.run_with_stdin(&create, "");
    assert!(!none.status.success());
    assert!(
        stderr(&none).contains("standard input"),
        "{}",
        stderr(&none)
    );
    let bad_role = env.run_with_stdin(
        &[
            "user",
            "create",
            "--email",
            "x@example.org",
            "--role",
            "root",
            "--create",
        ],
        "Corr3ct-Horse\n",
    );
    assert!(!bad_role.status.success(), "a bad role must fail");
    assert!(stderr(&bad_role).contains("role"), "{}", stderr(&bad_role));
    let ok = env.run_with_stdin(&create, "Corr3ct-Horse\n");
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains("root@example.org\tadmin"),
        "{}",
        stdout(&ok)
    );
    let dup = env.run_with_stdin(&create, "Corr3ct-Horse\n");
    assert!(!dup.status.success(), "a duplicate user must fail");
    assert!(stderr(&dup).contains("exists already"), "{}", stderr(&dup));
    assert!(stdout(&env.run(&["user", "list"])).contains("root@example.org\tadmin\tconfirmed"));

    let server = common::Server::start(&env, &["--no-demo", "--key-refresh-seconds", "1"]);
    let client = reqwest::Client::new();
    let before = server
        .access_token("root@example.org", "Corr3ct-Horse")
        .await;
    let users = client
        .get(server.url("/api/v1/admin/users"))
        .bearer_auth(&before)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200);

    // Rotating in another process: the running server picks the new key up by itself (it
    // reads the keys again every second here) and signs with it; tokens signed before keep
    // working until their key is retired by the next rotation.
    let kid = |token: &str| {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let me = |token: String| {
        let request = client.get(server.url("/api/v1/me")).bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    let first_kid = kid(&before);
    assert!(env.run(&["keys", "rotate"]).status.success());
    // (A sign-in every 400 ms stays well under the 30 a minute one client may make.)
    let mut after = String::new();
    for _ in 0..25 {
        after = server
            .access_token("root@example.org", "Corr3ct-Horse")
            .await;
        if kid(&after) != first_kid {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    let second_kid = kid(&after);
    assert_ne!(
        second_kid, first_kid,
        "the server never signed with the new key"
    );
    let listed = stdout(&env.run(&["keys", "list"]));
    assert!(listed.contains(&second_kid), "{listed}");
    assert_eq!(
        listed.lines().filter(|l| l.ends_with("active")).count(),
        2,
        "{listed}"
    );
    assert_eq!(me(before.clone()).await, 200);
    assert_eq!(me(after.clone()).await, 200);

    // The next rotation retires the first key: its tokens stop verifying without a restart.
    assert!(env.run(&["keys", "rotate"]).status.success());
    let listed = stdout(&env.run(&["keys", "list"]));
    assert_eq!(
        listed.lines().filter(|l| l.contains("retired")).count(),
        1,
        "{listed}"
    );
    let mut status = 200;
    for _ in 0..100 {
        status = me(before.clone()).await.as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 401, "a token of the retired key still verifies");
    assert_eq!(me(after).await, 200, "the previous key still verifies");
}

#[tokio::test]
async fn policies_from_a_file_replace_the_shipped_ones() {
    let env = Env::sqlite().await;
    for (email, role) in [
        ("root@example.org", "admin"),
        ("cit@example.org", "citizen"),
    ] {
        let out = env.run_with_stdin(
            &[
                "user", "create", "--email", email, "--role", role, "--create",
            ],
            "Corr3ct-Horse\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Only admins may do anything: citizens lose even their own account.
    let policies = env.file(
        "strict.cedar",
        "permit (principal in Group::\"admin\", action, resource);\n",
    );
    let server = common::Server::start(
        &env,
        &["--no-demo", "--policies", policies.to_str().unwrap()],
    );
    let client = reqwest::Client::new();
    let citizen = server
        .access_token("cit@example.org", "Corr3ct-Horse")
        .await;
    let root = server
        .access_token("root@example.org", "Corr3ct-Horse")
        .await;
    let me = |t: String| client.get(server.url("/api/v1/me")).bearer_auth(t).send();
    assert_eq!(me(citizen).await.unwrap().status(), 403);
    assert_eq!(me(root).await.unwrap().status(), 200);
}

const PASSWORD: &str = "Corr3ct-Horse\n";

/// Five audited CLI actions: two users created (1, 2), a device key created (3) and revoked
/// (4), the signing key rotated by the OS user `alice` (5). Returns the device key.
fn audited_actions(env: &Env) -> String {
    for (email, role) in [
        ("root@example.org", "admin"),
        ("op@example.org", "operator"),
    ] {
        let out = env.run_with_stdin(
            &[
                "user", "create", "--email", email, "--role", role, "--create",
            ],
            PASSWORD,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let key = env.station_with_key();
    let prefix = key.split('_').nth(1).unwrap();
    assert!(env.run(&["device", "revoke", prefix]).status.success());
    let rotate = env
        .cmd(&["keys", "rotate"])
        .env("USER", "alice")
        .output()
        .unwrap();
    assert!(rotate.status.success(), "{}", stderr(&rotate));
    key
}

/// `audit search --json ARGS…`: one record per line.
fn search(env: &Env, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["audit", "search", "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs SQL on the environment's database directly (sqlx, outside the store).
async fn tamper(env: &Env, statements: &[&str]) {
    sqlx::any::install_default_drivers();
    let url = env.database_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            env.data_dir().join("ecocityhub.db").display()
        )
    });
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    for sql in statements {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn cli_actions_are_audited_and_found_by_audit_search() {
    let env = Env::sqlite().await;
    let key = audited_actions(&env);
    let all = search(&env, &[]);
    let names: Vec<&str> = all
        .iter()
        .map(|r| r["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "RotateSigningKey",
            "RevokeDeviceKey",
            "CreateDeviceKey",
            "CreateUser",
            "CreateUser"
        ],
        "newest first"
    );
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains("Corr3ct"), "no password: {text}");
    assert!(
        !text.contains(key.rsplit('_').next().unwrap()),
        "no device key: {text}"
    );

    let created = search(&env, &["--event", "CreateUser"]);
    assert_eq!(created.len(), 2);
    let r = &created[0];
    assert_eq!(r["eventSource"], "cli", "{r}");
    assert_eq!(r["userIdentity"]["type"], "Cli", "{r}");
    assert_eq!(r["userIdentity"]["credential"], "cli", "{r}");
    assert_eq!(r["readOnly"], false, "{r}");
    assert_eq!(r["requestParameters"]["email"], "op@example.org", "{r}");
    assert_eq!(r["requestParameters"]["roles"], "operator", "{r}");
    assert!(r["responseElements"]["userId"].is_string(), "{r}");
    assert!(
        r["eventID"].is_string() && r["eventTime"].is_string(),
        "{r}"
    );
    let device = search(&env, &["--event", "CreateDeviceKey"]);
    assert_eq!(
        device[0]["responseElements"]["prefix"],
        key.split('_').nth(1).unwrap()
    );
    assert_eq!(device[0]["requestParameters"]["station"], "st1");

    let by_alice = search(&env, &["--user", "alice"]);
    assert_eq!(by_alice.len(), 1);
    assert_eq!(by_alice[0]["eventName"], "RotateSigningKey");
    assert!(search(&env, &["--outcome", "error"]).is_empty());
    assert_eq!(
        search(&env, &["--outcome", "ok", "--source", "cli"]).len(),
        5
    );
    assert!(search(&env, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(
        search(&env, &["--until", "2999-01-01T00:00:00+02:00"]).len(),
        5
    );
    let page = env.run(&["audit", "search", "--json", "--limit", "2"]);
    assert_eq!(stdout(&page).lines().count(), 2);
    assert!(
        stderr(&page).contains("more records match"),
        "{}",
        stderr(&page)
    );

    let table = stdout(&env.run(&["audit", "search"]));
    assert!(
        table.contains("RotateSigningKey") && table.contains("Cli:alice") && table.contains("ok"),
        "{table}"
    );
    let master = env.run(&["keys", "rotate-master"]);
    assert!(master.status.success(), "{}", stderr(&master));
    let rotated = search(&env, &["--event", "RotateMasterKey"]);
    assert_eq!(rotated.len(), 1);
    assert_eq!(
        rotated[0]["responseElements"]["blobsFailed"], 0,
        "{}",
        rotated[0]
    );
    assert!(rotated[0].get("errorCode").is_none(), "{}", rotated[0]);
    let none = stdout(&env.run(&["audit", "search", "--event", "NoSuchEvent"]));
    assert!(none.contains("no audit records match"), "{none}");
    for (args, expected) in [
        (vec!["audit", "search", "--since", "yesterday"], "RFC 3339"),
        (vec!["audit", "search", "--outcome", "maybe"], "maybe"),
        (vec!["audit", "search", "--limit", "0"], "0"),
    ] {
        let out = env.run(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn audit_verify_passes_an_intact_trail_and_names_the_tampered_record() {
    let env = Env::sqlite().await;
    audited_actions(&env);
    let out = env.run(&["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("audit trail intact: 5 records (1..5) and 0 signed digests checked in")
            && text.contains("no digest yet: 5 records are protected by the chain only"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["audit", "verify", "--json"]))).unwrap();
    assert_eq!(json["recordsChecked"], 5, "{json}");
    assert_eq!(json["uncoveredRecords"], 5, "{json}");
    assert!(
        json["problem"].is_null() && json["elapsedMs"].is_number(),
        "{json}"
    );

    // Each tampering on a copy of the intact data.
    let pristine = env.dir.path().join("pristine");
    copy_dir(&env.data_dir(), &pristine);
    let cases: [(&[&str], &str); 4] = [
        (
            &["UPDATE audit_records SET record = replace(record, '\"admin\"', '\"citizen\"') WHERE seq = 1"],
            "record 1: Edited: its content does not match its hash",
        ),
        (
            &["UPDATE audit_records SET event_name = 'DeleteUser' WHERE seq = 4"],
            "record 4: Edited: its searchable columns disagree",
        ),
        (
            &["DELETE FROM audit_records WHERE seq = 3"],
            "record 3: Deleted",
        ),
        (
            &[
                "UPDATE audit_records SET seq = -1 WHERE seq = 2",
                "UPDATE audit_records SET seq = 2 WHERE seq = 3",
                "UPDATE audit_records SET seq = 3 WHERE seq = -1",
            ],
            "record 2: Reordered: the records at 2 and 3 have changed places",
        ),
    ];
    for (sql, expected) in cases {
        std::fs::remove_dir_all(env.data_dir()).unwrap();
        copy_dir(&pristine, &env.data_dir());
        tamper(&env, sql).await;
        let out = env.run(&["audit", "verify"]);
        assert!(!out.status.success(), "{sql:?} went unnoticed");
        assert!(
            stderr(&out).contains("the audit trail is not intact")
                && stderr(&out).contains(expected),
            "{sql:?}: {}",
            stderr(&out)
        );
    }
    // The last one (the swap) as JSON.
    let out = env.run(&["audit", "verify", "--json"]);
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(json["problem"]["kind"], "reordered", "{json}");
    assert_eq!(
        json["problem"]["subject"],
        serde_json::json!({"type": "record", "id": 2}),
        "{json}"
    );
    assert_eq!(json["recordsChecked"], 1, "{json}");
}

#[tokio::test]
async fn audit_search_and_verify_work_on_postgres() {
    let Some(env) = Env::postgres().await else {
        return;
    };
    let out = env.run_with_stdin(
        &[
            "user",
            "create",
            "--email",
            "pg@example.org",
            "--role",
            "admin",
        ],
        PASSWORD,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let found = search(&env, &["--event", "CreateUser", "--outcome", "ok"]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["requestParameters"]["email"], "pg@example.org");
    // The database is on the server, but the blob store (its master key) is in a data
    // directory this machine does not have yet.
    let ok = env.run(&["audit", "verify", "--create"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains("intact: 1 record (1..1)"),
        "{}",
        stdout(&ok)
    );
    tamper(
        &env,
        &["UPDATE audit_records SET record = replace(record, 'pg@', 'gp@') WHERE seq = 1"],
    )
    .await;
    let bad = env.run(&["audit", "verify"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("record 1: Edited"),
        "{}",
        stderr(&bad)
    );
}

/// Two attacks (one an XSS the rules block, one harmless text), a strong benign request and a
/// weak benign one the rules block — the format of `shared/data/waf-corpus.jsonl`.
const CORPUS: &str = concat!(
    r#"{"id":"a1","source":"s","method":"GET","uri":"/?q=%3Cscript%3Ealert(1)%3C/script%3E","headers":{"Host":"x"},"body":"","attack":true,"category":"xss","label_strength":"strong"}"#,
    "\n",
    r#"{"id":"a2","source":"s","method":"GET","uri":"/?q=hello","headers":{"Host":"x"},"body":"","attack":true,"category":"sqli","label_strength":"strong"}"#,
    "\n",
    r#"{"id":"b1","source":"s","method":"GET","uri":"/?q=hello","headers":{"Host":"x"},"body":"","attack":false,"category":"benign","label_strength":"strong"}"#,
    "\n",
    r#"{"id":"b2","source":"t","method":"POST","uri":"/","headers":{"Host":"x"},"body":"a=%3Cscript%3E","attack":false,"category":"benign","label_strength":"weak"}"#,
    "\n",
);

fn waf_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["waf", "check", "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[tokio::test]
async fn waf_check_reports_a_corpus_and_names_a_bad_line() {
    let env = Env::sqlite().await;
    let corpus = env.file("corpus.jsonl", CORPUS);
    let path = corpus.to_str().unwrap();
    let out = env.run(&["waf", "check", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let all = table.lines().find(|l| l.starts_with("all")).unwrap();
    assert_eq!(
        all.split_whitespace().collect::<Vec<_>>(),
        ["all", "1/2", "50.0%", "0/1", "0.0%", "1/1", "100.0%"],
        "{table}"
    );
    assert!(
        table.contains("attacks blocked") && table.contains("xss"),
        "{table}"
    );

    let json = waf_json(&env, &[path]);
    assert_eq!(json["requests"], 4);
    assert_eq!(
        json["attacks"],
        serde_json::json!({"total": 2, "blocked": 1})
    );
    assert_eq!(
        json["benign_strong"],
        serde_json::json!({"total": 1, "blocked": 0})
    );
    assert_eq!(
        json["benign_weak"],
        serde_json::json!({"total": 1, "blocked": 1})
    );
    assert_eq!(json["split"], "all");
    let dev = waf_json(&env, &[path, "--split", "development"]);
    let held = waf_json(&env, &[path, "--split", "held-out"]);
    assert_eq!(dev["split"], "development");
    assert_eq!(
        dev["requests"].as_u64().unwrap() + held["requests"].as_u64().unwrap(),
        4
    );

    // The configuration file's [waf] table applies, as for `serve`.
    let off = env.file("waf-off.toml", "[waf]\nenabled = false\n");
    let json = waf_json(&env, &[path, "--config", off.to_str().unwrap()]);
    assert_eq!(json["attacks"]["blocked"], 0, "{json}");

    let broken = env.file(
        "broken.jsonl",
        &format!("{}\n\nnot json\n", CORPUS.lines().next().unwrap()),
    );
    let missing_field = env.file("partial.jsonl", "{\"id\":\"x\",\"source\":\"s\"}\n");
    for (file, expected) in [
        (broken.to_str().unwrap(), "line 3"),
        (missing_field.to_str().unwrap(), "line 1"),
        ("/no/such/corpus.jsonl", "cannot read"),
    ] {
        let out = env.run(&["waf", "check", file]);
        assert!(!out.status.success(), "{file}");
        assert!(stderr(&out).contains(expected), "{file}: {}", stderr(&out));
    }
    let bad_split = env.run(&["waf", "check", path, "--split", "half"]);
    assert!(!bad_split.status.success());
}

/// A station made on the command line exists before any import: a device key can be made for
/// it, it can be edited, and bad input is refused with a message and a non-zero exit.
#[tokio::test]
async fn stations_are_created_edited_and_listed() {
    let env = Env::sqlite().await;
    let create = [
        "station",
        "create",
        "--id",
        "harbour",
        "--name",
        "Harbour",
        "--lat",
        "53.55",
        "--lon",
        "-9.99",
        "--area",
        "Port",
        "--timezone",
        "Europe/Dublin",
        "--create",
    ];
    let out = env.run(&create);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&create);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    let out = env.run(&["device", "create", "--station", "harbour"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = env.run(&[
        "station",
        "edit",
        "harbour",
        "--name",
        "Harbour Quay",
        "--active",
        "false",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["station", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed[0]["id"], "harbour");
    assert_eq!(listed[0]["name"], "Harbour Quay");
    assert_eq!(listed[0]["active"], false);
    assert_eq!(listed[0]["location"]["lon"], -9.99);
    assert_eq!(listed[0]["timezone"], "Europe/Dublin");

    for (args, message) in [
        (
            vec![
                "station", "create", "--id", "x", "--name", "X", "--lat", "91", "--lon", "0",
            ],
            "atitude",
        ),
        (
            vec![
                "station", "create", "--id", "Bad Id", "--name", "X", "--lat", "1", "--lon", "0",
            ],
            "id",
        ),
        (
            vec![
                "station", "create", "--id", "y", "--name", " ", "--lat", "1", "--lon", "0",
            ],
            "name",
        ),
        (
            vec![
                "station",
                "create",
                "--id",
                "z",
                "--name",
                "Z",
                "--lat",
                "1",
                "--lon",
                "0",
                "--timezone",
                "Mars",
            ],
            "zone",
        ),
        (
            vec!["station", "edit", "nowhere", "--name", "N"],
            "no station",
        ),
    ] {
        let out = env.run(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).to_lowercase().contains(message),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = env.run(&["audit", "search", "--event", "UpdateStation", "--json"]);
    assert!(stdout(&out).contains("Harbour Quay"), "{}", stdout(&out));
}

/// Parses a command's standard output as one JSON array.
fn json_array(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", stderr(out));
    let value: serde_json::Value = serde_json::from_str(&stdout(out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)));
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .clone()
}

/// A command that reads the store never makes a new, empty one where there is none: it is
/// refused, naming the absolute path and `--create`, and creates nothing — also run from
/// another directory without `--data-dir`, where `./data` would have been made before.
#[tokio::test]
async fn commands_refuse_a_missing_database_naming_it_unless_told_to_create() {
    let env = Env::sqlite().await;
    let db = env.data_dir().join("ecocityhub.db");
    for args in [
        vec!["user", "list"],
        vec!["user", "list", "--json"],
        vec!["device", "create", "--station", "st1"],
        vec!["device", "list", "--station", "st1"],
        vec!["station", "list"],
        vec!["keys", "list"],
        vec!["keys", "rotate"],
        vec!["ml", "models"],
        vec!["ml", "train"],
        vec!["audit", "search"],
        vec!["audit", "verify"],
        vec!["backup", "list"],
        vec!["backup", "create"],
    ] {
        let out = env.run(&args);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = stderr(&out);
        assert!(
            err.contains(&db.display().to_string()) && err.contains("--create"),
            "{args:?}: {err}"
        );
        assert!(
            !env.data_dir().exists(),
            "{args:?} created the data directory"
        );
    }
    // The password is on standard input, as in the issue's report.
    let user = [
        "user",
        "create",
        "--email",
        "a@example.org",
        "--role",
        "admin",
    ];
    let out = env.run_with_stdin(&user, PASSWORD);
    assert!(!out.status.success());
    assert!(!env.data_dir().exists());

    // From another directory, without --data-dir: the path named is that directory's ./data.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = env
        .cmd(&["user", "list"])
        .env_remove("ECOCITYHUB_DATA_DIR")
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let expected = std::fs::canonicalize(elsewhere.path())
        .unwrap()
        .join("data")
        .join("ecocityhub.db");
    assert!(
        stderr(&out).contains(&expected.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert!(!elsewhere.path().join("data").exists());

    // --create makes it, and says so; then the same command finds it without.
    let mut created = user.to_vec();
    created.push("--create");
    let out = env.run_with_stdin(&created, PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("new, empty database")
            && stderr(&out).contains(&db.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert!(db.exists());
    let users = json_array(&env.run(&["user", "list", "--json"]));
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["email"], "a@example.org");
    assert_eq!(users[0]["roles"], serde_json::json!(["admin"]));
}

/// `import` (and `serve`, `migrate`) make a new database, and say so on standard error.
#[tokio::test]
async fn import_makes_a_new_database_and_says_so() {
    let env = Env::sqlite().await;
    let data = env.file(
        "seed.csv",
        "time,site,no2_ppb\n2004-10-01T00:00:00Z,marylebone_road,20\n",
    );
    let out = env.run(&["import", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = env.data_dir().join("ecocityhub.db");
    assert!(
        stderr(&out).contains(&format!("new, empty database {}", db.display())),
        "{}",
        stderr(&out)
    );
    let again = env.run(&["import", data.to_str().unwrap()]);
    assert!(again.status.success());
    assert!(
        !stderr(&again).contains("new, empty database"),
        "{}",
        stderr(&again)
    );
}

/// `--data-dir`, `--database-url`, `--blobs-dir` and `--config` are taken by every command that
/// reads the store, after the subcommand's own name too (`device create --data-dir` used to be
/// an error while `import --data-dir` worked).
#[tokio::test]
async fn the_storage_flags_are_the_same_for_every_command() {
    let env = Env::sqlite().await;
    let dir = env.dir.path().join("elsewhere");
    let d = dir.to_str().unwrap();
    let stations = env.file("stations.csv", "site,name,lat,lon\nst1,One,51.5,-0.1\n");
    let data = env.file(
        "seed.csv",
        "time,site,pm25_ugm3\n2024-01-01T00:00:00Z,st1,5\n",
    );
    let run = |args: &[&str]| {
        let out = env
            .cmd(args)
            .env_remove("ECOCITYHUB_DATA_DIR")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    run(&[
        "import",
        data.to_str().unwrap(),
        "--stations",
        stations.to_str().unwrap(),
        "--data-dir",
        d,
    ]);
    let key = stdout(&run(&[
        "device",
        "create",
        "--station",
        "st1",
        "--data-dir",
        d,
    ]));
    assert!(key.trim().starts_with("ech_"), "{key}");
    let keys = json_array(&run(&[
        "device",
        "--data-dir",
        d,
        "list",
        "--station",
        "st1",
        "--json",
    ]));
    assert_eq!(keys.len(), 1);
    let url = format!("sqlite://{}", dir.join("ecocityhub.db").display());
    let listed = json_array(&run(&["station", "list", "--database-url", &url, "--json"]));
    assert_eq!(listed[0]["id"], "st1");
    // The TOML file's data_dir, through --config after the subcommand.
    let config = env.file("c.toml", &format!("data_dir = {d:?}\n"));
    let listed = json_array(&run(&[
        "station",
        "list",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(listed.len(), 1);
    // The flag wins over the file.
    let out = env
        .cmd(&[
            "station",
            "list",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            "nowhere",
        ])
        .env_remove("ECOCITYHUB_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
    assert!(!env.dir.path().join("nowhere").exists());
    // The environment variable the tests use everywhere else, for the blob-reading commands.
    let blobs = env.dir.path().join("other-blobs");
    run(&[
        "keys",
        "rotate",
        "--data-dir",
        d,
        "--blobs-dir",
        blobs.to_str().unwrap(),
    ]);
    json_array(&run(&["ml", "models", "--json", "--data-dir", d]));
    json_array(&run(&["backup", "list", "--json", "--data-dir", d]));
}

/// Every list has `--json`, printing one JSON array (empty when there is nothing).
#[tokio::test]
async fn every_list_prints_a_json_array() {
    let env = Env::sqlite().await;
    let key = env.station_with_key();
    let prefix = key.split('_').nth(1).unwrap();
    let out = env.run_with_stdin(
        &[
            "user",
            "create",
            "--email",
            "op@example.org",
            "--role",
            "operator",
        ],
        PASSWORD,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.run(&["keys", "rotate"]).status.success());

    let devices = json_array(&env.run(&["device", "list", "--station", "st1", "--json"]));
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["prefix"], prefix);
    assert_eq!(devices[0]["active"], true);
    assert_eq!(devices[0]["label"], "test");
    let users = json_array(&env.run(&["user", "list", "--json"]));
    assert_eq!(users[0]["email"], "op@example.org");
    assert_eq!(users[0]["confirmed"], true);
    let keys = json_array(&env.run(&["keys", "list", "--json"]));
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0]["kid"].as_str().is_some_and(|k| !k.is_empty()),
        "{keys:?}"
    );
    assert_eq!(keys[0]["active"], true);
    let stations = json_array(&env.run(&["station", "list", "--json"]));
    assert_eq!(stations[0]["id"], "st1");
    assert!(json_array(&env.run(&["ml", "models", "--json"])).is_empty());
    assert!(json_array(&env.run(&["backup", "list", "--json"])).is_empty());
}

/// `--bind` takes a host name (`localhost:PORT`) as well as an address; a bad one is refused
/// with what is expected, before anything is created.
#[tokio::test]
async fn serve_binds_a_host_name_and_refuses_a_bad_address() {
    let env = Env::sqlite().await;
    for (bind, expected) in [
        ("localhost", "HOST:PORT"),
        ("localhost:http", "HOST:PORT"),
        ("127.0.0.1:99999", "HOST:PORT"),
    ] {
        let out = env.run(&["serve", "--no-demo", "--bind", bind]);
        assert!(!out.status.success(), "{bind}");
        assert!(
            stderr(&out).contains("invalid") && stderr(&out).contains(expected),
            "{bind}: {}",
            stderr(&out)
        );
    }
    let bad_file = env.file("bind.toml", "bind = \"localhost\"\n");
    let out = env.run(&["serve", "--no-demo", "--config", bad_file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("bind in the config file"),
        "{}",
        stderr(&out)
    );
    assert!(!env.data_dir().exists(), "a refused serve creates nothing");

    let server =
        common::Server::start_command(&env, &["serve", "--no-demo", "--bind", "localhost:0"]);
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let answer = reqwest::get(format!("http://localhost:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", server.base);
    drop(server);
    // And the config file's bind may name a host too.
    let named = env.file("named.toml", "bind = \"localhost:0\"\n");
    let server = common::Server::start_command(
        &env,
        &["serve", "--no-demo", "--config", named.to_str().unwrap()],
    );
    let stations: serde_json::Value = server.get_json("/api/v1/stations").await;
    assert!(stations.is_array(), "{stations}");
}

/// A backtest over a window the data does not reach fails with a message (it used to print an
/// empty table and exit 0).
#[tokio::test]
async fn a_backtest_of_a_window_without_data_fails_with_a_message() {
    let env = Env::sqlite().await;
    let london = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("demo")
        .join("london-marylebone-2004q4.csv");
    let out = env.run(&["import", london.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for json in [false, true] {
        let mut args = vec![
            "ml",
            "backtest",
            "--station",
            "marylebone_road",
            "--parameter",
            "no2",
            "--from",
            "2005-06-01",
            "--to",
            "2005-06-10",
        ];
        if json {
            args.push("--json");
        }
        let out = env.run(&args);
        assert!(!out.status.success(), "json {json}: {}", stdout(&out));
        assert!(stdout(&out).trim().is_empty(), "no table: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("no no2 readings from 2005-06-01") && err.contains("2004-"),
            "the message names the window and where the data is: {err}"
        );
    }
}

/// An import that makes many stations prints the counts and the first few ids, not all of
/// them; importing the same file again reports every row unchanged.
#[tokio::test]
async fn an_import_of_many_stations_names_the_first_few_and_a_reimport_is_unchanged() {
    let env = Env::sqlite().await;
    let mut stations = String::from("site,lat,lon\n");
    let mut data = String::from("time,site,no2_ppb\n");
    for i in 1..=71 {
        stations.push_str(&format!("site{i:02},51.{i:02},-0.1\n"));
        data.push_str(&format!("2024-01-01T00:00:00Z,site{i:02},{i}\n"));
        data.push_str(&format!("2024-01-01T01:00:00Z,site{i:02},{i}\n"));
    }
    let stations = env.file("many-stations.csv", &stations);
    let data = env.file("many.csv", &data);
    let args = [
        "import",
        data.to_str().unwrap(),
        "--stations",
        stations.to_str().unwrap(),
    ];
    let out = env.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("stations: 71 new (site01, site02, site03, site04, site05 … and 66 more), 0 known already"),
        "{text}"
    );
    assert!(!text.contains("site06"), "only the first few ids: {text}");
    assert!(text.lines().count() <= 4, "{text}");
    assert!(
        text.contains("readings: 142 new or changed, 0 unchanged, 0 rejected"),
        "{text}"
    );

    let again = env.run(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    let text = stdout(&again);
    assert!(text.contains("stations: 0 new, 71 known already"), "{text}");
    assert!(
        text.contains("readings: 0 new or changed, 142 unchanged, 0 rejected"),
        "{text}"
    );
}

/// Logs written into a pipe (or a file, or CloudWatch) carry no colour codes.
#[tokio::test]
async fn logs_into_a_pipe_carry_no_colour_codes() {
    let env = Env::sqlite().await;
    // The port is taken: serve logs its start-up, then fails to listen.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let out = env
        .cmd(&["serve", "--no-demo", "--bind", &bind])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("blob store open"), "the logs are there: {err}");
    assert!(err.contains(&format!("cannot listen on {bind}")), "{err}");
    assert!(!err.contains('\u{1b}'), "no escape codes: {err:?}");
    assert!(!stdout(&out).contains('\u{1b}'), "{:?}", stdout(&out));
}
