//! A captured message: its envelope, its raw text, and the subject and text body read from it.

use std::fmt;

use crate::decode;

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The envelope sender (MAIL FROM), without angle brackets; empty for the null path `<>`.
    pub from: String,
    /// The envelope recipients (RCPT TO), in the order given, without angle brackets.
    pub to: Vec<String>,
    /// The message as sent after DATA — headers, blank line, body — dot-unstuffed, with CRLF
    /// line ends (bytes that are not UTF-8 replaced).
    pub data: String,
    /// The `Subject` header, unfolded, with its RFC 2047 encoded-words decoded.
    pub subject: Option<String>,
    /// The text after the header's blank line, with LF line ends and no trailing line break:
    /// for a single-part message decoded from its quoted-printable or base64
    /// `Content-Transfer-Encoding` and charset; for a multipart one, its first `text/plain`
    /// part so decoded (or the raw body when it has none).
    pub body: String,
}

impl Message {
    pub(crate) fn parse(from: String, to: Vec<String>, data: String) -> Self {
        let (headers, raw_body) = split_entity(&data);
        let subject = header(&headers, "Subject").map(decode::encoded_words);
        let body = match plain_text(&headers, raw_body) {
            Some(text) => text,
            None if content_type(&headers).mime.starts_with("multipart/") => raw_body.to_owned(),
            None => decoded(&headers, raw_body),
        };
        let body = body.replace("\r\n", "\n").trim_end_matches('\n').to_owned();
        Self {
            from,
            to,
            data,
            subject,
            body,
        }
    }

    /// The first header called `name` (ASCII-case-insensitively) in the message's top-level
    /// header, unfolded, with its RFC 2047 encoded-words decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = split_entity(&self.data);
        header(&headers, name).map(decode::encoded_words)
    }

    /// Whether `rcpt` is among the envelope recipients, compared ASCII-case-insensitively.
    pub fn is_to(&self, rcpt: &str) -> bool {
        self.to.iter().any(|to| to.eq_ignore_ascii_case(rcpt))
    }
}

/// Shows the message as `tenantry dev` prints it: envelope, subject, then the text body.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "From: {}", self.from)?;
        writeln!(f, "To: {}", self.to.join(", "))?;
        writeln!(f, "Subject: {}", self.subject.as_deref().unwrap_or(""))?;
        writeln!(f)?;
        write!(f, "{}", self.body)
    }
}

type Headers = Vec<(String, String)>;

/// Splits a message or MIME part at the first blank line into its unfolded header fields and
/// its body.
fn split_entity(text: &str) -> (Headers, &str) {
    let mut headers: Headers = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        offset += line.len();
        let content = line.trim_end_matches(['\r', '\n']);
        if content.is_empty() {
            return (headers, &text[offset..]);
        }
        if content.starts_with([' ', '\t']) {
            // A folded line: unfolding removes only the line break (RFC 5322 §2.2.3).
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(content);
            }
        } else if let Some((name, value)) = content.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim_start().to_owned()));
        }
    }
    (headers, "")
}

fn header<'h>(headers: &'h Headers, name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

/// The text of the first `text/plain` entity: this one, or for a multipart, the first found
/// depth-first among its parts.
fn plain_text(headers: &Headers, body: &str) -> Option<String> {
    let content_type = content_type(headers);
    if content_type.mime.starts_with("multipart/") {
        let boundary = content_type.parameter("boundary")?;
        parts(body, boundary).into_iter().find_map(|part| {
            let (headers, body) = split_entity(part);
            plain_text(&headers, body)
        })
    } else if content_type.mime == "text/plain" {
        Some(decoded(headers, body))
    } else {
        None
    }
}

/// The body decoded by the entity's `Content-Transfer-Encoding` and charset.
fn decoded(headers: &Headers, body: &str) -> String {
    let charset = content_type(headers)
        .parameter("charset")
        .unwrap_or("us-ascii")
        .to_owned();
    let encoding = header(headers, "Content-Transfer-Encoding").unwrap_or("7bit");
    decode::body(body, encoding, &charset)
}

