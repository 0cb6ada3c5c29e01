//! A small HTTP/1.1 client for tests and benchmarks.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

/// A response: status, headers and the body parsed as JSON (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub json: serde_json::Value,
    pub text: String,
}

impl Http {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self { client: Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector) }
    }

    pub async fn request(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let headers: Vec<(&str, &str)> = content_type.map(|ct| ("content-type", ct)).into_iter().collect();
        self.request_with(method, url, &headers, body).await
    }

    /// A request with any headers.
    pub async fn request_with(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(Answer { status, headers, json, text })
    }

    pub async fn get(&self, url: &str) -> Result<Answer, String> {
        self.request("GET", url, None, Vec::new()).await
    }

    /// A GET with extra headers.
    pub async fn get_with(&self, url: &str, headers: &[(&str, String)]) -> Result<Answer, String> {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.request_with("GET", url, &headers, Vec::new()).await
    }

    /// A JSON POST with extra headers.
    pub async fn post_json_with(
        &self,
        url: &str,
        body: &serde_json::Value,
        headers: &[(&str, String)],
    ) -> Result<Answer, String> {
        let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        self.request_with("POST", url, &all, body.to_string().into_bytes()).await
    }

    pub async fn send_form(&self, producer: &str, from: u64, to: u64, message: &str) -> Result<Answer, String> {
        let body = format!("fromID={from}&toID={to}&message={}", message.replace(' ', "+"));
        self.request("POST", &format!("{producer}/send"), Some("application/x-www-form-urlencoded"), body.into_bytes())
            .await
    }

    /// A POST of a JSON body exactly as given.
    pub async fn post_raw_json(&self, url: &str, body: Vec<u8>) -> Result<Answer, String> {
        self.request("POST", url, Some("application/json"), body).await
    }

    /// A send between users of any id form, as JSON (`from`/`to` as given: numbers or strings).
    pub async fn send_between(
        &self,
        producer: &str,
        from: impl serde::Serialize,
        to: impl serde::Serialize,
        message: &str,
    ) -> Result<Answer, String> {
        let body = serde_json::json!({"fromID": from, "toID": to, "message": message}).to_string();
        self.post_raw_json(&format!("{producer}/send"), body.into_bytes()).await
    }

    pub async fn send_json(&self, producer: &str, from: u64, to: u64, message: &str) -> Result<Answer, String> {
        self.send_between(producer, from, to, message).await
    }
}
