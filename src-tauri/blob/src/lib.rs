//! A small, blocking Azure Blob Storage client: what a shared deployment state needs
//! and nothing more. Block blobs read and written whole, with conditional writes
//! (`If-Match` an ETag, `If-None-Match: *`); append blobs; a blob's properties and
//! metadata; blob leases (acquire, renew, release, break); the container created
//! when missing. Authorised with the account's Shared Key (HMAC-SHA256 over the
//! request, as the Storage REST API defines it) or a SAS token.
//!
//! Why not the SDK: docs/decisions/0020-blob-client.md. Every call is a few REST
//! requests over the reqwest (rustls) client thinkube-azure already builds.

use std::collections::BTreeMap;
use std::time::Duration;

pub mod azurite;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::Method;
use url::Url;

/// The REST API version asked for (supported by Azure and by Azurite 3.37).
const API_VERSION: &str = "2025-01-05";

/// The largest answer read (a blob, a listing page): more is refused, not read.
pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// How the client proves it may use the account.
#[derive(Clone)]
pub enum Credential {
    /// The account's access key (base64, as the portal shows it), decoded.
    SharedKey { key: Vec<u8> },
    /// A SAS token: the query string the portal or `az` gives, without its `?`.
    Sas(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the token's signature.
        match self {
            Self::SharedKey { .. } => f.write_str("SharedKey(********)"),
            Self::Sas(_) => f.write_str("Sas(********)"),
        }
    }
}

impl Credential {
    /// An account key as given (`AZURE_STORAGE_KEY`): base64.
    pub fn shared_key(key: &str) -> Result<Self, BlobError> {
        let key = BASE64
            .decode(key.trim())
            .map_err(|_| BlobError::BadCredential {
                reason: "the account key is not base64 (copy it whole from the storage account's Access keys)".into(),
            })?;
        Ok(Self::SharedKey { key })
    }

    /// A SAS token as given, with or without its leading `?`.
    pub fn sas(token: &str) -> Result<Self, BlobError> {
        let token = token.trim().trim_start_matches('?');
        if !token.contains("sig=") {
            return Err(BlobError::BadCredential {
                reason: "the SAS token has no `sig=` part (give the whole query string)".into(),
            });
        }
        Ok(Self::Sas(token.to_string()))
    }
}

/// What `AZURE_STORAGE_CONNECTION_STRING` says.
#[derive(Debug, Clone)]
pub struct ConnectionString {
    pub account: Option<String>,
    pub credential: Option<Credential>,
    pub blob_endpoint: Option<String>,
}

/// Azurite's well-known development account (public, the same on every machine).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl ConnectionString {
    pub fn parse(text: &str) -> Result<Self, BlobError> {
        let bad = |reason: &str| BlobError::BadCredential {
            reason: format!("the connection string {reason}"),
        };
        let mut parts = BTreeMap::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad("has a part that is not NAME=VALUE"))?;
            parts.insert(k.to_ascii_lowercase(), v.to_string());
        }
        if parts
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Ok(Self {
                account: Some(DEV_ACCOUNT.into()),
                credential: Some(Credential::shared_key(DEV_KEY)?),
                blob_endpoint: Some(format!("http://127.0.0.1:10000/{DEV_ACCOUNT}")),
            });
        }
        let credential = match (parts.get("accountkey"), parts.get("sharedaccesssignature")) {
            (Some(key), _) => Some(Credential::shared_key(key)?),
            (None, Some(sas)) => Some(Credential::sas(sas)?),
            (None, None) => None,
        };
        Ok(Self {
            account: parts.get("accountname").cloned(),
            credential,
            blob_endpoint: parts.get("blobendpoint").cloned(),
        })
    }
}

/// What went wrong, said so that the user knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{reason}")]
    BadCredential { reason: String },
    #[error("`{url}` is not a storage endpoint URL: {reason}")]
    BadEndpoint { url: String, reason: String },
    #[error(
        "cannot reach Azure Storage at {endpoint}: {reason}. Check the network, the account name and the endpoint"
    )]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "Azure Storage refused account `{account}` ({status} {code}): {message}. Check the key or SAS token, and that it may read, write and lease blobs in the container"
    )]
    Denied {
        account: String,
        status: u16,
        code: String,
        message: String,
    },
    /// A conditional write found the blob changed (412), or present when it was
    /// to be created.
    #[error("`{blob}` changed since it was read ({code})")]
    ConditionNotMet { blob: String, code: String },
    /// The lease is held by someone else.
    #[error("`{blob}` is leased by another holder")]
    LeaseHeld { blob: String },
    /// This lease is no longer the blob's (expired and taken, or broken).
    #[error("the lease on `{blob}` is lost ({code})")]
    LeaseLost { blob: String, code: String },
    #[error("`{what}` is {bytes} bytes, over the {MAX_BODY_BYTES} this client reads")]
    TooLarge { what: String, bytes: u64 },
    #[error("Azure Storage answered {status} {code} for `{what}`: {message}")]
    Service {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
}

