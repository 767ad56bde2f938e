//! Test fixtures for Motcua's crates, without the services: a real
//! `nats-server` with JetStream and its own store on a free port
//! ([`NatsServer`]) or a cluster of them ([`NatsCluster`]), a PostgreSQL
//! server of a test's own that it may stop ([`PgServer`]), a fresh
//! database per test, an empty PostgreSQL database
//! or a temporary SQLite file ([`TestDb`], [`Backend`]), and bounded retries
//! ([`eventually`]) instead of bare sleeps. The services' component tests
//! use it as a dev-dependency, and the end-to-end harness (`tests`) builds on
//! it.
//!
//! It must not know about the services, their domain or their wire
//! contracts (no `intake`, `projection`, `domain`, `bus` or `proto`): only
//! processes, ports, databases and time. What a test sends and checks
//! belongs to the test.

use std::{
    future::Future,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

mod cluster;
use async_nats::jetstream::response::Response;
pub use cluster::NatsCluster;
mod postgres;
pub use postgres::PgServer;

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Retries `check` until it returns `Ok`, or fails with its last error after
/// `timeout`. The way to wait for eventual consistency: never a bare sleep.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e.context(format!("still failing after {timeout:?}")));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
        }
    }
}

/// A `nats-server` with JetStream and its own store, killed on drop.
pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    configured: Option<NatsConfig>,
}

/// A configuration file for [`NatsServer::start_configured`], the
/// environment it reads, and how a client gets in to see that the server
/// is ready (a secured server refuses the anonymous probe).
pub struct NatsConfig {
    pub file: PathBuf,
    pub env: Vec<(String, String)>,
    pub probe: Box<dyn Fn() -> async_nats::ConnectOptions + Send + Sync>,
}

impl NatsServer {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// A server started with `-c config.file`, on a free loopback port
    /// given on the command line (which takes precedence); the
    /// configuration names JetStream's store (a folder the test keeps).
    pub async fn start_configured(config: NatsConfig) -> anyhow::Result<Self> {
        Self::start_with(Some(config)).await
    }

    async fn start_with(configured: Option<NatsConfig>) -> anyhow::Result<Self> {
        let mut server = Self {
            port: free_port(),
            store: tempfile::tempdir().context("create a JetStream store folder")?,
            child: None,
            configured,
        };
        server.spawn().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(nats_server_binary());
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        match &self.configured {
            None => {
                command.args(["-js", "-sd"]).arg(self.store.path());
            }
            // JetStream and its store are the configuration's (nats-server
            // refuses a store given twice); its log says why a
            // configuration was refused.
            Some(config) => {
                command
                    .arg("-c")
                    .arg(&config.file)
                    .envs(config.env.clone())
                    .arg("-l")
                    .arg(self.log_file());
            }
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start nats-server (is it on the PATH?)")?;
        self.child = Some(child);
        let url = self.url();
        match &self.configured {
            None => eventually(Duration::from_secs(10), || jetstream_ready(&url))
                .await
                .context("wait for nats-server with JetStream"),
            Some(config) => eventually(Duration::from_secs(10), || async {
                (config.probe)().connect(&url).await?.flush().await?;
                Ok(())
            })
            .await
            .with_context(|| {
                let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
                format!("wait for nats-server with its configuration; its log:\n{log}")
            }),
        }
    }

    /// Where a configured server logs.
    pub fn log_file(&self) -> PathBuf {
        self.store.path().join("nats-server.log")
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.kill());
            drop(child.wait());
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Until JetStream is up its account query is answered with an API error
/// (or not at all), and `eventually` asks again. The body is left untyped:
/// `query_account` would also require fields nats-server 2.9 does not send.
async fn jetstream_ready(url: &str) -> anyhow::Result<()> {
    let client = async_nats::connect(url).await?;
    let info: Response<serde_json::Value> = async_nats::jetstream::new(client)
        .request("INFO", b"")
        .await?;
    if let Response::Err { error } = info {
        bail!("JetStream not ready: {error}");
    }
    Ok(())
}

fn nats_server_binary() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN").map_or_else(|| PathBuf::from("nats-server"), PathBuf::from)
}

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database for one service (or component) of one test;
/// dropped with it (a test machine runs the suite again and again, and a
/// benchmark's database holds gigabytes).
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database to drop.
    database: Option<String>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(database) = self.database.take() else {
            return;
        };
        // Drop is not async: a thread with a runtime of its own drops the
        // database, closing the connections a stopped service may still hold.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                use sqlx::Executor as _;
                let admin = postgres_admin_url();
                let pool = sqlx::AnyPool::connect(&admin).await?;
                pool.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                )))
                .await?;
                pool.close().await;
                anyhow::Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop a test database: {e:#}"),
            Err(_) => eprintln!("could not drop a test database: the thread panicked"),
        }
    }
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("MOTCUA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    pub async fn new(backend: Backend, name: &str) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().context("create a database folder")?;
                let url = format!("sqlite://{}/{name}.db", dir.path().display());
                Ok(Self {
                    url,
                    _dir: Some(dir),
                    database: None,
                })
            }
            Backend::Postgres => {
                use sqlx::Executor as _;
                sqlx::any::install_default_drivers();
                let database = format!("motcua_{name}_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let pool = sqlx::AnyPool::connect(&admin)
                    .await
                    .with_context(|| format!("connect to PostgreSQL at {admin}"))?;
                pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
                    .await
                    .context("create a test database")?;
                pool.close().await;
                let base = admin
                    .rsplit_once('/')
                    .map_or(admin.as_str(), |(base, _)| base);
                Ok(Self {
                    url: format!("{base}/{database}"),
                    _dir: None,
                    database: Some(database),
                })
            }
        }
    }
}

impl TestDb {
    /// A copy of this database as it is now (a backup), under `name`. Close
    /// every pool on it first: PostgreSQL copies only an idle database.
    pub async fn copy(&self, name: &str) -> anyhow::Result<TestDb> {
        match &self.database {
            None => {
                let from = self.url.trim_start_matches("sqlite://");
                let copy = TestDb::new(Backend::Sqlite, name).await?;
                let to = copy.url.trim_start_matches("sqlite://").to_owned();
                for suffix in ["", "-wal", "-shm"] {
                    let file = format!("{from}{suffix}");
                    if std::path::Path::new(&file).exists() {
                        std::fs::copy(&file, format!("{to}{suffix}"))
                            .with_context(|| format!("copy {file}"))?;
                    }
                }
                Ok(copy)
            }
            Some(database) => {
                use sqlx::Executor as _;
                let copy = format!("motcua_{name}_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let pool = sqlx::AnyPool::connect(&admin).await?;
                // Idle connections a closed pool left behind still count.
                sqlx::query(
                    "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS BIGINT) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(database.as_str())
                .fetch_one(&pool)
                .await
                .context("end the connections to a database to copy")?;
                pool.execute(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {copy} TEMPLATE {database}"
                )))
                .await
                .context("copy a test database")?;
                pool.close().await;
                let base = admin
                    .rsplit_once('/')
                    .map_or(admin.as_str(), |(base, _)| base);
                Ok(TestDb {
                    url: format!("{base}/{copy}"),
                    _dir: None,
                    database: Some(copy),
                })
            }
        }
    }
}

/// A stream name of this test's own, so tests may share a NATS server.
pub fn unique_stream() -> String {
    format!("T{}", uuid::Uuid::new_v4().simple()).to_uppercase()
}
