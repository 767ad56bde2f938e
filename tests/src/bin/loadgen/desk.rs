//! One side of a desk benchmark: an intake, a client hammering it with
//! receipts, and the stream its events must reach before a round counts.

use std::time::Duration;

use async_nats::jetstream;
use domain::{LocalDay, Timestamp};
use proto::{
    events::v1 as ev,
    intake::v1::{self as pb, intake_client::IntakeClient},
};
use tests::InProcess;
use tonic::{Request, metadata::AsciiMetadataValue, transport::Channel};

use super::hammer;

/// The office and province of every receipt.
pub(crate) const OFFICE: &str = "BENCH";
pub(crate) const PROVINCE: &str = "BTH";

/// `message` with `token` as its `authorization`, if any.
pub(crate) fn with<T>(token: Option<&AsciiMetadataValue>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", token.clone());
    }
    request
}

/// One desk side: an intake, its client and its stream.
pub(crate) struct DeskSide {
    pub(crate) client: IntakeClient<Channel>,
    /// Sent as `authorization` with every call.
    pub(crate) token: Option<AsciiMetadataValue>,
    /// Where its stream is.
    pub(crate) js: jetstream::Context,
    pub(crate) stream: String,
    pub(crate) service: InProcess,
    pub(crate) store: intake::EventStore,
}

impl DeskSide {
    /// `clients` concurrent receipts for `duration`; commands/s, once the
    /// round's events are published (so its work does not spill over).
    pub(crate) async fn round(
        &self,
        tag: &str,
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<f64> {
        let rate = self.load(tag, clients, duration).await??;
        let appended = self.store.count().await?;
        tests::eventually(Duration::from_secs(60), || async {
            let published = self
                .js
                .get_stream(&self.stream)
                .await?
                .info()
                .await?
                .state
                .messages;
            anyhow::ensure!(published >= appended, "{published} of {appended} published");
            Ok(())
        })
        .await?;
        Ok(rate)
    }

    /// `clients` concurrent receipts for `duration`, on a task of its own;
    /// commands/s.
    pub(crate) fn load(
        &self,
        tag: &str,
        clients: usize,
        duration: Duration,
    ) -> tokio::task::JoinHandle<anyhow::Result<f64>> {
        let (client, token) = (self.client.clone(), self.token.clone());
        let at = tests::real_now();
        let due = Timestamp::at_local(LocalDay::from_days(at.local_day().days() + 9), 17, 0);
        let tag = tag.to_owned();
        tokio::spawn(async move {
            let (rate, _) = hammer(clients, duration, move |i| {
                let (mut client, token) = (client.clone(), token.clone());
                let request = pb::ReceiveDossierRequest {
                    meta: tests::meta(at),
                    dossier_id: format!("{tag}-{i}"),
                    office_code: OFFICE.into(),
                    province_code: PROVINCE.into(),
                    procedure: tests::procedure(),
                    channel: ev::Channel::InPerson.into(),
                    due_at: tests::ts(due),
                    due_on: None,
                };
                async move {
                    client
                        .receive_dossier(with(token.as_ref(), request))
                        .await?;
                    Ok(())
                }
            })
            .await?;
            Ok(rate)
        })
    }
}

/// Each round's rates of a baseline and the measured side, and their
/// ratio (the mean of the rounds').
pub(crate) fn print_rounds(rounds: &[(f64, f64)], base: &str, measured: &str) {
    for (i, (b, m)) in rounds.iter().enumerate() {
        println!(
            "  round {}: {base} {b:>8.0}/s, {measured} {m:>8.0}/s, {:>5.1} %",
            i + 1,
            m / b * 100.0
        );
    }
    let mean = |f: fn(&(f64, f64)) -> f64| rounds.iter().map(f).sum::<f64>() / rounds.len() as f64;
    let (b, m) = (mean(|r| r.0), mean(|r| r.1));
    println!("  {base}: {b:>9.0}/s");
    println!("  {measured}: {m:>9.0}/s");
    println!("  ratio: {:>5.1} % (mean of rounds)", m / b * 100.0);
}