/// A blob read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub etag: String,
}

/// A blob's lease, as its properties say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Available,
    Leased,
    Expired,
    Breaking,
    Broken,
}

/// A blob's properties (HEAD).
#[derive(Debug, Clone)]
pub struct Properties {
    pub etag: String,
    pub lease: LeaseState,
    pub metadata: BTreeMap<String, String>,
}

/// When a write may replace the blob.
#[derive(Debug, Clone, Copy)]
pub enum Condition<'a> {
    /// Whatever is there.
    Any,
    /// Only if it does not exist.
    Absent,
    /// Only if its ETag is this one.
    Match(&'a str),
}

/// Where: an account's blob endpoint and a container in it.
#[derive(Debug, Clone)]
pub struct Location {
    /// e.g. `https://ACCOUNT.blob.core.windows.net` or Azurite's
    /// `http://127.0.0.1:PORT/devstoreaccount1`, without a trailing `/`.
    pub endpoint: String,
    pub account: String,
    pub container: String,
}

/// A blocking client of one container. Each client has its own small runtime:
/// make one per thread.
pub struct Client {
    location: Location,
    credential: Credential,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// A response read whole.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Client {
    pub fn new(location: Location, credential: Credential) -> Result<Self, BlobError> {
        Url::parse(&location.endpoint).map_err(|e| BlobError::BadEndpoint {
            url: location.endpoint.clone(),
            reason: e.to_string(),
        })?;
        // reqwest is built without a default TLS provider (no C build).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let unreachable = |e: &dyn std::fmt::Display| BlobError::Unreachable {
            endpoint: location.endpoint.clone(),
            reason: e.to_string(),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| unreachable(&e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(&e))?;
        Ok(Self {
            location,
            credential,
            http,
            runtime,
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Creates the container unless it exists.
    pub fn create_container(&self) -> Result<(), BlobError> {
        let a = self.send(
            Method::PUT,
            None,
            &[("restype", "container")],
            &[],
            Vec::new(),
        )?;
        match (a.status, code(&a).as_str()) {
            (201, _) | (409, "ContainerAlreadyExists") => Ok(()),
            _ => Err(self.error(&a, "the container")),
        }
    }

    /// The blob, or `None` when it (or its container) does not exist.
    pub fn get(&self, blob: &str) -> Result<Option<Blob>, BlobError> {
        let a = self.send(Method::GET, Some(blob), &[], &[], Vec::new())?;
        match a.status {
            200 => Ok(Some(Blob {
                etag: etag(&a),
                bytes: a.body,
            })),
            404 => Ok(None),
            _ => Err(self.error(&a, blob)),
        }
    }

    /// Writes a block blob whole, only when `condition` holds; returns its new ETag.
    pub fn put(
        &self,
        blob: &str,
        bytes: Vec<u8>,
        condition: Condition<'_>,
    ) -> Result<String, BlobError> {
        let mut headers = vec![("x-ms-blob-type", "BlockBlob".to_string())];
        headers.extend(condition_header(condition));
        let a = self.send(Method::PUT, Some(blob), &[], &headers, bytes)?;
        match a.status {
            201 => Ok(etag(&a)),
            _ => Err(self.error(&a, blob)),
        }
    }

    /// Creates an empty blob with a lease of its own, or an empty append blob,
    /// unless it exists. Returns whether it was created.
    pub fn create_if_absent(&self, blob: &str, append: bool) -> Result<bool, BlobError> {
        let kind = if append { "AppendBlob" } else { "BlockBlob" };
        let headers = [
            ("x-ms-blob-type", kind.to_string()),
            ("if-none-match", "*".to_string()),
        ];
        let a = self.send(Method::PUT, Some(blob), &[], &headers, Vec::new())?;
        match (a.status, code(&a).as_str()) {
            (201, _) => Ok(true),
            // An existing blob that is leased refuses a write without its lease.
            (409, "BlobAlreadyExists" | "LeaseIdMissing") | (412, _) => Ok(false),
            _ => Err(self.error(&a, blob)),
        }
    }

    /// The names of the container's blobs that start with `prefix`, in order.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![
                ("restype", "container"),
                ("comp", "list"),
                ("prefix", prefix),
            ];
            if !marker.is_empty() {
                query.push(("marker", marker.as_str()));
            }
            let a = self.send(Method::GET, None, &query, &[], Vec::new())?;
            if a.status != 200 {
                return Err(self.error(&a, "the container's list"));
            }
            let text = String::from_utf8_lossy(&a.body).into_owned();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("<Name>") {
                let from = at + "<Name>".len();
                let Some(len) = rest[from..].find("</Name>") else {
                    break;
                };
                names.push(unescape(&rest[from..from + len]));
                rest = &rest[from + len..];
            }
            marker = between(&a.body, "<NextMarker>", "</NextMarker>").unwrap_or_default();
            if marker.is_empty() {
                return Ok(names);
            }
        }
    }

