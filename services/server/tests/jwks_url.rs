//! The identity provider's keys from a URL: fetched at start, fetched again
//! on the refresh period (a key rotated in is accepted without a restart),
//! kept when a refresh fails; a URL that does not answer stops start-up.
//! The provider is a small HTTP server on loopback, answering whatever
//! document the test hands it.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use identity::{AuthError, JwtSettings};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use server::{AuthFiles, JwksSource};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../identity/tests/keys");
const ISSUER: &str = "https://id.example.vn";

/// What the provider answers: a status and a body.
type Answer = Arc<Mutex<(u16, String)>>;

/// Requests the provider answered with a failing status.
static FAILED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An HTTP server on loopback answering every request with `answer`.
async fn provider(answer: Answer) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (status, body) = answer.lock().map(|a| a.clone()).unwrap_or_default();
            if status >= 500 {
                FAILED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                // One read holds a GET with its few headers.
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

/// The test JWKS with only the keys whose `kid` is in `kids`.
fn jwks(kids: &[&str]) -> anyhow::Result<String> {
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{KEYS}/jwks.json"))?)?;
    let keys: Vec<_> = all["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter(|k| kids.iter().any(|kid| k["kid"] == *kid))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Ok(serde_json::json!({ "keys": keys }).to_string())
}

/// A clerk's token signed with the EdDSA test key, `kid` ed-1.
fn token() -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "motcua", "exp": now + 600, "nbf": now - 10,
        "sub": "clerk-1", "motcua_role": "clerk", "motcua_province": "68",
        "motcua_office": "X",
    });
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed-1".into());
    let key = EncodingKey::from_ed_pem(&std::fs::read(format!("{KEYS}/ed25519.pem"))?)?;
    Ok(encode(&header, &claims, &key)?)
}

fn files(url: &str) -> anyhow::Result<AuthFiles> {
    let settings = JwtSettings {
        issuer: ISSUER.into(),
        audience: "motcua".into(),
        leeway: Duration::from_secs(30),
    };
    let source = JwksSource::parse(url, None, Duration::from_millis(50))?;
    Ok(AuthFiles {
        jwks: Some((source, settings)),
        ..AuthFiles::default()
    })
}

#[tokio::test]
async fn keys_rotated_in_at_the_provider_are_accepted_without_a_restart() -> anyhow::Result<()> {
    let answer: Answer = Arc::new(Mutex::new((200, jwks(&["rsa-1"])?)));
    let addr = provider(answer.clone()).await?;
    let auth = files(&format!("http://{addr}/.well-known/jwks.json"))?
        .load()
        .await?
        .ok_or_else(|| anyhow::anyhow!("authentication is on"))?;
    let bearer = format!("Bearer {}", token()?);
    assert_eq!(
        auth.authenticate(Some(&bearer)).err(),
        Some(AuthError::UnknownKey),
        "the provider does not list ed-1 yet"
    );

    *answer.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = (200, jwks(&["rsa-1", "ed-1"])?);
    testkit::eventually(Duration::from_secs(10), || async {
        auth.authenticate(Some(&bearer))
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await?;

    // The provider fails: after three failed refreshes, the keys in use
    // still stand.
    *answer.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = (503, String::new());
    let before = FAILED.load(std::sync::atomic::Ordering::SeqCst);
    testkit::eventually(Duration::from_secs(10), || async {
        let failed = FAILED.load(std::sync::atomic::Ordering::SeqCst) - before;
        anyhow::ensure!(failed >= 3, "{failed} failed refreshes so far");
        Ok(())
    })
    .await?;
    assert!(auth.authenticate(Some(&bearer)).is_ok());
    Ok(())
}

#[tokio::test]
async fn a_provider_that_does_not_answer_stops_start_up() -> anyhow::Result<()> {
    let port = testkit::free_port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let error = files(&url)?.load().await.err().map(|e| format!("{e:#}"));
    let error = error.unwrap_or_default();
    assert!(error.contains(&url), "{error}");
    let answer: Answer = Arc::new(Mutex::new((404, String::new())));
    let addr = provider(answer).await?;
    let error = files(&format!("http://{addr}/jwks.json"))?
        .load()
        .await
        .err();
    let error = error.map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(error.contains("404"), "{error}");
    Ok(())
}
