//! The command line: help everywhere, imports that are idempotent and report what they skip,
//! device keys, and clear messages with a non-zero exit for bad input.

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
    assert!(text.contains("2 rejected"), "{text}");
    assert!(text.contains("stations created: st1"), "{text}");
    assert!(text.contains("skipped column cbwd"), "{text}");
    assert!(text.contains("skipped column mystery_xyz"), "{text}");
    assert!(text.contains("ghost"), "unknown sites are named: {text}");

    let store = env.store().await;
    assert_eq!(store.count_readings().await.unwrap(), 6);
    let again = env.run(&args);
    assert!(again.status.success());
    assert!(!stdout(&again).contains("stations created"));
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
    let create = [
        "user",
        "create",
        "--email",
        "Root@Example.org",
        "--role",
        "admin",
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
            &["user", "create", "--email", email, "--role", role],
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
