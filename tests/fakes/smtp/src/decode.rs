//! The MIME decodings a captured message needs: quoted-printable and base64 bodies
//! (RFC 2045), encoded-words in headers (RFC 2047), and the charsets senders use.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

/// Standard base64 that does not insist on padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a body's text by its `Content-Transfer-Encoding` and charset; an encoding it does
/// not know (7bit, 8bit, binary) leaves the text as it is, and so does a malformed body.
pub(crate) fn body(text: &str, transfer_encoding: &str, charset: &str) -> String {
    let bytes = match transfer_encoding.trim().to_ascii_lowercase().as_str() {
        "quoted-printable" => quoted_printable(text),
        "base64" => {
            let compact: String = text.split_whitespace().collect();
            match BASE64.decode(compact) {
                Ok(bytes) => bytes,
                Err(_) => return text.to_owned(),
            }
        }
        _ => return text.to_owned(),
    };
    with_charset(&bytes, charset)
}

/// Decodes quoted-printable text: `=XX` escapes, soft line breaks (`=` at a line's end), and
/// the trailing whitespace RFC 2045 §6.7 says to drop; a malformed `=` stays as it is.
pub(crate) fn quoted_printable(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end_matches([' ', '\t', '\r']);
        let (line, soft_break) = match line.strip_suffix('=') {
            Some(line) => (line, true),
            None => (line, false),
        };
        unescape(line.as_bytes(), &mut out, false);
        if !soft_break && lines.peek().is_some() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Replaces `=XX` escapes (and, for RFC 2047's Q encoding, `_` with a space).
fn unescape(mut bytes: &[u8], out: &mut Vec<u8>, underscore_is_space: bool) {
    while let Some((&byte, rest)) = bytes.split_first() {
        match byte {
            b'=' => match rest.get(..2).and_then(hex_pair) {
                Some(decoded) => {
                    out.push(decoded);
                    bytes = &rest[2..];
                    continue;
                }
                None => out.push(b'='),
            },
            b'_' if underscore_is_space => out.push(b' '),
            _ => out.push(byte),
        }
        bytes = rest;
    }
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digits = std::str::from_utf8(pair).ok()?;
    u8::from_str_radix(digits, 16).ok()
}

/// Turns bytes in `charset` into text: UTF-8 (and its subset US-ASCII) and ISO-8859-1 are
/// decoded, anything else is read as UTF-8 with replacement characters.
pub(crate) fn with_charset(bytes: &[u8], charset: &str) -> String {
    let charset = charset.trim().to_ascii_lowercase();
    match charset.as_str() {
        "iso-8859-1" | "latin1" | "latin-1" | "l1" => {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Decodes the RFC 2047 encoded-words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) in a header value;
/// whitespace between two encoded-words is dropped, and adjacent words in one charset are
/// joined before decoding, so a character split across them survives.
pub(crate) fn encoded_words(value: &str) -> String {
    let mut out = String::new();
    // Bytes of adjacent encoded-words not yet turned into text, and their charset.
    let mut pending: Option<(String, Vec<u8>)> = None;
    let mut rest = value;
    while !rest.is_empty() {
        let word_at = rest.find("=?");
        let word = word_at.and_then(|at| encoded_word(&rest[at..]).map(|word| (at, word)));
        let Some((at, (charset, bytes, length))) = word else {
            flush(&mut pending, &mut out);
            out.push_str(rest);
            break;
        };
        let between = &rest[..at];
        let joins = pending.is_some() && between.chars().all(char::is_whitespace);
        if !joins {
            flush(&mut pending, &mut out);
            out.push_str(between);
        }
        match &mut pending {
            Some((pending_charset, pending_bytes))
                if pending_charset.eq_ignore_ascii_case(&charset) =>
            {
                pending_bytes.extend_from_slice(&bytes);
            }
            _ => {
                flush(&mut pending, &mut out);
                pending = Some((charset, bytes));
            }
        }
        rest = &rest[at + length..];
    }
    flush(&mut pending, &mut out);
    out
}

fn flush(pending: &mut Option<(String, Vec<u8>)>, out: &mut String) {
    if let Some((charset, bytes)) = pending.take() {
        out.push_str(&with_charset(&bytes, &charset));
    }
}

/// Parses one encoded-word at the start of `text`: its charset (without an RFC 2231
/// language), decoded bytes, and length in `text`.
fn encoded_word(text: &str) -> Option<(String, Vec<u8>, usize)> {
    let inner = text.strip_prefix("=?")?;
    let (charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let (encoded, _) = inner.split_once("?=")?;
    if encoded.contains(char::is_whitespace) || charset.is_empty() {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => BASE64.decode(encoded).ok()?,
        "Q" | "q" => {
            let mut bytes = Vec::with_capacity(encoded.len());
            unescape(encoded.as_bytes(), &mut bytes, true);
            bytes
        }
        _ => return None,
    };
    // `=?` charset `?` encoding `?` encoded `?=`
    let length = charset.len() + encoding.len() + encoded.len() + 6;
    let charset = charset.split('*').next().unwrap_or(charset).to_owned();
    Some((charset, bytes, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_unescapes_and_joins_soft_breaks() {
        let decoded = quoted_printable("Gr=C3=BC=C3=9Fe, caf=\r\n=C3=A9 =3D ok  \r\nnext=ZZ");
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "Grüße, café = ok\r\nnext=ZZ"
        );
    }

    #[test]
    fn bodies_decode_by_transfer_encoding_and_charset() {
        assert_eq!(body("R3LDvMOfZQ==\r\n", "base64", "utf-8"), "Grüße");
        assert_eq!(body("R3LDvMOfZQ", "BASE64", ""), "Grüße");
        assert_eq!(body("caf=E9", "quoted-printable", "ISO-8859-1"), "café");
        assert_eq!(body("plain =41", "7bit", "utf-8"), "plain =41");
        assert_eq!(body("not base64!", "base64", "utf-8"), "not base64!");
    }

    #[test]
    fn encoded_words_decode_b_and_q() {
        assert_eq!(encoded_words("=?utf-8?b?R3LDvMOfZQ==?="), "Grüße");
        assert_eq!(
            encoded_words("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_Wien?="),
            "Grüße aus Wien"
        );
        assert_eq!(
            encoded_words("Re: =?utf-8?q?caf=C3=A9?= and =?iso-8859-1?q?caf=E9?= ok"),
            "Re: café and café ok"
        );
        assert_eq!(encoded_words("=?utf-8*en?q?hi?="), "hi");
    }

    #[test]
    fn adjacent_encoded_words_join_across_a_split_character() {
        // "é" is C3 A9, split between the two words; the folding whitespace goes.
        assert_eq!(
            encoded_words("=?utf-8?q?caf=C3?=\r\n =?utf-8?q?=A9!?="),
            "café!"
        );
        assert_eq!(encoded_words("=?utf-8?b?w6k=?= =?utf-8?b?w6k=?="), "éé");
    }

    #[test]
    fn text_that_only_looks_encoded_stays() {
        for text in [
            "a =? b",
            "=?utf-8?x?abc?=",
            "=?utf-8?q?a b?=",
            "=?utf-8?q?abc",
            "plain",
        ] {
            assert_eq!(encoded_words(text), text);
        }
    }
}
