//! Point-in-time recovery on PostgreSQL, as RDS restores to a time: a server whose
//! `archive_command` is `ecocityhub backup wal-push` (`.ci/postgres pitr`), a base backup by
//! `ecocityhub backup create --base`, rows written after it, then a destructive statement.
//! `ecocityhub backup recover --until` just before that statement makes a data directory that,
//! started, replays the archive and stops in time: every row written after the base backup and
//! before the chosen time is there, and the dropped table is back.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::BIN;

/// The archiving server of `.ci/postgres pitr`, its data and blobs; stopped when dropped.
struct Archiving {
    dir: tempfile::TempDir,
    port: u16,
    recover_port: u16,
}

impl Archiving {
    /// `None` (skipped outside CI) without PostgreSQL's server binaries.
    fn start() -> Option<Archiving> {
        let found = std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some());
        if !ecocityhub_testkit::require_that(
            found,
            "PostgreSQL's server binaries",
            "apt-get install postgresql (bash .ci/postgres start installs them)",
        ) {
            return None;
        }
        let env = Archiving {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            recover_port: free_port(),
        };
        // The server runs as the user postgres, and so does its archive command: it must reach
        // the key file and the blobs, made here first.
        chmod(env.dir.path(), 0o755);
        let listed = env.ecocityhub(&["backup", "list", "--create"]);
        assert!(listed.status.success(), "{}", common::stderr(&listed));
        chown_postgres(&env.data_dir());
        let out = env.script(&["pitr", "start"]);
        assert!(out.status.success(), "pitr start: {}", common::stderr(&out));
        Some(env)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `ecocityhub ARGS` on this environment's data directory and server.
    fn ecocityhub(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--database-url")
            .arg(self.url())
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .env_remove("ECOCITYHUB_DATA_DIR")
            .output()
            .unwrap()
    }

    fn archive_command(&self) -> String {
        format!(
            "'{BIN}' backup wal-push %p %f --data-dir '{}'",
            self.data_dir().display()
        )
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(ecocityhub_testkit::pg_ha_script())
            .args(args)
            .env("ECOCITYHUB_PG_PITR_PORT", self.port.to_string())
            .env(
                "ECOCITYHUB_PG_PITR_RECOVER_PORT",
                self.recover_port.to_string(),
            )
            .env("ECOCITYHUB_PG_PITR_DIR", self.dir.path().join("pg"))
            .env("ECOCITYHUB_PG_ARCHIVE_COMMAND", self.archive_command())
            .output()
            .unwrap()
    }

    /// Runs `sql` on the server at `port`; the rows, unaligned.
    fn psql(&self, port: u16, sql: &str) -> String {
        let out = Command::new(pg_tool("psql"))
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &port.to_string(), "-d", "postgres", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", common::stderr(&out));
        common::stdout(&out).trim().to_string()
    }

    /// Switches to a new WAL segment and waits until the one holding everything so far is
    /// archived.
    fn archive_all(&self) {
        let segment = self.psql(self.port, "SELECT pg_walfile_name(pg_switch_wal())");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.psql(
                self.port,
                "SELECT coalesce(last_archived_wal, '') || ' ' || failed_count FROM pg_stat_archiver",
            );
            let (archived, failed) = status.split_once(' ').unwrap();
            assert_eq!(
                failed, "0",
                "the archive command failed (see the server's log)"
            );
            if archived >= segment.as_str() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{segment} was not archived: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Archiving {
    fn drop(&mut self) {
        let _ = self.script(&["pitr", "stop"]);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_postgres(path: &Path) {
    let out = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "chown: {}", common::stderr(&out));
}

/// A PostgreSQL client program from the newest `/usr/lib/postgresql/*/bin`.
fn pg_tool(name: &str) -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    PathBuf::from(format!(
        "/usr/lib/postgresql/{}/bin/{name}",
        versions.last().unwrap()
    ))
}

fn last_line(out: &Output) -> String {
    common::stdout(out).lines().last().unwrap_or("").to_string()
}

#[test]
fn recovery_to_a_time_stops_just_before_a_destructive_statement() {
    let Some(pg) = Archiving::start() else {
        return;
    };
    pg.psql(
        pg.port,
        "CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept SELECT generate_series(1, 1000)",
    );

    // Before any base backup, nothing can be recovered.
    let pgdata = pg.dir.path().join("recovered");
    let early = pg.ecocityhub(&["backup", "recover", "--pgdata", pgdata.to_str().unwrap()]);
    assert!(!early.status.success());
    assert!(
        common::stderr(&early).contains("no base backup"),
        "{}",
        common::stderr(&early)
    );
    assert!(!pgdata.exists(), "a refused recovery leaves nothing behind");

    let created = pg.ecocityhub(&["backup", "create", "--base"]);
    assert!(created.status.success(), "{}", common::stderr(&created));
    let id = last_line(&created);
    let verified = pg.ecocityhub(&["backup", "verify", &id]);
    assert!(verified.status.success(), "{}", common::stderr(&verified));

    // Written after the base backup: only the WAL archive has these.
    pg.psql(
        pg.port,
        "INSERT INTO kept SELECT generate_series(1001, 2000)",
    );
    std::thread::sleep(Duration::from_millis(200));
    let until = pg.psql(
        pg.port,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(200));
    pg.psql(pg.port, "DROP TABLE kept");
    pg.psql(pg.port, "CREATE TABLE after_the_drop (id int)");
    pg.archive_all();

    // A restored backup is not something `restore` writes into a database.
    let restore = pg.ecocityhub(&["backup", "restore", &id]);
    assert!(!restore.status.success());
    assert!(
        common::stderr(&restore).contains("backup recover"),
        "{}",
        common::stderr(&restore)
    );

    let recover = pg.ecocityhub(&[
        "backup",
        "recover",
        "--pgdata",
        pgdata.to_str().unwrap(),
        "--until",
        &until,
    ]);
    assert!(recover.status.success(), "{}", common::stderr(&recover));
    assert!(
        common::stdout(&recover).contains(&id),
        "{}",
        common::stdout(&recover)
    );
    let started = pg.script(&["pitr", "recover", pgdata.to_str().unwrap()]);
    assert!(
        started.status.success(),
        "pitr recover: {}",
        common::stderr(&started)
    );
    let recovered_ms = common::stdout(&started);
    eprintln!("{}", recovered_ms.trim());

    assert_eq!(
        pg.psql(pg.recover_port, "SELECT count(*) FROM kept"),
        "2000"
    );
    assert_eq!(
        pg.psql(
            pg.recover_port,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'after_the_drop'"
        ),
        "0",
        "replay went past the time asked for"
    );
    // Recovered, the server takes writes.
    pg.psql(pg.recover_port, "INSERT INTO kept VALUES (2001)");

    // A second recovery into the same directory is refused without --force.
    let again = pg.ecocityhub(&["backup", "recover", "--pgdata", pgdata.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        common::stderr(&again).contains("not empty"),
        "{}",
        common::stderr(&again)
    );
}
