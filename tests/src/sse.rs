//! A Server-Sent Events reader for tests: connects, then hands out events as they arrive.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// One event: its `event:` name, `id:` and `data:` (lines joined with `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// An open stream.
pub struct SseStream {
    body: Incoming,
    buffer: String,
    /// Comment lines (`: heartbeat`) seen so far.
    pub comments: usize,
}

/// Opens `url` with `Last-Event-ID: last_id` when given; `Err((status, body))` when it is not a
/// 200 stream.
pub async fn connect(url: &str, last_id: Option<&str>) -> Result<SseStream, (u16, String)> {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = hyper::Request::get(url).header("accept", "text/event-stream");
    if let Some(id) = last_id {
        request = request.header("last-event-id", id);
    }
    let response = client
        .request(request.body(Empty::new()).map_err(|e| (0, e.to_string()))?)
        .await
        .map_err(|e| (0, e.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        let bytes = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        return Err((status, String::from_utf8_lossy(&bytes).into_owned()));
    }
    Ok(SseStream { body: response.into_body(), buffer: String::new(), comments: 0 })
}

impl SseStream {
    /// The next event within `limit`: `Ok(None)` when the stream ended, `Err` on a timeout.
    pub async fn next(&mut self, limit: Duration) -> Result<Option<SseEvent>, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent { event: "message".into(), id: None, data: String::new() };
                let mut data = Vec::new();
                let mut fields = 0;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    fields += 1;
                    match name {
                        "event" => event.event = value.to_string(),
                        "id" => event.id = Some(value.to_string()),
                        "data" => data.push(value.to_string()),
                        _ => {}
                    }
                }
                if fields == 0 {
                    continue;
                }
                event.data = data.join("\n");
                return Ok(Some(event));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .map_err(|_| format!("no event within {limit:?}; buffered: {:?}", self.buffer))?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(frame)) => {
                    if let Ok(bytes) = frame.into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n"));
                    }
                }
            }
        }
    }
}
