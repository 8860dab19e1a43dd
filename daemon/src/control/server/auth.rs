//! The `target/auth` stream: the authorization runs in a task of its own while the response
//! body carries its prompts, one [`AuthEvent`] line each, then its outcome. When the client goes
//! away (its connection closes, so a line cannot be sent), the authorization is told to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hyper::body::Bytes;
use tokio::sync::mpsc;

use super::ndjson::NdjsonBody;
use crate::control::Handler;
use crate::control::api::{AuthEvent, TargetAuthRequest};

/// Starts the authorization and returns the body that reports on it.
pub(super) fn narrate<H: Handler>(handler: Arc<H>, request: TargetAuthRequest) -> NdjsonBody {
    let (lines, body) = mpsc::channel(4);
    let (prompts, mut prompted) = mpsc::unbounded_channel();
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancelled);
    let mut operation =
        tokio::spawn(async move { handler.target_auth(request, prompts, flag).await });
    tokio::spawn(async move {
        let mut gone = false;
        let outcome = loop {
            tokio::select! {
                joined = &mut operation => break joined,
                Some(text) = prompted.recv(), if !gone => {
                    if lines.send(line(&AuthEvent::Prompt(text))).await.is_err() {
                        gone = true;
                        cancelled.store(true, Ordering::SeqCst);
                    }
                }
                () = lines.closed(), if !gone => {
                    gone = true;
                    cancelled.store(true, Ordering::SeqCst);
                }
            }
        };
        // Prompts sent just before the end still go out first.
        while let Ok(text) = prompted.try_recv() {
            let _ = lines.send(line(&AuthEvent::Prompt(text))).await;
        }
        let last = match outcome {
            Ok(Ok(result)) => AuthEvent::Done { result },
            Ok(Err(error)) => AuthEvent::Error { error: error.body },
            Err(join_error) => AuthEvent::Error {
                error: super::answer::task_failed(
                    crate::control::api::Route::TargetAuth,
                    &join_error,
                )
                .body,
            },
        };
        let _ = lines.send(line(&last)).await;
    });
    NdjsonBody::from_lines(body)
}

fn line(event: &AuthEvent) -> Bytes {
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}
