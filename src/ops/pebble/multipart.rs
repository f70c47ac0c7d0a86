//! multipart/form-data (RFC 7578) as Pebble's `/v1/files` speaks it: our client writes pushes
//! and reads pulls with it, and the local model's Pebble server does the reverse. One
//! implementation, so the two sides cannot drift apart.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

/// One part of a multipart/form-data body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: Option<String>,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Part {
    /// A JSON part (`Content-Type: application/json`).
    pub fn json(name: &str, body: &[u8]) -> Part {
        Part {
            name: Some(name.to_string()),
            filename: None,
            content_type: Some("application/json".into()),
            body: body.to_vec(),
        }
    }
    /// A file part (`application/octet-stream`) named by its path.
    pub fn file(name: &str, filename: &str, body: &[u8]) -> Part {
        Part {
            name: Some(name.to_string()),
            filename: Some(filename.to_string()),
            content_type: Some("application/octet-stream".into()),
            body: body.to_vec(),
        }
    }
}

/// A 32-hex-character boundary from the kernel's random source (Pebble requires ≥ 32 chars).
pub fn new_boundary() -> String {
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // Unpredictability is not a security property here, only uniqueness against the
        // content: mix time, pid and a counter.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default() as u64;
        let a = nanos ^ (u64::from(std::process::id()) << 32);
        let b = COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ nanos.rotate_left(17);
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Quote a Content-Disposition parameter value as Go's mime/multipart does.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A multipart/form-data body with `boundary` (Go's writer shape: CRLF everywhere, no
/// preamble).
pub fn write_multipart(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data").as_bytes());
        if let Some(n) = &p.name {
            out.extend_from_slice(format!("; name=\"{}\"", quote(n)).as_bytes());
        }
        if let Some(f) = &p.filename {
            out.extend_from_slice(format!("; filename=\"{}\"", quote(f)).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(ct) = &p.content_type {
            out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// Parameters of a header value like `form-data; name="files"; filename="/a \"b\""`.
fn header_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    // Skip the leading token (`form-data`, `multipart/form-data`).
    for c in chars.by_ref() {
        if c == ';' {
            break;
        }
    }
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ';') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ';' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                val.push(n);
                            }
                        }
                        '"' => break,
                        c => val.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ';' {
                        break;
                    }
                    val.push(c);
                    chars.next();
                }
            }
        }
        out.push((key.trim().to_ascii_lowercase(), val.trim_end().to_string()));
    }
    out
}

/// The boundary of a `multipart/...` content type, if it is one.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/")
    {
        return None;
    }
    header_params(content_type)
        .into_iter()
        .find(|(k, _)| k == "boundary")
        .map(|(_, v)| v)
        .filter(|b| !b.is_empty())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Split a multipart body into parts (RFC 2046): tolerant of a preamble, LF-only part headers
/// and transport padding after a delimiter; strict about the closing delimiter.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let dash = format!("--{boundary}").into_bytes();
    let delim = format!("\r\n--{boundary}").into_bytes();
    // The first delimiter may be at the very start (no preceding CRLF).
    let mut pos = if body.starts_with(&dash) {
        dash.len()
    } else {
        find(body, &delim, 0).ok_or("multipart body has no boundary")? + delim.len()
    };
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        // Rest of the delimiter line.
        let eol = find(body, b"\n", pos).ok_or("truncated multipart delimiter line")?;
        pos = eol + 1;
        // Part headers up to an empty line.
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        loop {
            let eol = find(body, b"\n", pos).ok_or("truncated multipart part headers")?;
            let mut line = &body[pos..eol];
            pos = eol + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.is_empty() {
                break;
            }
            let line = String::from_utf8_lossy(line);
            let Some((k, v)) = line.split_once(':') else {
                return Err(format!("bad multipart header {line:?}"));
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for (pk, pv) in header_params(v) {
                        match pk.as_str() {
                            "name" => name = Some(pv),
                            "filename" => filename = Some(pv),
                            _ => {}
                        }
                    }
                }
                "content-type" => content_type = Some(v.trim().to_string()),
                _ => {}
            }
        }
        let end = find(body, &delim, pos).ok_or("multipart body not terminated")?;
        parts.push(Part {
            name,
            filename,
            content_type,
            body: body[pos..end].to_vec(),
        });
        pos = end + delim.len();
    }
}