    /// Appends `bytes` to an append blob.
    pub fn append(&self, blob: &str, bytes: Vec<u8>) -> Result<(), BlobError> {
        let a = self.send(
            Method::PUT,
            Some(blob),
            &[("comp", "appendblock")],
            &[],
            bytes,
        )?;
        match a.status {
            201 => Ok(()),
            _ => Err(self.error(&a, blob)),
        }
    }

    /// The blob's properties, or `None` when it does not exist.
    pub fn properties(&self, blob: &str) -> Result<Option<Properties>, BlobError> {
        let a = self.send(Method::HEAD, Some(blob), &[], &[], Vec::new())?;
        match a.status {
            200 => {
                let lease = match header(&a, "x-ms-lease-state").as_str() {
                    "leased" => LeaseState::Leased,
                    "expired" => LeaseState::Expired,
                    "breaking" => LeaseState::Breaking,
                    "broken" => LeaseState::Broken,
                    _ => LeaseState::Available,
                };
                let metadata = a
                    .headers
                    .iter()
                    .filter_map(|(k, v)| {
                        let name = k.as_str().strip_prefix("x-ms-meta-")?;
                        Some((name.to_string(), v.to_str().ok()?.to_string()))
                    })
                    .collect();
                Ok(Some(Properties {
                    etag: etag(&a),
                    lease,
                    metadata,
                }))
            }
            404 => Ok(None),
            _ => Err(self.error(&a, blob)),
        }
    }

    /// Replaces the blob's metadata (under its lease, when it is leased). Values
    /// must be ASCII: encode others.
    pub fn set_metadata(
        &self,
        blob: &str,
        metadata: &BTreeMap<String, String>,
        lease: Option<&str>,
    ) -> Result<(), BlobError> {
        let mut headers: Vec<(String, String)> = metadata
            .iter()
            .map(|(k, v)| (format!("x-ms-meta-{k}"), v.clone()))
            .collect();
        if let Some(lease) = lease {
            headers.push(("x-ms-lease-id".into(), lease.to_string()));
        }
        let headers: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let a = self.send(
            Method::PUT,
            Some(blob),
            &[("comp", "metadata")],
            &headers,
            Vec::new(),
        )?;
        match a.status {
            200 => Ok(()),
            _ => Err(self.lease_error(&a, blob)),
        }
    }

    /// Takes a lease of `seconds` (15 to 60) on the blob, with `id` as its id.
    pub fn acquire_lease(&self, blob: &str, seconds: u32, id: &str) -> Result<(), BlobError> {
        let headers = [
            ("x-ms-lease-action", "acquire".to_string()),
            ("x-ms-lease-duration", seconds.to_string()),
            ("x-ms-proposed-lease-id", id.to_string()),
        ];
        let a = self.send(
            Method::PUT,
            Some(blob),
            &[("comp", "lease")],
            &headers,
            Vec::new(),
        )?;
        match (a.status, code(&a).as_str()) {
            (201 | 200, _) => Ok(()),
            (409, "LeaseAlreadyPresent") => Err(BlobError::LeaseHeld { blob: blob.into() }),
            _ => Err(self.error(&a, blob)),
        }
    }

    /// Renews the lease `id` (its full duration again).
    pub fn renew_lease(&self, blob: &str, id: &str) -> Result<(), BlobError> {
        self.lease_action(blob, "renew", id)
    }

    /// Gives the lease `id` up.
    pub fn release_lease(&self, blob: &str, id: &str) -> Result<(), BlobError> {
        self.lease_action(blob, "release", id)
    }

