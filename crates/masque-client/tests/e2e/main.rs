//! End-to-end tests of masque-client on loopback: against an in-test proxy
//! on masque-transport's server face (every behaviour, including the ones a
//! real proxy never shows), and against the real node. Each test body runs
//! once per transport (HTTP/3, HTTP/2, HTTP/1.1). Every wait is bounded.

mod events;
mod forward;
mod ip;
mod ip_proxy;
mod node;
mod pool;
mod proxy;
mod refusal;
mod tcp;
mod tls;
mod tunnel;

use std::time::Duration;

use masque_client::{ClientError, UdpSession};

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `f` or fails the test after [`WAIT`].
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("test step timed out")
}

/// Sends `payload` until the echo (or `expect`) comes back: datagrams may be
/// lost, so up to 20 tries of 500 ms each.
pub async fn exchange(
    session: &mut UdpSession,
    payload: &[u8],
    expect: &[u8],
) -> Result<(), ClientError> {
    for _ in 0..20 {
        session.send(payload).await?;
        let wait = tokio::time::timeout(Duration::from_millis(500), session.recv());
        match wait.await {
            Ok(Some(p)) if p == expect => return Ok(()),
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => return Err(ClientError::Closed),
        }
    }
    Err(ClientError::Timeout(Duration::from_secs(10)))
}

/// One `#[tokio::test]` per transport for each named `async fn(Transport) ->
/// anyhow::Result<()>`: `name::h3`, `name::h2`, `name::h1`.
#[macro_export]
macro_rules! per_transport {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use masque_transport::Transport;

            #[tokio::test(flavor = "multi_thread")]
            async fn h3() -> anyhow::Result<()> {
                super::$name(Transport::H3).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn h2() -> anyhow::Result<()> {
                super::$name(Transport::H2).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn h1() -> anyhow::Result<()> {
                super::$name(Transport::H1).await
            }
        }
    )*};
}
