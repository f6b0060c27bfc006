//! A minimal HTTP/1.1 client for one streamed chat completion, enough to time an
//! OpenAI-compatible server (Muse's own or another) over loopback: it writes the request,
//! decodes a chunked body as it arrives, and notes when the first text and the end came.
//! The server's own crates have no HTTP client, and a load generator must cost the measured
//! machine little, so this reads raw bytes instead of pulling one in.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ReplyTiming;

/// Sends `body` (a chat request with `"stream": true`) to `http://{addr}{path}` and reads the
/// event stream to its end. Tokens are the server's `usage` when it sends one, else the
/// events with text; the first token is the first event with text.
pub async fn stream_chat(
    addr: &str,
    path: &str,
    api_key: Option<&str>,
    body: &str,
) -> Result<ReplyTiming, String> {
    let mut socket = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let auth = api_key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: text/event-stream\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = Instant::now();
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut reader = ResponseReader::default();
    let mut events = EventCounter::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = socket
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        for line in reader.feed(&buf[..n])? {
            events.line(&line, sent)?;
        }
        if events.done.is_some() {
            break;
        }
    }
    let total = events
        .done
        .ok_or("the stream ended without `data: [DONE]`")?;
    Ok(ReplyTiming {
        tokens: events.usage.unwrap_or(events.text_events),
        first_token: events.first_text.unwrap_or(total),
        total,
    })
}

/// Splits a response into its status, headers and the lines of its (de-chunked) body.
#[derive(Default)]
struct ResponseReader {
    raw: Vec<u8>,
    /// `Some(chunked)` once the headers are read.
    body_mode: Option<bool>,
    /// Decoded body bytes not yet ended by a newline.
    body: Vec<u8>,
    /// The last (empty) chunk came: what follows is the trailer, not body.
    last_chunk: bool,
}

impl ResponseReader {
    /// Takes more bytes; returns the body lines they complete.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        self.raw.extend_from_slice(bytes);
        if self.body_mode.is_none() {
            let Some(end) = find(&self.raw, b"\r\n\r\n") else {
                return Ok(Vec::new());
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).to_string();
            self.raw.drain(..end + 4);
            let status = head.split(' ').nth(1).unwrap_or("");
            if status != "200" {
                let rest = String::from_utf8_lossy(&self.raw).to_string();
                return Err(format!("HTTP {status}: {}", rest.trim()));
            }
            let chunked = head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
            self.body_mode = Some(chunked);
        }
        if self.body_mode == Some(true) {
            self.dechunk()?;
        } else {
            self.body.append(&mut self.raw);
        }
        let mut lines = Vec::new();
        while let Some(i) = self.body.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.body.drain(..=i).collect();
            lines.push(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        Ok(lines)
    }

    /// Moves every complete chunk from `raw` to `body`.
    fn dechunk(&mut self) -> Result<(), String> {
        while !self.last_chunk {
            let Some(eol) = find(&self.raw, b"\r\n") else {
                return Ok(());
            };
            let size_text = String::from_utf8_lossy(&self.raw[..eol]).to_string();
            let size_hex = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            if size == 0 {
                self.last_chunk = true;
                break;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return Ok(());
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
        self.raw.clear();
        Ok(())
    }
}

/// Reads server-sent events of an OpenAI chat stream.
#[derive(Default)]
struct EventCounter {
    text_events: usize,
    usage: Option<usize>,
    first_text: Option<Duration>,
    done: Option<Duration>,
}

impl EventCounter {
    fn line(&mut self, line: &str, sent: Instant) -> Result<(), String> {
        let Some(data) = line.strip_prefix("data:") else {
            return Ok(());
        };
        let data = data.trim();
        if data == "[DONE]" {
            self.done = Some(sent.elapsed());
            return Ok(());
        }
        let event: serde_json::Value =
            serde_json::from_str(data).map_err(|e| format!("bad event {data:?}: {e}"))?;
        if let Some(error) = event.get("error") {
            return Err(format!("the server reported an error mid-stream: {error}"));
        }
        let text = event["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or("");
        if !text.is_empty() {
            self.text_events += 1;
            self.first_text.get_or_insert_with(|| sent.elapsed());
        }
        if let Some(n) = event["usage"]["completion_tokens"].as_u64() {
            self.usage = Some(n as usize);
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_chunked_event_stream_split_anywhere() {
        let events = [
            r#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#,
            r#"data: {"choices":[{"delta":{"content":"Hel"}}]}"#,
            r#"data: {"choices":[{"delta":{"content":"lo"}}]}"#,
            r#"data: {"choices":[],"usage":{"completion_tokens":3}}"#,
            "data: [DONE]",
        ];
        let mut body = String::new();
        for e in events {
            let event = format!("{e}\n\n");
            body += &format!("{:x}\r\n{event}\r\n", event.len());
        }
        body += "0\r\n\r\n";
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             transfer-encoding: chunked\r\n\r\n{body}"
        );
        // Fed in 7-byte pieces, so that headers, sizes and events all straddle reads.
        let mut reader = ResponseReader::default();
        let mut counter = EventCounter::default();
        let sent = Instant::now();
        for piece in response.as_bytes().chunks(7) {
            for line in reader.feed(piece).unwrap() {
                counter.line(&line, sent).unwrap();
            }
        }
        assert_eq!(counter.text_events, 2);
        assert_eq!(counter.usage, Some(3));
        assert!(counter.first_text.is_some() && counter.done.is_some());
    }

    #[test]
    fn an_error_status_is_an_error_with_its_body() {
        let mut reader = ResponseReader::default();
        let err = reader
            .feed(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 9\r\n\r\nslow down")
            .unwrap_err();
        assert_eq!(err, "HTTP 429: slow down");
    }
}
