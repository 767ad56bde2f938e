//! The README's local run, started over: `deploy/run-local.sh`, an import,
//! stop, `rm -rf data`, start, the district replay twice. The data folder
//! holds everything (the NATS stream included), so the second start is a
//! true reset: both replays give the district's figures, and the second
//! says nothing changed.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::Context as _;
use tests::{district, free_port};

/// The script running, and the lines it printed.
struct RunLocal {
    child: Child,
    lines: mpsc::Receiver<String>,
    intake: String,
    projection: String,
}

impl RunLocal {
    /// Starts the script on free ports with `data` as its data folder, the
    /// debug binaries the tests were built with, and waits until it says
    /// the pair is running.
    fn start(data: &Path) -> anyhow::Result<Self> {
        let bin_dir = tests::binary("intake")?
            .parent()
            .context("binary folder")?
            .to_owned();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("repository root")?;
        let intake = format!("127.0.0.1:{}", free_port());
        let projection = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(root.join("deploy/run-local.sh"))
            .env_remove("NATS_URL")
            .env("MOTCUA_DATA", data)
            .env("MOTCUA_BIN_DIR", &bin_dir)
            .env("MOTCUA_NATS_PORT", free_port().to_string())
            .env("INTAKE_LISTEN", &intake)
            .env("PROJECTION_LISTEN", &projection)
            .env(
                "INTAKE_METRICS_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env(
                "PROJECTION_METRICS_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start deploy/run-local.sh")?;
        let stdout = child.stdout.take().context("the script's output")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let run = Self {
            child,
            lines,
            intake,
            projection,
        };
        run.wait_for("Press Ctrl-C", Duration::from_secs(60))?;
        Ok(run)
    }

    /// Waits until the script prints a line containing `text`.
    fn wait_for(&self, text: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("run-local.sh did not print {text:?}"))?;
            if line.contains(text) {
                return Ok(());
            }
        }
    }

    /// Ctrl-C's equivalent: SIGTERM, and the script stops what it started.
    fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let status = self.child.wait()?;
        anyhow::ensure!(
            status.code() == Some(143),
            "run-local.sh ended with {status}"
        );
        Ok(())
    }
}

impl Drop for RunLocal {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        drop(Command::new("kill").args(["-TERM", &pid]).status());
        drop(self.child.wait());
    }
}

fn replay(run: &RunLocal) -> anyhow::Result<String> {
    let out = Command::new(tests::binary("replay-district")?)
        .args(["--intake", &run.intake, "--projection", &run.projection])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "replay-district failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// The yearly rows as the replay printed them: year, received, on time /
/// resolved, late, surveys.
fn rows(table: &str) -> Vec<(i32, u64, String, u64, u64)> {
    table
        .lines()
        .filter_map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            Some((
                w.first()?.parse().ok()?,
                w.get(1)?.parse().ok()?,
                (*w.get(2)?).to_owned(),
                w.get(3)?.parse().ok()?,
                w.get(4)?.parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn starting_over_with_rm_rf_data_is_a_true_reset() -> anyhow::Result<()> {
    tests::binary("motcua")?;
    let data = tempfile::tempdir()?;
    let data = data.path().join("data");
    let expected: Vec<_> = district::figures()?
        .iter()
        .map(|y| {
            let in_time = format!("{}/{}", y.in_time, y.received);
            (y.year, y.received, in_time, y.late, y.surveys)
        })
        .collect();

    // An earlier log: the example import, on the first data folder.
    let run = RunLocal::start(&data)?;
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/motcua/examples/import.csv");
    let out = Command::new(tests::binary("motcua")?)
        .args(["--intake", &format!("http://{}", run.intake), "import"])
        .arg(&example)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    run.stop()?;

    std::fs::remove_dir_all(&data)?;
    let run = RunLocal::start(&data)?;
    let first = replay(&run)?;
    assert!(first.starts_with("sent "), "{first}");
    assert_eq!(rows(&first), expected, "{first}");
    let second = replay(&run)?;
    assert!(second.starts_with("nothing changed"), "{second}");
    assert_eq!(rows(&second), expected, "{second}");
    run.stop()
}
