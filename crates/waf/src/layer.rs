//! The tower layer that puts a [`Waf`] in front of a service (the whole site: API,
//! pages, static files; the same on one machine and under Lambda).
//!
//! It buffers at most `body_limit` bytes of the body (whole frames), inspects the
//! request, answers a block with `403 application/problem+json` (the API's problem
//! shape with `code: "waf_blocked"` and the rule id), and otherwise hands the inner
//! service the complete, unchanged body: the buffered frames first, then the rest of
//! the stream as it arrives.

use crate::{InspectedRequest, Waf};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps services in [`WafService`].
#[derive(Clone)]
pub struct WafLayer {
    waf: Arc<Waf>,
}

impl WafLayer {
    pub fn new(waf: Arc<Waf>) -> WafLayer {
        WafLayer { waf }
    }
}

impl<S> Layer<S> for WafLayer {
    type Service = WafService<S>;
    fn layer(&self, inner: S) -> WafService<S> {
        WafService {
            inner,
            waf: self.waf.clone(),
        }
    }
}

/// A service behind the firewall.
#[derive(Clone)]
pub struct WafService<S> {
    inner: S,
    waf: Arc<Waf>,
}

impl<S, B> Service<Request<B>> for WafService<S>
where
    S: Service<Request<Body>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone waits for its own readiness; the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let waf = self.waf.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let buffered = match Buffered::read(Body::new(body), waf.config().body_limit).await {
                Ok(b) => b,
                Err(e) => return Ok(unreadable_body(&e)),
            };
            let inspected = inspected_request(&parts, &buffered);
            let verdict = waf.inspect_recorded(&inspected);
            if let Some(rule) = verdict.blocking_rule() {
                return Ok(blocked(&rule.rule));
            }
            let req = Request::from_parts(parts, buffered.into_body());
            inner.call(req).await.map(IntoResponse::into_response)
        })
    }
}

/// The frames read so far and the rest of the body.
struct Buffered {
    frames: VecDeque<Frame<Bytes>>,
    bytes: Vec<u8>,
    rest: Option<Body>,
}

impl Buffered {
    async fn read(mut body: Body, limit: usize) -> Result<Buffered, axum::Error> {
        let mut frames = VecDeque::new();
        let mut bytes = Vec::new();
        while bytes.len() <= limit {
            match body.frame().await {
                None => {
                    return Ok(Buffered {
                        frames,
                        bytes,
                        rest: None,
                    })
                }
                Some(frame) => {
                    let frame = frame?;
                    if let Some(data) = frame.data_ref() {
                        let room = (limit + 1).saturating_sub(bytes.len());
                        bytes.extend_from_slice(&data[..data.len().min(room)]);
                    }
                    frames.push_back(frame);
                }
            }
        }
        let rest = if http_body::Body::is_end_stream(&body) {
            None
        } else {
            Some(body)
        };
        Ok(Buffered {
            frames,
            bytes,
            rest,
        })
    }

    fn into_body(self) -> Body {
        Body::new(Replayed {
            frames: self.frames,
            rest: self.rest,
        })
    }
}

/// A body that yields the buffered frames, then the rest of the original stream.
struct Replayed {
    frames: VecDeque<Frame<Bytes>>,
    rest: Option<Body>,
}

impl http_body::Body for Replayed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self
                .rest
                .as_ref()
                .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let buffered: u64 = self
            .frames
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        match &self.rest {
            None => http_body::SizeHint::with_exact(buffered),
            Some(rest) => {
                let h = rest.size_hint();
                let mut hint = http_body::SizeHint::new();
                hint.set_lower(h.lower() + buffered);
                if let Some(upper) = h.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}

fn inspected_request(parts: &http::request::Parts, body: &Buffered) -> InspectedRequest {
    let uri = match (parts.uri.path_and_query(), parts.uri.scheme()) {
        (Some(pq), None) => pq.as_str().to_owned(),
        _ => parts.uri.to_string(),
    };
    InspectedRequest {
        method: parts.method.as_str().to_owned(),
        uri,
        version: format!("{:?}", parts.version),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.bytes.clone(),
        body_complete: body.rest.is_none(),
    }
}

fn problem(status: StatusCode, body: serde_json::Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

/// The answer to a blocked request.
pub fn blocked(rule: &str) -> Response {
    problem(
        StatusCode::FORBIDDEN,
        serde_json::json!({
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "detail": format!("the request was refused by the web application firewall (rule {rule}); if it is legitimate, tell the site's administrators the rule and the time"),
            "code": "waf_blocked",
            "rule": rule,
        }),
    )
}

fn unreadable_body(e: &axum::Error) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        serde_json::json!({
            "type": "about:blank",
            "title": "Bad Request",
            "status": 400,
            "detail": format!("the request body could not be read: {e}"),
            "code": "bad_request",
        }),
    )
}
