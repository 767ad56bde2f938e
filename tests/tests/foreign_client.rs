//! A gRPC client that is not ours: Python's grpcio, with stubs generated at
//! test time from the workspace's .proto files, drives intake and reads the
//! projection back. The checks live in `tests/python/desk_client.py`; this
//! test starts the services, runs it, and fails unless it exits 0.
//!
//! Needs `python3` with the packages of `tests/python/requirements.txt`; when
//! they are missing the test fails (it does not skip) and says how to install.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tests::{Backend, Pair};

const INSTALL: &str =
    "run `pip install -r tests/python/requirements.txt` (from the workspace root)";
/// Generous: stub generation, the commands, and the script's own 30 s poll.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent folder")
        .to_path_buf()
}

const PYTHON: &str = "python3";

async fn output(command: &mut tokio::process::Command) -> anyhow::Result<Output> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("still running after {SCRIPT_TIMEOUT:?}; killed"))?
        .context("wait for python")
}

/// Fails with the install hint when python3, grpcio or grpcio-tools is missing.
async fn require_python_grpc() -> anyhow::Result<()> {
    let probe = output(tokio::process::Command::new(PYTHON).args([
        "-c",
        "import grpc, grpc_tools.protoc; print(grpc.__version__)",
    ]))
    .await;
    match probe {
        Err(e) => bail!("cannot run {PYTHON} ({e:#}): install Python 3, then {INSTALL}"),
        Ok(out) if !out.status.success() => bail!(
            "{PYTHON} lacks grpcio or grpcio-tools: {INSTALL}\n{}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        ),
        Ok(_) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_desk_drives_intake_and_reads_projection() -> anyhow::Result<()> {
    require_python_grpc().await?;
    let root = workspace();
    let pair = Pair::start(Backend::Sqlite).await?;

    let out = output(
        tokio::process::Command::new(PYTHON)
            .arg(root.join("tests/python/desk_client.py"))
            .arg("--intake")
            .arg(pair.intake.addr.to_string())
            .arg("--projection")
            .arg(pair.projection.addr.to_string())
            .arg("--proto-dir")
            .arg(root.join("proto/proto"))
            .current_dir(&root),
    )
    .await
    .context("run tests/python/desk_client.py")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "desk_client.py failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("desk_client.py: ok"),
        "desk_client.py exited 0 without its summary line:\n{stdout}"
    );

    pair.intake.shutdown().await?;
    pair.projection.shutdown().await?;
    Ok(())
}
