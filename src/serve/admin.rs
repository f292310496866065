//! The admin listener (SPEC §6): `/healthz` (process alive — never tied to JWKS freshness),
//! `/readyz` (config loaded, every issuer has usable keys, not draining) and `/metrics`
//! (Prometheus text). These paths exist only here, never on the proxy port (SECURITY OPS-08).

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::body::{self, ProxyBody};
use crate::proxy::runtime::Shared;
use crate::serve::server::stopped;

pub async fn serve(shared: Arc<Shared>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => return,
            r = listener.accept() => r,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(shared.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .http1_only()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let reply = |status: StatusCode, ctype: &'static str, text: String| {
        let mut r = Response::new(body::full(text));
        *r.status_mut() = status;
        r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
        r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
        r
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n".into()));
    }
    Ok(match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            if shared.is_ready() {
                reply(StatusCode::OK, "text/plain", "ready\n".into())
            } else if shared.is_draining() {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n".into())
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "waiting for signing keys\n".into())
            }
        }
        "/metrics" => {
            shared.is_ready(); // refresh the `ready` gauge
            reply(StatusCode::OK, "text/plain; version=0.0.4", shared.metrics.render())
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}
