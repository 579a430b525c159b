//! The axum route: `POST /api/v1/write`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{DecodeError, RemoteWrite, check_headers};
use crate::write_scope::WriteScope;

/// Says who sent a request and what it may write, from its headers; `Err` is the
/// response the sender gets instead (401, 403). Runs before the body is read, so a
/// sender that may not write cannot make the receiver buffer a body either.
pub type Authorize = Arc<dyn Fn(&HeaderMap) -> Result<WriteScope, Box<Response>> + Send + Sync>;

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
    headers: HeaderMap,
    body: Body,
) -> Response {
    let scope = match authorize.map(|authorize| authorize(&headers)).transpose() {
        Ok(scope) => scope,
        Err(refused) => return *refused,
    };
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
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(error) => {
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
    // A 2,000-sample request is a couple of milliseconds of CPU: off the async workers,
    // so KEDA's calls on the same runtime never queue behind a remote-write burst.
    let worker = receiver.clone();
    let result = tokio::task::spawn_blocking(move || {
        worker.receive_as(&bytes, crate::clock::unix_ms(), scope.as_ref())
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