    /// Breaks whatever lease the blob has, at once (what an operator does by hand).
    pub fn break_lease(&self, blob: &str) -> Result<(), BlobError> {
        let headers = [
            ("x-ms-lease-action", "break".to_string()),
            ("x-ms-lease-break-period", "0".to_string()),
        ];
        let a = self.send(
            Method::PUT,
            Some(blob),
            &[("comp", "lease")],
            &headers,
            Vec::new(),
        )?;
        match a.status {
            202 => Ok(()),
            _ => Err(self.error(&a, blob)),
        }
    }

    fn lease_action(&self, blob: &str, action: &str, id: &str) -> Result<(), BlobError> {
        let headers = [
            ("x-ms-lease-action", action.to_string()),
            ("x-ms-lease-id", id.to_string()),
        ];
        let a = self.send(
            Method::PUT,
            Some(blob),
            &[("comp", "lease")],
            &headers,
            Vec::new(),
        )?;
        match a.status {
            200 => Ok(()),
            _ => Err(self.lease_error(&a, blob)),
        }
    }

    fn lease_error(&self, a: &Answer, blob: &str) -> BlobError {
        let code = code(a);
        if matches!(a.status, 409 | 412) && code.starts_with("Lease") {
            return BlobError::LeaseLost {
                blob: blob.into(),
                code,
            };
        }
        self.error(a, blob)
    }

    fn error(&self, a: &Answer, what: &str) -> BlobError {
        let code = code(a);
        let message = message(a);
        match a.status {
            401 | 403 => BlobError::Denied {
                account: self.location.account.clone(),
                status: a.status,
                code,
                message,
            },
            412 => BlobError::ConditionNotMet {
                blob: what.into(),
                code,
            },
            409 if code == "BlobAlreadyExists" => BlobError::ConditionNotMet {
                blob: what.into(),
                code,
            },
            _ => BlobError::Service {
                what: what.into(),
                status: a.status,
                code,
                message,
            },
        }
    }

    /// Sends one request to the container (or one of its blobs), signed.
    fn send(
        &self,
        method: Method,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, BlobError> {
        let mut url = Url::parse(&format!(
            "{}/{}{}",
            self.location.endpoint.trim_end_matches('/'),
            self.location.container,
            blob.map(|b| format!("/{b}")).unwrap_or_default()
        ))
        .map_err(|e| BlobError::BadEndpoint {
            url: self.location.endpoint.clone(),
            reason: e.to_string(),
        })?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default()
            .replace("+0000", "GMT");
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        all.push(("x-ms-date".into(), date));
        all.push(("x-ms-version".into(), API_VERSION.into()));
        let mut request_url = url.clone();
        match &self.credential {
            Credential::SharedKey { key } => {
                let signature = sign(key, &method, &url, &self.location.account, &all, body.len());
                all.push((
                    "authorization".into(),
                    format!("SharedKey {}:{signature}", self.location.account),
                ));
            }
            Credential::Sas(token) => {
                let q = match url.query() {
                    Some(q) => format!("{q}&{token}"),
                    None => token.clone(),
                };
                request_url.set_query(Some(&q));
            }
        }
        let mut request = self
            .http
            .request(method, request_url)
            .header("content-length", body.len().to_string());
        for (k, v) in &all {
            request = request.header(k.as_str(), v.as_str());
        }
        let request = request.body(body);
        let endpoint = self.location.endpoint.clone();
        let what = url.path().to_string();
        self.runtime.block_on(async move {
            // Without the URL: a SAS token is in its query, and never in a message.
            let unreachable = |e: reqwest::Error| BlobError::Unreachable {
                endpoint: endpoint.clone(),
                reason: error_chain(&e.without_url()),
            };
            let mut response = request.send().await.map_err(unreachable)?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let too_large = |bytes: u64| BlobError::TooLarge {
                what: what.clone(),
                bytes,
            };
            if let Some(len) = response.content_length().filter(|l| *l > MAX_BODY_BYTES) {
                return Err(too_large(len));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
                body.extend_from_slice(&chunk);
                if body.len() as u64 > MAX_BODY_BYTES {
                    return Err(too_large(body.len() as u64));
                }
            }
            Ok(Answer {
                status,
                headers,
                body,
            })
        })
    }
}

/// The Shared Key signature of a request (Storage REST API, "Authorize with Shared
/// Key": the string to sign of the Blob service, version 2015-02-21 and later).
fn sign(
    key: &[u8],
    method: &Method,
    url: &Url,
    account: &str,
    headers: &[(String, String)],
    content_length: usize,
) -> String {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let length = if content_length == 0 {
        String::new()
    } else {
        content_length.to_string()
    };
    let mut ms: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.as_str(), v.trim()))
        .collect();
    ms.sort();
    let mut text = format!(
        "{method}\n{}\n{}\n{length}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n",
        get("content-encoding"),
        get("content-language"),
        get("content-md5"),
        get("content-type"),
        get("if-modified-since"),
        get("if-match"),
        get("if-none-match"),
        get("if-unmodified-since"),
        get("range"),
    );
    for (k, v) in ms {
        text.push_str(&format!("{k}:{v}\n"));
    }
    text.push_str(&format!("/{account}{}", url.path()));
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url.query_pairs() {
        params
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.into_owned());
    }
    for (k, mut v) in params {
        v.sort();
        text.push_str(&format!("\n{k}:{}", v.join(",")));
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    BASE64.encode(ring::hmac::sign(&key, text.as_bytes()).as_ref())
}

