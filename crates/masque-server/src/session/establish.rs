//! The spine every tunnel shares, datagram or stream: set the tunnel up
//! before the answer (bounded in time, panics contained, abandoned when the
//! client gives up or the session must end), then the 2xx with the
//! protocol's headers, or the refusal. Within the write deadline either way.

use std::{future::Future, panic::AssertUnwindSafe, pin::Pin};

use futures_util::FutureExt;
use masque_proto::proxy_status::TunnelFailure;
use masque_transport::{OpenTunnel, PendingTunnel, ResetReason, TunnelError, TunnelRequest};

use crate::{
    handler::{Action, CloseReason, Refusal},
    metrics::Metrics,
    session::runtime::SessionEnv,
};

/// What a set-up future borrows from the request it sets up.
pub(crate) type SetupFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Refusal>> + Send + 'a>>;

/// Types a closure as a set-up for [`establish`] (a closure's signature is
/// only inferred as generic over the request's lifetime through a bound).
pub(crate) fn setup_fn<T, F>(f: F) -> F
where
    F: for<'a> FnOnce(&'a TunnelRequest) -> SetupFuture<'a, T>,
{
    f
}

/// Why a tunnel never opened; `Some` when the set-up succeeded and only the
/// 2xx failed (the caller then ends what it set up).
pub(crate) struct NotOpened<T> {
    pub reason: CloseReason,
    pub setup: Option<T>,
}

impl<T> From<CloseReason> for NotOpened<T> {
    fn from(reason: CloseReason) -> Self {
        Self {
            reason,
            setup: None,
        }
    }
}

/// Runs `setup` for the request (within `init_timeout`, a panic a 502),
/// then answers: the 2xx with `response` and the open tunnel, or the
/// refusal already sent.
pub(crate) async fn establish<T, F>(
    mut pending: PendingTunnel,
    s: &mut SessionEnv,
    setup: F,
    response: http::HeaderMap,
) -> Result<(OpenTunnel, T), NotOpened<T>>
where
    F: for<'a> FnOnce(&'a TunnelRequest) -> SetupFuture<'a, T>,
{
    let outcome = {
        let (request, watch) = pending.watch();
        let run = AssertUnwindSafe(setup(request)).catch_unwind();
        tokio::select! {
            r = tokio::time::timeout(s.config.init_timeout, run) => Some(r),
            () = s.info.ended() => None,
            // The client gave up (RST_STREAM, STOP_SENDING, connection
            // loss): nobody is waiting for the answer, free the slot now.
            () = watch.cancelled() => return Err(CloseReason::ClientAborted.into()),
        }
    };
    let Some(outcome) = outcome else {
        pending.reset(ResetReason::Cancelled);
        return Err(CloseReason::Shutdown.into());
    };
    let value = match outcome {
        Ok(Ok(Ok(v))) => v,
        Ok(Ok(Err(refusal))) => return Err(refuse(pending, s, &refusal).await.into()),
        Ok(Err(_panic)) => {
            Metrics::inc(&s.metrics.handler_panics);
            let r = Refusal::new(TunnelFailure::HandlerFailed).with_details("handler panic");
            return Err(refuse(pending, s, &r).await.into());
        }
        Err(_elapsed) => {
            let r = Refusal::new(TunnelFailure::ConnectionTimeout).with_details("setup timed out");
            return Err(refuse(pending, s, &r).await.into());
        }
    };
    // A client that grants no credit for the 2xx gets the stream reset after
    // the write deadline (by the transport) instead of parking this task.
    match pending
        .accept_within(response, s.config.write_deadline)
        .await
    {
        Ok(t) => Ok((t, value)),
        Err(e) => {
            let reason = if matches!(e, TunnelError::Timeout(_)) {
                tracing::debug!("the client withheld credit for the 2xx: stream reset");
                Metrics::inc(&s.metrics.writes_timed_out);
                CloseReason::WriteStalled
            } else {
                tracing::debug!(error = %e, "client went away before the 2xx");
                CloseReason::ClientAborted
            };
            Err(NotOpened {
                reason,
                setup: Some(value),
            })
        }
    }
}

/// Answers a refusal of the set-up (counted by its Proxy-Status error).
async fn refuse(pending: PendingTunnel, s: &SessionEnv, refusal: &Refusal) -> CloseReason {
    Metrics::inc(&s.metrics.tunnels_refused);
    s.metrics.refusals.count(refusal.failure);
    let (status, headers) = refusal.http_response(&s.node_name);
    if !pending
        .reject_within(status, headers, s.config.write_deadline)
        .await
    {
        // The client withheld credit for the answer: the stream was reset.
        Metrics::inc(&s.metrics.writes_timed_out);
        return CloseReason::WriteStalled;
    }
    CloseReason::Handler(Action::Close)
}