/// The bodies of a multipart's parts: what lies between its `--boundary` lines, up to the
/// closing `--boundary--` (RFC 2046 §5.1.1).
fn parts<'b>(body: &'b str, boundary: &str) -> Vec<&'b str> {
    let delimiter = format!("--{boundary}");
    let close = format!("{delimiter}--");
    let mut parts = Vec::new();
    let mut start = None;
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let content = line.trim_end();
        if content == delimiter || content == close {
            if let Some(start) = start {
                // The line break before a delimiter belongs to the delimiter.
                let part: &str = &body[start..offset];
                let part = part.strip_suffix('\n').unwrap_or(part);
                parts.push(part.strip_suffix('\r').unwrap_or(part));
            }
            if content == close {
                return parts;
            }
            start = Some(offset + line.len());
        }
        offset += line.len();
    }
    // No closing delimiter: the last part runs to the end.
    if let Some(start) = start {
        parts.push(&body[start..]);
    }
    parts
}

/// A `Content-Type` value: its lowercased `type/subtype` and its parameters.
struct ContentType {
    mime: String,
    parameters: Vec<(String, String)>,
}

impl ContentType {
    fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The entity's content type; `text/plain` when it has none (RFC 2045 §5.2).
fn content_type(headers: &Headers) -> ContentType {
    let value = header(headers, "Content-Type").unwrap_or("text/plain");
    let mut fields = split_unquoted(value, ';').into_iter();
    let mime = fields
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let parameters = fields
        .filter_map(|field| {
            let (name, value) = field.split_once('=')?;
            Some((name.trim().to_owned(), unquote(value.trim())))
        })
        .collect();
    ContentType { mime, parameters }
}

/// Splits `text` at each `separator` outside a quoted string.
fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let (mut fields, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (at, character) in text.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ if character == separator && !quoted => {
                fields.push(&text[start..at]);
                start = at + character.len_utf8();
            }
            _ => {}
        }
    }
    fields.push(&text[start..]);
    fields
}

/// A parameter value without its quotes and backslash escapes.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut characters = inner.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => out.extend(characters.next()),
            _ => out.push(character),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &str) -> Message {
        Message::parse(
            "a@example.com".into(),
            vec!["b@example.com".into()],
            data.into(),
        )
    }

    #[test]
    fn a_plain_message_gives_its_subject_and_body() {
        let message = parse(
            "From: a@example.com\r\nSubject: =?utf-8?q?Your_code?=\r\n =?utf-8?b?4oCUIDEyMw==?=\r\n\
             \r\nHello\r\n.dot\r\n\r\n",
        );
        assert_eq!(message.subject.as_deref(), Some("Your code— 123"));
        assert_eq!(message.body, "Hello\n.dot");
        assert_eq!(message.header("from").as_deref(), Some("a@example.com"));
        assert!(message.is_to("B@Example.com"));
    }

    #[test]
    fn a_single_part_body_is_transfer_decoded() {
        let message = parse(
            "Content-Type: text/plain; charset=\"utf-8\"\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe=\r\n!\r\n",
        );
        assert_eq!(message.subject, None);
        assert_eq!(message.body, "Grüße!");
    }

    #[test]
    fn a_multipart_gives_its_first_plain_text_part() {
        let message = parse(
            "Content-Type: multipart/mixed; boundary=\"out;er\"\r\n\r\npreamble\r\n\
             --out;er\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n\
             --inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n\
             --inner\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nQ29kZTogMTIzNDU2\r\n--inner--\r\n\
             --out;er\r\nContent-Type: text/plain\r\n\r\nattachment\r\n--out;er--\r\nepilogue\r\n",
        );
        assert_eq!(message.body, "Code: 123456");
    }

    #[test]
    fn a_multipart_without_plain_text_gives_its_raw_body() {
        let message = parse(
            "Content-Type: multipart/alternative; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b--\r\n",
        );
        assert!(
            message.body.starts_with("--b\nContent-Type: text/html"),
            "{}",
            message.body
        );
    }

    #[test]
    fn display_shows_envelope_subject_and_body() {
        let message = parse("Subject: Hi\r\n\r\nBody\r\n");
        assert_eq!(
            message.to_string(),
            "From: a@example.com\nTo: b@example.com\nSubject: Hi\n\nBody"
        );
    }
}
