//! End-to-end tests of masque-client against an in-test masque-h3 proxy on
//! loopback. Every wait is bounded.

mod events;
mod forward;
mod proxy;
mod refusal;
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
