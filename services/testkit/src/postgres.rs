//! A PostgreSQL server of a test's own ([`PgServer`]): made with `initdb`
//! in a temporary folder, on a free loopback port, so that a test may stop
//! it and start it again without touching the server other tests share.
//! PostgreSQL refuses to run as root, so when the tests run as root (CI,
//! this kind of machine) its programs run as the `postgres` user.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context as _;

use crate::{eventually, free_port};

/// A private PostgreSQL server, stopped (immediately) on drop.
pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PgServer {
    /// Makes a cluster with trust authentication and starts it.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = pg_bin().context("find PostgreSQL's programs (initdb, pg_ctl)")?;
        let dir = tempfile::tempdir().context("create a PostgreSQL folder")?;
        let server = Self {
            port: free_port(),
            dir,
            bin,
        };
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server.dir.path())
                .status()
                .context("chown the PostgreSQL folder to postgres")?;
            anyhow::ensure!(status.success(), "chown the PostgreSQL folder: {status}");
        }
        server.run(
            "initdb",
            &[
                "-D",
                &server.data().display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        server.resume().await?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh database on this server; its URL.
    pub async fn database(&self, name: &str) -> anyhow::Result<String> {
        use sqlx::Executor as _;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.admin_url()).await?;
        pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .context("create a database")?;
        pool.close().await;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m
    /// immediate`): clients' connections break, nothing is flushed first.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// Starts the server (again) and waits until it takes connections.
    pub async fn resume(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &self.dir.path().join("server.log").display().to_string(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )?;
        let url = self.admin_url();
        eventually(Duration::from_secs(30), || async {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&url).await?;
            pool.close().await;
            Ok(())
        })
        .await
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when this is root.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .output()
            .with_context(|| format!("run {}", path.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "{program} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        drop(self.stop());
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Where `initdb` and `pg_ctl` are: `MOTCUA_TEST_PG_BIN`, else Debian's
/// newest `/usr/lib/postgresql/<version>/bin`.
fn pg_bin() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MOTCUA_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .with_context(|| format!("read {}", root.display()))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .with_context(|| format!("no PostgreSQL with initdb under {}", root.display()))
}
