//! Helpers for the tests that run the real `ecocityhub` binary: a data directory with a station
//! imported through the CLI, a device key created through the CLI, and a server process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_ecocityhub");

/// Where a test's processes keep their data: an SQLite file in a temporary directory, or a fresh
/// PostgreSQL database when `database_url` is set.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
}

impl Env {
    pub async fn sqlite() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            database_url: None,
        }
    }

    /// `None` when no PostgreSQL server is configured (outside CI only).
    pub async fn postgres() -> Option<Env> {
        let url = ecocityhub_store::testing::fresh_postgres_url().await?;
        Some(Env {
            dir: tempfile::tempdir().unwrap(),
            database_url: Some(url),
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command of the binary, pointed at this environment's store.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("ECOCITYHUB_DATA_DIR", self.data_dir())
            .env("RUST_LOG", "warn")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .current_dir(self.dir.path());
        match &self.database_url {
            Some(url) => c.env("DATABASE_URL", url),
            None => c.env_remove("DATABASE_URL"),
        };
        c
    }

    /// Runs a command to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs a command to its end with `input` on its standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Writes a file into the environment's directory and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// Imports one hourly reading for station `st1` (creating it) and returns a device key for it.
    pub fn station_with_key(&self) -> String {
        let stations = self.file(
            "stations.csv",
            "site,name,lat,lon,area,timezone\nst1,Test One,51.5,-0.1,Testville,Europe/London\n",
        );
        let data = self.file(
            "seed.csv",
            "time,site,pm25_ugm3\n2024-01-01T00:00:00Z,st1,5\n",
        );
        let out = self.run(&[
            "import",
            data.to_str().unwrap(),
            "--stations",
            stations.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self.run(&["device", "create", "--station", "st1", "--label", "test"]);
        assert!(
            out.status.success(),
            "device create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Opens the environment's store directly.
    pub async fn store(&self) -> ecocityhub_store::SqlStore {
        let url = match &self.database_url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}",
                self.data_dir().join("ecocityhub.db").display()
            ),
        };
        let store = ecocityhub_store::connect(&url).await.unwrap();
        ecocityhub_store::Store::migrate(&store).await.unwrap();
        store
    }
}

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts `ecocityhub serve` on a random port and waits until it listens.
    pub fn start(env: &Env, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::start_command(env, &args)
    }

    /// Starts any serving command of the binary and waits for its "listening on" line.
    pub fn start_command(env: &Env, args: &[&str]) -> Server {
        let child = env
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Server::from_child(child)
    }

    /// A server process started with its standard output piped: waits for its "listening on"
    /// line, then keeps reading what it prints, so that it never writes into a closed pipe.
    pub fn from_child(mut child: Child) -> Server {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .unwrap();
            if let Some(url) = line.strip_prefix("listening on ") {
                break url.to_string();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs in through the API and returns the access token.
    pub async fn access_token(&self, email: &str, password: &str) -> String {
        let resp = reqwest::Client::new()
            .post(self.url("/api/v1/auth/sign-in"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "sign-in of {email}");
        let tokens: serde_json::Value = resp.json().await.unwrap();
        tokens["access_token"].as_str().unwrap().to_string()
    }

    /// GETs `path` and parses the JSON answer.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
