//! The axum route: `POST /api/v1/write`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use tokio::sync::OwnedSemaphorePermit;

use super::{DecodeError, RemoteWrite, check_headers};
use crate::write_scope::WriteScope;

/// Says who sent a request and what it may write, from its head (headers, and the
/// client certificate a TLS listener put in its extensions); `Err` is the response the
/// sender gets instead (401, 403). Runs before the body is read, so a sender that may
/// not write cannot make the receiver buffer a body either.
pub type Authorize = Arc<dyn Fn(&Parts) -> Result<WriteScope, Box<Response>> + Send + Sync>;

#[derive(Clone)]
struct Receiver {
    receiver: Arc<RemoteWrite>,
    authorize: Option<Authorize>,
}

/// The receiver's routes for a sender that may write anything (benchmarks, tests).
pub fn router(receiver: Arc<RemoteWrite>) -> Router {
    Router::new()
        .route("/api/v1/write", post(write))
        .with_state(Receiver {
            receiver,
            authorize: None,
        })
}

/// The receiver's routes, each request authorized by `authorize` first.
pub fn authorized_router(receiver: Arc<RemoteWrite>, authorize: Authorize) -> Router {
    Router::new()
        .route("/api/v1/write", post(write))
        .with_state(Receiver {
            receiver,
            authorize: Some(authorize),
        })
}

async fn write(
    State(Receiver {
        receiver,
        authorize,
    }): State<Receiver>,
    head: Parts,
    body: Body,
) -> Response {
    let scope = match authorize.map(|authorize| authorize(&head)).transpose() {
        Ok(scope) => scope,
        Err(refused) => return *refused,
    };
    let headers = &head.headers;
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(error) = check_headers(
        text(header::CONTENT_ENCODING.as_str()),
        text(header::CONTENT_TYPE.as_str()),
        text("x-prometheus-remote-write-version"),
    ) {
        receiver.stats.count_refusal(&error);
        return refuse(&error);
    }
    let limit = receiver.config().max_body_bytes;
    let announced = text(header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<usize>().ok());
    if let Some(size) = announced.filter(|size| *size > limit) {
        let error = DecodeError::TooLarge { size, limit };
        receiver.stats.count_refusal(&error);
        return refuse(&error);
    }
    // The body's room is taken before a byte of it is read: a client announcing less
    // than it sends is cut off at the limit, one announcing nothing is charged the limit.
    let Some(mut permit) = reserve(&receiver, announced.unwrap_or(limit).min(limit)) else {
        return busy(&receiver);
    };
    let read = tokio::time::timeout(
        receiver.config().body_timeout,
        axum::body::to_bytes(body, limit),
    );
    let bytes = match read.await {
        Err(_) => {
            receiver.stats.body_timeouts.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "remote-write body not received within {:?}\n",
                    receiver.config().body_timeout
                ),
            )
                .into_response();
        }
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            let refusal = DecodeError::TooLarge {
                size: announced.unwrap_or(limit + 1),
                limit,
            };
            receiver.stats.count_refusal(&refusal);
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("remote-write body over {limit} bytes or not fully received: {error}\n"),
            )
                .into_response();
        }
    };
    // Decoding holds the decoded bytes and the series read from them: charged before.
    // A size over the limit is charged nothing here and refused by `receive`.
    let decoded = snap::raw::decompress_len(&bytes)
        .ok()
        .filter(|size| *size <= receiver.config().max_decoded_bytes)
        .unwrap_or(0);
    match reserve(&receiver, decoded.saturating_mul(2)) {
        Some(more) => permit.merge(more),
        None => return busy(&receiver),
    }
    // A 2,000-sample request is a couple of milliseconds of CPU: off the async workers,
    // so KEDA's calls on the same runtime never queue behind a remote-write burst.
    let worker = receiver.clone();
    let result = tokio::task::spawn_blocking(move || {
        let applied = worker.receive_as(&bytes, crate::clock::unix_ms(), scope.as_ref());
        drop(permit);
        applied
    })
    .await;
    schedule_publish(&receiver);
    match result {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(error)) => refuse(&error),
        Err(error) => {
            tracing::error!(%error, "remote-write worker failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "remote-write request could not be processed; retry\n",
            )
                .into_response()
        }
    }
}

/// Room for `bytes` more bytes in flight, if there is.
fn reserve(receiver: &RemoteWrite, bytes: usize) -> Option<OwnedSemaphorePermit> {
    let bytes = u32::try_from(bytes).ok()?;
    receiver
        .in_flight
        .clone()
        .try_acquire_many_owned(bytes)
        .ok()
}

/// 503 with `Retry-After`: remote-write senders retry 5xx with backoff.
fn busy(receiver: &RemoteWrite) -> Response {
    receiver.stats.busy.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        format!(
            "remote-write is at its limit of {} bytes in flight; retry\n",
            receiver.config().max_in_flight_bytes
        ),
    )
        .into_response()
}

/// Changes not published by a request (one came shortly before) must not wait for the
/// next request, which may never come: publish them once the interval has passed.
fn schedule_publish(receiver: &Arc<RemoteWrite>) {
    if !receiver.pending() || receiver.publish_scheduled.swap(true, Ordering::AcqRel) {
        return;
    }
    let receiver = receiver.clone();
    let delay = Duration::from_millis(receiver.config().publish_every_ms.max(0) as u64);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        receiver.publish_scheduled.store(false, Ordering::Release);
        receiver.publish_now(crate::clock::unix_ms());
    });
}

fn refuse(error: &DecodeError) -> Response {
    let status = StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::debug!(%error, "remote-write request refused");
    (status, format!("{error}\n")).into_response()
}