fn condition_header(condition: Condition<'_>) -> Option<(&'static str, String)> {
    match condition {
        Condition::Any => None,
        Condition::Absent => Some(("if-none-match", "*".to_string())),
        Condition::Match(etag) => Some(("if-match", etag.to_string())),
    }
}

fn header(a: &Answer, name: &str) -> String {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn etag(a: &Answer) -> String {
    header(a, "etag")
}

/// The service's error code: the `x-ms-error-code` header (HEAD answers have no body).
fn code(a: &Answer) -> String {
    let code = header(a, "x-ms-error-code");
    if !code.is_empty() {
        return code;
    }
    between(&a.body, "<Code>", "</Code>").unwrap_or_default()
}

fn message(a: &Answer) -> String {
    between(&a.body, "<Message>", "</Message>")
        .map(|m| m.lines().next().unwrap_or("").to_string())
        .unwrap_or_else(|| format!("HTTP {}", a.status))
}

/// XML's five escapes (blob names may hold `&`, `<`, `>`, quotes).
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn between(body: &[u8], start: &str, end: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(text[from..to].to_string())
}

/// An error with its causes ("connection refused" is usually two levels down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_string_gives_the_account_key_and_endpoint() {
        let c = ConnectionString::parse(
            "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/acct;",
        )
        .unwrap();
        assert_eq!(c.account.as_deref(), Some("acct"));
        assert_eq!(c.blob_endpoint.as_deref(), Some("http://127.0.0.1:1/acct"));
        assert!(matches!(c.credential, Some(Credential::SharedKey { ref key }) if key == b"key"));
        let dev = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.account.as_deref(), Some(DEV_ACCOUNT));
        assert!(ConnectionString::parse("AccountName").is_err());
        assert!(ConnectionString::parse("AccountKey=not base64!").is_err());
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let k = Credential::shared_key("c2VjcmV0LWtleQ==").unwrap();
        let s = Credential::sas("sv=2024&sig=c2VjcmV0").unwrap();
        assert_eq!(format!("{k:?} {s:?}"), "SharedKey(********) Sas(********)");
        assert!(Credential::sas("sv=2024").is_err());
    }

    /// The string to sign, checked against the layout the REST API documents: a PUT
    /// with a body, a condition, `x-ms-` headers sorted, the query's parameters
    /// sorted and lowercased under the resource.
    #[test]
    fn the_shared_key_signature_covers_what_the_service_checks() {
        let url = Url::parse("http://127.0.0.1:1/acct/c/b?comp=lease&a=2").unwrap();
        let headers = vec![
            ("x-ms-version".to_string(), API_VERSION.to_string()),
            ("if-match".to_string(), "\"0x1\"".to_string()),
            (
                "x-ms-date".to_string(),
                "Mon, 07 Dec 2026 00:00:00 GMT".to_string(),
            ),
        ];
        let text = format!(
            "PUT\n\n\n5\n\n\n\n\n\"0x1\"\n\n\n\nx-ms-date:Mon, 07 Dec 2026 00:00:00 GMT\nx-ms-version:{API_VERSION}\n/acct/acct/c/b\na:2\ncomp:lease"
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let expected = BASE64.encode(ring::hmac::sign(&key, text.as_bytes()).as_ref());
        assert_eq!(
            sign(b"k", &Method::PUT, &url, "acct", &headers, 5),
            expected
        );
        // Another body length, another signature.
        assert_ne!(
            sign(b"k", &Method::PUT, &url, "acct", &headers, 6),
            expected
        );
    }
}
