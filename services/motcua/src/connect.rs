//! Reaching a service: one gRPC channel per command, with a connect
//! timeout, and one-line errors that name the service and its address.

use std::{error::Error as _, time::Duration};

use anyhow::anyhow;
use tonic::transport::{Channel, Endpoint};

/// Where the services are and how long to wait for them (the global flags).
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Services")]
pub struct Services {
    /// projection's gRPC address (reports).
    #[arg(
        long,
        global = true,
        env = "MOTCUA_PROJECTION",
        value_name = "URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub projection: String,
    /// intake's gRPC address (desk commands, the event log).
    #[arg(
        long,
        global = true,
        env = "MOTCUA_INTAKE",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub intake: String,
    /// Give up connecting after this many seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 5)]
    pub connect_timeout: u64,
    /// Give up on one request after this many seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    pub request_timeout: u64,
}

/// One of the two services, by name and address, for connecting and for
/// naming it in errors.
#[derive(Clone, Debug)]
pub struct Target {
    pub service: &'static str,
    pub url: String,
}

impl Services {
    pub fn projection(&self) -> Target {
        Target {
            service: "projection",
            url: self.projection.clone(),
        }
    }

    pub fn intake(&self) -> Target {
        Target {
            service: "intake",
            url: self.intake.clone(),
        }
    }

    /// Opens a channel to `target`, or fails with
    /// "cannot reach projection at http://…: connection refused".
    pub async fn connect(&self, target: &Target) -> anyhow::Result<Channel> {
        let Target { service, url } = target;
        if !url.starts_with("http://") {
            anyhow::bail!(
                "{service} address {url:?} must be an http:// URL, e.g. http://127.0.0.1:50052"
            );
        }
        let connect_timeout = Duration::from_secs(self.connect_timeout.max(1));
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| anyhow!("{service} address {url:?} is not a URL: {e}"))?
            .connect_timeout(connect_timeout)
            .timeout(Duration::from_secs(self.request_timeout.max(1)));
        // The connect timeout covers TCP; this one also covers the HTTP/2
        // handshake with a peer that accepts but never answers.
        match tokio::time::timeout(connect_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(anyhow!("cannot reach {service} at {url}: {}", cause(&e))),
            Err(_) => Err(anyhow!(
                "cannot reach {service} at {url}: no answer within {}s",
                connect_timeout.as_secs()
            )),
        }
    }
}

impl Target {
    /// A refused or failed call, as one line: the status code and the
    /// service's own message.
    pub fn status(&self, status: &tonic::Status) -> anyhow::Error {
        let Target { service, url } = self;
        let message = one_line(status.message());
        match status.code() {
            tonic::Code::Unavailable if status.source().is_some() => {
                anyhow!("cannot reach {service} at {url}: {message}")
            }
            tonic::Code::DeadlineExceeded => {
                anyhow!("{service} at {url} did not answer in time: {message}")
            }
            code => anyhow!("{service} at {url} refused the request ({code:?}): {message}"),
        }
    }
}

/// The innermost useful reason of a transport error: "connection refused"
/// rather than "transport error".
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current: &(dyn std::error::Error + 'static) = error;
    let mut deepest = error.to_string();
    loop {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return if io.raw_os_error().is_some() {
                // "connection refused", "host unreachable", …
                io.kind().to_string()
            } else {
                one_line(&io.to_string())
            };
        }
        match current.source() {
            Some(next) => {
                deepest = next.to_string();
                current = next;
            }
            None => return one_line(&deepest),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_on_one_line() {
        assert_eq!(one_line("a\nb  c\r\n"), "a b c");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn io_errors_name_their_kind() {
        let io = std::io::Error::from_raw_os_error(111);
        assert_eq!(cause(&io), "connection refused");
    }
}
