//! The metrics endpoint's HTTP/1.1, sans-IO and std only: where a request
//! head ends, and the response to it. Kept free of every dependency so the
//! fuzz crate compiles this very file (`fuzz/src/lib.rs`, target
//! `metrics_http`).

/// The index just past the blank line ending the head (CRLF CRLF, or bare
/// LF LF, which RFC 9112 §2.2 lets a server accept).
pub fn find_head_end(head: &[u8]) -> Option<usize> {
    let crlf = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = head.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A response to one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// `Allow` for 405.
    pub allow: Option<&'static str>,
    pub content_type: &'static str,
    pub body: String,
    /// HEAD: the body's length is announced, the body is not sent.
    pub head_only: bool,
}

impl Response {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            allow: (status == 405).then_some("GET, HEAD"),
            content_type: "text/plain; charset=utf-8",
            body: format!("{} {}\n", status, reason(status)),
            head_only: false,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            out.push_str(&format!("allow: {allow}\r\n"));
        }
        out.push_str("\r\n");
        if !self.head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

/// The response to a complete request head (`body` renders the exposition).
pub fn respond(head: &[u8], body: impl FnOnce() -> String) -> Response {
    let Some(line) = head
        .split(|&b| b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .map(|l| l.trim_end_matches('\r'))
    else {
        return Response::status(400);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::status(400);
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0")
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return Response::status(400);
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400.
    let has_host = head.split(|&b| b == b'\n').skip(1).any(|l| {
        l.iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| l[..colon].eq_ignore_ascii_case(b"host"))
    });
    if version == "HTTP/1.1" && !has_host {
        return Response::status(400);
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Response::status(404);
    }
    match method {
        "GET" | "HEAD" => Response {
            status: 200,
            allow: None,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: body(),
            head_only: method == "HEAD",
        },
        _ => Response::status(405),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &str) -> u16 {
        // Every test request names a Host unless the test is about that.
        let head = head.replacen("\r\n", "\r\nHost: x\r\n", 1);
        respond(head.as_bytes(), || "x 1\n".into()).status
    }

    #[test]
    fn serves_the_exposition_on_get_and_head() {
        let r = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || {
            "masque_x 1\n".into()
        });
        assert_eq!((r.status, r.body.as_str()), (200, "masque_x 1\n"));
        assert!(r.content_type.starts_with("text/plain; version=0.0.4"));
        let text = String::from_utf8(r.encode()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.ends_with("\r\n\r\nmasque_x 1\n"));
        assert!(text.contains("content-length: 11\r\n"));
        let head = respond(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", || "abc".into());
        assert_eq!(head.status, 200, "HTTP/1.0 needs no Host");
        let text = String::from_utf8(head.encode()).unwrap();
        assert!(text.contains("content-length: 3\r\n") && text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn bad_requests_get_a_status() {
        assert_eq!(status("GET /other HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("get /metrics HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /metrics\r\n\r\n"), 400);
        assert_eq!(status("GET /metrics HTTP/2\r\n\r\n"), 400);
        assert_eq!(status("GET  /metrics HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /metrics HTTP/1.1 extra\r\n\r\n"), 400);
        assert_eq!(status("\r\n\r\n"), 400);
        assert_eq!(
            respond(&[0xff, 0xfe, b'\r', b'\n'], String::new).status,
            400
        );
        assert_eq!(
            respond(b"GET /metrics HTTP/1.1\r\n\r\n", String::new).status,
            400,
            "HTTP/1.1 without Host"
        );
        assert_eq!(
            respond(b"GET /metrics HTTP/1.1\nhost: x\n\n", String::new).status,
            200,
            "bare LF line ends, host in lower case"
        );
        let r = Response::status(405);
        assert!(
            String::from_utf8(r.encode())
                .unwrap()
                .contains("allow: GET, HEAD\r\n")
        );
    }

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
    }
}