/// A `multipart/form-data` body with a fresh boundary: (content type, body).
pub fn build_multipart(parts: &[Part]) -> (String, Vec<u8>) {
    let boundary = new_boundary();
    let body = write_multipart(&boundary, parts);
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_32_hex_chars_and_varies() {
        let a = new_boundary();
        let b = new_boundary();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn multipart_round_trips_binary_content_and_quoted_filenames() {
        let boundary = new_boundary();
        let content: Vec<u8> = (0u8..=255).chain(b"\r\n--".iter().copied()).collect();
        let parts = vec![
            Part::json("request", br#"{"action":"write"}"#),
            Part::file("files", "/etc/we\"ird\\name", &content),
        ];
        let body = write_multipart(&boundary, &parts);
        let parsed = parse_multipart(&body, &boundary).unwrap();
        assert_eq!(parsed, parts);
    }

    #[test]
    fn multipart_writer_emits_the_wire_shape_pebble_expects() {
        let body = write_multipart(
            "B0123456789abcdef0123456789abcdef",
            &[
                Part::json("request", b"{}"),
                Part::file("files", "/x", b"hi"),
            ],
        );
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            "--B0123456789abcdef0123456789abcdef\r\nContent-Disposition: form-data; name=\"request\"\r\nContent-Type: application/json\r\n\r\n{}\r\n\
             --B0123456789abcdef0123456789abcdef\r\nContent-Disposition: form-data; name=\"files\"; filename=\"/x\"\r\nContent-Type: application/octet-stream\r\n\r\nhi\r\n\
             --B0123456789abcdef0123456789abcdef--\r\n"
        );
    }

    #[test]
    fn multipart_parser_reads_a_go_style_read_response() {
        // As Go's mime/multipart writer produces it: no preamble, CRLF everywhere.
        let body = b"--abc\r\nContent-Disposition: form-data; name=\"files\"; filename=\"/etc/redis.conf\"\r\nContent-Type: application/octet-stream\r\n\r\nport 6379\n\r\n--abc\r\nContent-Disposition: form-data; name=\"response\"\r\nContent-Type: application/json\r\n\r\n{\"type\":\"sync\",\"status-code\":200,\"result\":[{\"path\":\"/etc/redis.conf\"}]}\r\n--abc--\r\n";
        let parts = parse_multipart(body, "abc").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].filename.as_deref(), Some("/etc/redis.conf"));
        assert_eq!(parts[0].body, b"port 6379\n");
        assert_eq!(parts[1].name.as_deref(), Some("response"));
    }

    #[test]
    fn multipart_parser_rejects_unterminated_bodies() {
        let body = b"--abc\r\nContent-Disposition: form-data; name=\"files\"\r\n\r\nno end";
        assert!(parse_multipart(body, "abc").is_err());
        assert!(parse_multipart(b"nothing here", "abc").is_err());
    }

    #[test]
    fn boundary_is_read_from_quoted_and_bare_content_types() {
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"xyz\"").as_deref(),
            Some("xyz")
        );
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=abc123").as_deref(),
            Some("abc123")
        );
        assert_eq!(multipart_boundary("application/json"), None);
    }

    #[test]
    fn build_round_trips_through_the_content_type_boundary() {
        let parts = vec![
            Part::json("request", b"{}"),
            Part::file("files", "/etc/we\"ird", b"line\r\n--not-a-boundary\r\n"),
        ];
        let (ct, body) = build_multipart(&parts);
        let b = multipart_boundary(&ct).expect("boundary");
        assert_eq!(parse_multipart(&body, &b).expect("parse"), parts);
    }
}
