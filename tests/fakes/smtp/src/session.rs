//! One SMTP connection: the RFC 5321 subset the sink speaks.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::message::Message;

/// The longest line, command or message text, in bytes with its CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_LINE: usize = 1000;
/// The largest message, in bytes after dot-unstuffing; a larger one is refused with 552.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// The most recipients one message may have (RFC 5321 §4.5.3.1.8's minimum).
const MAX_RECIPIENTS: usize = 100;
/// How long the sink waits for the client's next line before it hangs up (RFC 5321 §4.5.3.2.7).
const IDLE: Duration = Duration::from_secs(300);

const GREETING: &str = "220 localhost smtp-sink ESMTP ready";

/// Serves one connection until the client quits or goes away, handing each accepted message
/// to `deliver`.
pub(crate) async fn serve<S>(stream: S, mut deliver: impl FnMut(Message)) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    let mut session = Session::default();
    let mut line = Vec::new();
    reply(&mut writer, GREETING).await?;
    loop {
        match next_line(&mut reader, &mut line, &mut writer).await? {
            Line::End => return Ok(()),
            Line::TooLong => reply(&mut writer, "500 Line too long").await?,
            Line::Complete => match session.command(&String::from_utf8_lossy(&line)) {
                Step::Reply(text) => reply(&mut writer, &text).await?,
                Step::Quit => {
                    reply(&mut writer, "221 localhost closing connection").await?;
                    return Ok(());
                }
                Step::Data => {
                    reply(&mut writer, "354 End data with <CR><LF>.<CR><LF>").await?;
                    let Some(data) = read_data(&mut reader, &mut line, &mut writer).await? else {
                        return Ok(());
                    };
                    let envelope = session.reset();
                    let answer = match data {
                        Data::Accepted(data) => {
                            deliver(Message::parse(
                                envelope.from,
                                envelope.to,
                                String::from_utf8_lossy(&data).into_owned(),
                            ));
                            "250 OK: message accepted"
                        }
                        Data::TooBig => "552 Message exceeds fixed maximum message size",
                        Data::LineTooLong => "500 Line too long",
                    };
                    reply(&mut writer, answer).await?;
                }
            },
        }
    }
}

/// The envelope of the transaction under way.
#[derive(Debug, Default)]
struct Envelope {
    from: String,
    to: Vec<String>,
}

/// What the connection knows between commands.
#[derive(Debug, Default)]
struct Session {
    greeted: bool,
    /// `Some` once MAIL has been accepted, until the transaction ends.
    transaction: Option<Envelope>,
}

/// What the connection does after a command.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Reply(String),
    /// DATA was accepted: read the message text.
    Data,
    Quit,
}

impl Session {
    fn command(&mut self, line: &str) -> Step {
        let (verb, argument) = line.split_once(' ').unwrap_or((line, ""));
        let argument = argument.trim();
        let reply = |text: &str| Step::Reply(text.to_owned());
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if argument.is_empty() => reply("501 Syntax: EHLO domain"),
            "EHLO" => {
                self.greeted = true;
                self.transaction = None;
                Step::Reply(format!(
                    "250-localhost greets {argument}\r\n250-8BITMIME\r\n250-PIPELINING\r\n\
                     250-SMTPUTF8\r\n250 SIZE {MAX_MESSAGE}"
                ))
            }
            "HELO" => {
                self.greeted = true;
                self.transaction = None;
                Step::Reply(format!("250 localhost greets {argument}"))
            }
            "MAIL" if !self.greeted => reply("503 Bad sequence of commands: send EHLO first"),
            "MAIL" if self.transaction.is_some() => {
                reply("503 Bad sequence of commands: nested MAIL")
            }
            "MAIL" => match path_after("FROM:", argument) {
                None => reply("501 Syntax: MAIL FROM:<address>"),
                Some((_, parameters)) if declared_size(parameters) > MAX_MESSAGE => {
                    reply("552 Message exceeds fixed maximum message size")
                }
                Some((from, _)) => {
                    self.transaction = Some(Envelope {
                        from,
                        to: Vec::new(),
                    });
                    reply("250 OK")
                }
            },
            "RCPT" => match (&mut self.transaction, path_after("TO:", argument)) {
                (None, _) => reply("503 Bad sequence of commands: need MAIL before RCPT"),
                (Some(_), None) => reply("501 Syntax: RCPT TO:<address>"),
                (Some(_), Some((to, _))) if to.is_empty() => reply("501 Syntax: RCPT TO:<address>"),
                (Some(envelope), Some(_)) if envelope.to.len() >= MAX_RECIPIENTS => {
                    reply("452 Too many recipients")
                }
                (Some(envelope), Some((to, _))) => {
                    envelope.to.push(to);
                    reply("250 OK")
                }
            },
            "DATA" if !argument.is_empty() => reply("501 Syntax: DATA"),
            "DATA" => match &self.transaction {
                Some(envelope) if !envelope.to.is_empty() => Step::Data,
                _ => reply("503 Bad sequence of commands: need RCPT before DATA"),
            },
            "RSET" => {
                self.transaction = None;
                reply("250 OK")
            }
            "NOOP" => reply("250 OK"),
            "QUIT" => Step::Quit,
            "" => reply("500 Syntax error, command unrecognized"),
            _ => reply("502 Command not implemented"),
        }
    }

    /// Ends the transaction under way, returning its envelope.
    fn reset(&mut self) -> Envelope {
        self.transaction.take().unwrap_or_default()
    }
}

