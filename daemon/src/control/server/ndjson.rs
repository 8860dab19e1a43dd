//! Progress streams: a long operation runs in a task of its own while the response body
//! narrates it as `application/x-ndjson`, one [`StreamEvent`] per line.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::control::ApiError;
use crate::control::api::{Progress, Route, StreamEvent};

/// At most this often a progress line; a bar redrawn four times a second looks alive.
pub(super) const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// A response body fed line by line from the task that narrates the operation.
pub(crate) struct NdjsonBody {
    lines: mpsc::Receiver<Bytes>,
}

impl NdjsonBody {
    /// A body that sends the lines `lines` receives.
    pub(super) fn from_lines(lines: mpsc::Receiver<Bytes>) -> Self {
        Self { lines }
    }
}

impl Body for NdjsonBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.lines
            .poll_recv(cx)
            .map(|line| line.map(|line| Ok(Frame::data(line))))
    }
}

/// Starts `operation` in its own task and returns the body that reports on it: progress
/// lines read from `progress`, then exactly one `done` or `error` line.
///
/// The operation does not depend on the body: if the client stops reading, the operation
/// still runs to its end.
pub(super) fn narrate<T, F>(
    route: Route,
    operation: F,
    progress: watch::Receiver<Progress>,
) -> NdjsonBody
where
    T: Serialize + Send + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let (lines, body) = mpsc::channel(4);
    let operation = tokio::spawn(operation);
    tokio::spawn(report(route, operation, progress, lines));
    NdjsonBody { lines: body }
}

async fn report<T: Serialize>(
    route: Route,
    mut operation: JoinHandle<Result<T, ApiError>>,
    progress: watch::Receiver<Progress>,
    lines: mpsc::Sender<Bytes>,
) {
    let mut ticks = tokio::time::interval(PROGRESS_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Compared by value rather than with `has_changed`, which cannot tell once the operation
    // has finished and dropped its sink whether the last value was seen.
    let mut last_sent = Progress::default();
    let outcome = loop {
        tokio::select! {
            biased;
            joined = &mut operation => break joined,
            _ = ticks.tick() => {
                if !send_progress(&progress, &mut last_sent, &lines).await {
                    tracing::debug!(%route, "the client stopped reading; the operation goes on");
                    return;
                }
            }
        }
    };
    if !send_progress(&progress, &mut last_sent, &lines).await {
        return;
    }
    let last: StreamEvent<T> = match outcome {
        Ok(Ok(result)) => StreamEvent::Done { result },
        Ok(Err(error)) => {
            tracing::debug!(%route, code = %error.body.code, "streamed operation failed");
            StreamEvent::Error { error: error.body }
        }
        Err(join_error) => StreamEvent::Error {
            error: super::answer::task_failed(route, &join_error).body,
        },
    };
    let _ = lines.send(line(&last)).await;
}

/// Sends the current progress if it differs from the last sent; false once the client is gone.
async fn send_progress(
    progress: &watch::Receiver<Progress>,
    last_sent: &mut Progress,
    lines: &mpsc::Sender<Bytes>,
) -> bool {
    let current = *progress.borrow();
    if current == *last_sent {
        return true;
    }
    *last_sent = current;
    lines
        .send(line(&StreamEvent::<()>::Progress(current)))
        .await
        .is_ok()
}

fn line<T: Serialize>(event: &StreamEvent<T>) -> Bytes {
    let mut line = serde_json::to_vec(event).unwrap_or_else(|e| {
        let error = ApiError::new(500, "internal", format!("cannot encode the result: {e}"));
        // An `ErrorBody` is plain strings: it always encodes.
        serde_json::to_vec(&StreamEvent::<()>::Error { error: error.body }).unwrap_or_default()
    });
    line.push(b'\n');
    Bytes::from(line)
}
