//! PostgreSQL stopped as a crash would stop it (`pg_ctl stop -m
//! immediate`), then started again, under desk load (issue 22, item 4):
//! intake answers `UNAVAILABLE` while the database is away, and nothing
//! else; applies no command by half; and takes commands again once it is
//! back, without a restart. The client's ledger (every receipt it saw
//! acknowledged, each retried with its own request id until it was) is the
//! log, and the stream holds the log.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tests::{NatsServer, PgServer, eventually, start_intake, unique_stream};
use tonic::Code;

const CLIENTS: usize = 16;

/// What the clients saw.
#[derive(Default)]
struct Ledger {
    acknowledged: BTreeSet<String>,
    refusals: BTreeMap<String, u64>,
}

/// `clients` desks sending receipts until `stop`, each retrying a receipt
/// (the same request) until it is acknowledged.
fn desk_load(
    desk: tests::Desk,
    clients: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    (0..clients)
        .map(|client| {
            let (desk, ledger, stop) = (desk.clone(), ledger.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let dossier = format!("C{client}-{n}");
                    let receipt = tests::receipt_due_later(&dossier);
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        anyhow::ensure!(attempts < 2_000, "{dossier} never acknowledged");
                        match desk.receive_with(receipt.clone()).await {
                            Ok(_) => break,
                            Err(status) => {
                                refused(&ledger, status.code())?;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    ledger
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .acknowledged
                        .insert(dossier);
                }
                Ok(())
            })
        })
        .collect()
}

fn refused(ledger: &Mutex<Ledger>, code: Code) -> anyhow::Result<()> {
    let mut ledger = ledger.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    *ledger.refusals.entry(format!("{code:?}")).or_default() += 1;
    Ok(())
}

fn seen(ledger: &Mutex<Ledger>) -> (usize, u64) {
    ledger.lock().map_or((0, 0), |l| {
        (l.acknowledged.len(), l.refusals.values().sum())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_rides_through_a_database_restart() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "error");
    let pg = PgServer::start().await?;
    let url = pg.database("intake").await?;
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let (intake, store) = start_intake(&url, &nats.url(), &stream).await?;
    let desk = tests::Desk::connect(intake.addr).await?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = desk_load(desk, CLIENTS, ledger.clone(), stop.clone());

    let wait = Duration::from_secs(60);
    eventually(wait, || async {
        let (acknowledged, _) = seen(&ledger);
        anyhow::ensure!(acknowledged >= 200, "{acknowledged} acknowledged");
        Ok(())
    })
    .await?;
    pg.stop()?;
    // Away long enough for every client to be refused, and again.
    eventually(wait, || async {
        let (_, refused) = seen(&ledger);
        anyhow::ensure!(refused >= 2 * CLIENTS as u64, "{refused} refused");
        Ok(())
    })
    .await?;
    let (before, _) = seen(&ledger);
    pg.resume().await?;
    eventually(wait, || async {
        let (acknowledged, _) = seen(&ledger);
        anyhow::ensure!(
            acknowledged >= before + 200,
            "{acknowledged} acknowledged, {before} before the database came back"
        );
        Ok(())
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    for client in load {
        client.await??;
    }

    let ledger = Arc::try_unwrap(ledger)
        .map_err(|_| anyhow::anyhow!("a client still holds the ledger"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let codes: Vec<&String> = ledger.refusals.keys().collect();
    assert_eq!(
        codes,
        [&format!("{:?}", Code::Unavailable)],
        "only UNAVAILABLE while the database was away: {:?}",
        ledger.refusals
    );
    let logged = tests::logged_dossiers(&store).await?;
    assert_eq!(logged, ledger.acknowledged, "the log is the ledger");
    assert_eq!(
        store.count().await?,
        ledger.acknowledged.len() as u64,
        "one event each"
    );
    let head = store.head().await?;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    eventually(wait, || async {
        let published = js.get_stream(&stream).await?.info().await?.state.messages;
        anyhow::ensure!(published == head, "{published} of {head} published");
        Ok(())
    })
    .await?;
    intake.shutdown().await
}