/// Parses `FROM:<path> parameters` (for `keyword` `FROM:`) into the address and the
/// parameters; the null path `<>` gives an empty address and a source route is dropped.
fn path_after<'a>(keyword: &str, argument: &'a str) -> Option<(String, &'a str)> {
    let head = argument.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = argument[keyword.len()..].trim_start().strip_prefix('<')?;
    let (path, parameters) = rest.split_once('>')?;
    let address = match path.strip_prefix('@') {
        Some(route) => route.split_once(':')?.1,
        None => path,
    };
    if address.contains(char::is_whitespace) {
        return None;
    }
    Some((address.to_owned(), parameters.trim()))
}

/// The `SIZE=` a MAIL command declares (RFC 1870), or 0.
fn declared_size(parameters: &str) -> usize {
    parameters
        .split_whitespace()
        .filter_map(|parameter| parameter.split_once('='))
        .find(|(name, _)| name.eq_ignore_ascii_case("SIZE"))
        .and_then(|(_, size)| size.parse().ok())
        .unwrap_or(0)
}

/// What reading one line found.
enum Line {
    /// A line, now in the buffer without its line break.
    Complete,
    /// A line longer than [`MAX_LINE`]; it has been read and dropped.
    TooLong,
    /// The client went away (or idled too long).
    End,
}

/// How a message text ended.
enum Data {
    Accepted(Vec<u8>),
    TooBig,
    LineTooLong,
}

/// Reads the message text after DATA up to the lone `.` line, dot-unstuffing it; `None` if
/// the client went away first.
async fn read_data<R, W>(
    reader: &mut R,
    line: &mut Vec<u8>,
    writer: &mut W,
) -> io::Result<Option<Data>>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut data = Vec::new();
    let (mut too_big, mut too_long) = (false, false);
    loop {
        match next_line(reader, line, writer).await? {
            Line::End => return Ok(None),
            Line::TooLong => too_long = true,
            Line::Complete if line == b"." => break,
            Line::Complete => {
                let text = line.strip_prefix(b".").unwrap_or(line);
                if data.len() + text.len() + 2 > MAX_MESSAGE {
                    // Keep reading to the end, so the reply lands where the client looks for it.
                    too_big = true;
                    data = Vec::new();
                }
                if !too_big {
                    data.extend_from_slice(text);
                    data.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    Ok(Some(if too_big {
        Data::TooBig
    } else if too_long {
        Data::LineTooLong
    } else {
        Data::Accepted(data)
    }))
}

/// Reads the next line into `line` (without its CRLF, or a bare LF), dropping one longer than
/// [`MAX_LINE`]; after [`IDLE`] without one, says 421 and ends.
async fn next_line<R, W>(reader: &mut R, line: &mut Vec<u8>, writer: &mut W) -> io::Result<Line>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match tokio::time::timeout(IDLE, read_line(reader, line)).await {
        Ok(read) => read,
        Err(_) => {
            reply(writer, "421 localhost idle too long, closing connection").await?;
            Ok(Line::End)
        }
    }
}

async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> io::Result<Line> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            // End of stream; an unfinished last line is dropped with the connection.
            return Ok(Line::End);
        }
        let (chunk, complete) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&available[..=end], true),
            None => (available, false),
        };
        let taken = chunk.len();
        if !too_long && line.len() + taken > MAX_LINE {
            too_long = true;
            line.clear();
        }
        if !too_long {
            line.extend_from_slice(chunk);
        }
        reader.consume(taken);
        if complete {
            break;
        }
    }
    if too_long {
        return Ok(Line::TooLong);
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Line::Complete)
}

