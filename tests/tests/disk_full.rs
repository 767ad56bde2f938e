//! The event store's disk full (issue 22, item 4): intake on SQLite in a
//! small tmpfs the test mounts. Once it is full, a desk command is refused
//! `RESOURCE_EXHAUSTED` (`STORE_FULL`), says so, and appends nothing; once
//! the filesystem has room again the same requests are taken, without a
//! restart, and the log is exactly what the client saw acknowledged.

use std::{collections::BTreeSet, path::Path, process::Command};

use tests::{NatsServer, start_intake, unique_stream};
use tonic::Code;

/// A tmpfs mounted on a folder, unmounted on drop.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> anyhow::Result<Self> {
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            dir,
        )?;
        Ok(Self(dir))
    }

    fn resize(&self, size: &str) -> anyhow::Result<()> {
        mount(&["-o", &format!("remount,size={size}")], self.0)
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        drop(Command::new("umount").arg("-l").arg(self.0).status());
    }
}

fn mount(args: &[&str], dir: &Path) -> anyhow::Result<()> {
    let output = Command::new("mount").args(args).arg(dir).output()?;
    anyhow::ensure!(
        output.status.success(),
        "mount {args:?} (the test needs root, as CI has): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_commands_cleanly_until_there_is_room() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "off");
    let dir = tempfile::tempdir()?;
    let disk = Tmpfs::mount(dir.path(), "1m")?;
    let url = format!("sqlite://{}/intake.db", dir.path().display());
    let nats = NatsServer::start().await?;
    let (intake, store) = start_intake(&url, &nats.url(), &unique_stream()).await?;
    let desk = tests::Desk::connect(intake.addr).await?;

    let mut acknowledged = BTreeSet::new();
    let mut refused = Vec::new();
    for n in 0..20_000 {
        let receipt = tests::receipt_due_later(&format!("D-{n}"));
        match desk.receive_with(receipt.clone()).await {
            Ok(_) => {
                acknowledged.insert(receipt.dossier_id);
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("disk is full"), "{status:?}");
                refused.push(receipt);
                if refused.len() == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused.len(), 3, "the disk never filled");
    assert!(!acknowledged.is_empty(), "the disk was full from the start");
    assert_eq!(
        store.count().await?,
        acknowledged.len() as u64,
        "a refused command appended nothing"
    );

    disk.resize("16m")?;
    for receipt in refused {
        desk.receive_with(receipt.clone()).await?;
        acknowledged.insert(receipt.dossier_id);
    }
    // And the ones after them: nothing of the full disk stayed behind (a
    // connection whose COMMIT failed once held its transaction open, and
    // what it answered "appended" afterwards was lost).
    for n in 0..20 {
        let receipt = tests::receipt_due_later(&format!("AFTER-{n}"));
        desk.receive_with(receipt.clone()).await?;
        acknowledged.insert(receipt.dossier_id);
    }
    let logged = tests::logged_dossiers(&store).await?;
    assert_eq!(logged, acknowledged, "the log is what was acknowledged");
    assert_eq!(store.count().await?, acknowledged.len() as u64);
    intake.shutdown().await
}