async fn reply<W: AsyncWrite + Unpin>(writer: &mut W, text: &str) -> io::Result<()> {
    // One write per reply: two small ones would meet Nagle's algorithm and a delayed ACK.
    writer.write_all(format!("{text}\r\n").as_bytes()).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(step: Step) -> String {
        match step {
            Step::Reply(text) => text[..3].to_owned(),
            Step::Data => "354".to_owned(),
            Step::Quit => "221".to_owned(),
        }
    }

    #[test]
    fn commands_follow_the_rfc_5321_sequence() {
        let mut session = Session::default();
        let mut send = |line: &str| code(session.command(line));
        assert_eq!(send("MAIL FROM:<a@example.com>"), "503");
        assert_eq!(send("ehlo client.example"), "250");
        assert_eq!(send("DATA"), "503");
        assert_eq!(send("RCPT TO:<b@example.com>"), "503");
        assert_eq!(send("MAIL FROM:a@example.com"), "501");
        assert_eq!(
            send("mail from:<a@example.com> BODY=8BITMIME SMTPUTF8"),
            "250"
        );
        assert_eq!(send("MAIL FROM:<a@example.com>"), "503");
        assert_eq!(send("DATA"), "503");
        assert_eq!(send("RCPT TO:<>"), "501");
        assert_eq!(send("RCPT TO: <b@example.com>"), "250");
        assert_eq!(send("VRFY b"), "502");
        assert_eq!(send("STARTTLS"), "502");
        assert_eq!(send("AUTH PLAIN AAAA"), "502");
        assert_eq!(send("NOOP"), "250");
        assert_eq!(send("DATA"), "354");
        assert_eq!(send("RSET"), "250");
        assert_eq!(send("DATA"), "503");
        assert_eq!(send(""), "500");
        assert_eq!(send("QUIT"), "221");
    }

    #[test]
    fn ehlo_advertises_the_extensions() {
        let Step::Reply(text) = Session::default().command("EHLO x") else {
            panic!("EHLO must be answered");
        };
        for extension in ["8BITMIME", "PIPELINING", "SMTPUTF8", "SIZE 1048576"] {
            assert!(text.contains(extension), "{text}");
        }
        assert!(
            !text.contains("AUTH") && !text.contains("STARTTLS"),
            "{text}"
        );
    }

    #[test]
    fn paths_drop_brackets_source_routes_and_parameters() {
        assert_eq!(
            path_after("TO:", "to:<@relay.example:b@example.com> NOTIFY=NEVER"),
            Some(("b@example.com".to_owned(), "NOTIFY=NEVER"))
        );
        assert_eq!(path_after("FROM:", "FROM:<>"), Some((String::new(), "")));
        assert_eq!(path_after("FROM:", "FROM <a@example.com>"), None);
        assert_eq!(declared_size("BODY=8BITMIME SIZE=2000000"), 2_000_000);
    }

    #[test]
    fn a_declared_size_over_the_limit_is_refused_up_front() {
        let mut session = Session::default();
        session.command("HELO x");
        let step = session.command("MAIL FROM:<a@example.com> SIZE=2000000");
        assert_eq!(code(step), "552");
    }
}
