//! The sink's SMTP dialogue over raw TCP: replies, sequence errors, pipelining, limits.

use std::time::Duration;

use smtp_sink::{MAX_LINE, SmtpSink};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const WAIT: Duration = Duration::from_secs(5);

struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    /// Connects and reads the greeting.
    async fn connect(sink: &SmtpSink) -> Self {
        let (reader, writer) = TcpStream::connect(sink.addr()).await.unwrap().into_split();
        let mut client = Self {
            reader: BufReader::new(reader),
            writer,
        };
        assert_eq!(client.reply().await.0, 220);
        client
    }

    async fn write(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    /// Reads one (possibly multi-line) reply: its code and its lines' texts.
    async fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line)).await;
            assert!(
                read.unwrap().unwrap() > 0,
                "the sink hung up after {lines:?}"
            );
            assert!(line.ends_with("\r\n"), "{line:?}");
            let code = line[..3].parse().unwrap();
            let last = line.as_bytes()[3] == b' ';
            lines.push(line[4..].trim_end().to_owned());
            if last {
                return (code, lines);
            }
        }
    }

    /// Sends one command and returns its reply's code.
    async fn send(&mut self, command: &str) -> u16 {
        self.write(&format!("{command}\r\n")).await;
        self.reply().await.0
    }
}

#[tokio::test]
async fn commands_out_of_sequence_are_refused_with_503() {
    let sink = SmtpSink::start().unwrap();
    let mut client = Client::connect(&sink).await;

    assert_eq!(client.send("DATA").await, 503);
    assert_eq!(client.send("MAIL FROM:<a@example.com>").await, 503);
    client.write("EHLO client.test\r\n").await;
    let (code, lines) = client.reply().await;
    assert_eq!(code, 250);
    for extension in ["8BITMIME", "PIPELINING", "SMTPUTF8"] {
        assert!(lines.iter().any(|line| line == extension), "{lines:?}");
    }
    assert!(
        !lines
            .iter()
            .any(|line| line.starts_with("AUTH") || line == "STARTTLS")
    );
    assert_eq!(client.send("DATA").await, 503);
    assert_eq!(client.send("RCPT TO:<b@example.com>").await, 503);
    assert_eq!(client.send("MAIL FROM:<a@example.com>").await, 250);
    assert_eq!(client.send("DATA").await, 503, "DATA before RCPT");
    assert_eq!(
        client.send("MAIL FROM:<a@example.com>").await,
        503,
        "nested MAIL"
    );
    assert_eq!(client.send("RCPT TO:<b@example.com>").await, 250);
    assert_eq!(client.send("RSET").await, 250);
    assert_eq!(client.send("DATA").await, 503, "RSET ended the transaction");
    assert_eq!(client.send("RCPT TO:b@example.com").await, 503);
    assert_eq!(client.send("NOOP").await, 250);
    assert_eq!(client.send("STARTTLS").await, 502);
    assert_eq!(client.send("AUTH LOGIN").await, 502);
    assert_eq!(client.send("FROB").await, 502);
    assert_eq!(client.send("MAIL TO:<a@example.com>").await, 501);
    assert_eq!(client.send(&"x".repeat(MAX_LINE)).await, 500, "too long");
    assert_eq!(client.send("QUIT").await, 221);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_pipelined_transaction_is_unstuffed_and_captured() {
    let sink = SmtpSink::start().unwrap();
    let mut client = Client::connect(&sink).await;
    client.write("HELO client.test\r\n").await;
    assert_eq!(client.reply().await.0, 250);

    client
        .write(
            "MAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<@relay.test:b@example.com>\r\n\
             DATA\r\nSubject: raw\r\n\r\n..hidden dot\r\n...\r\nlast\r\n.\r\nQUIT\r\n",
        )
        .await;
    for expected in [250, 250, 250, 354, 250, 221] {
        assert_eq!(client.reply().await.0, expected);
    }

    let message = sink
        .wait_for(|messages| messages.len() == 1, WAIT)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(message.from, "");
    assert_eq!(message.to, ["a@example.com", "b@example.com"]);
    assert_eq!(
        message.data,
        "Subject: raw\r\n\r\n.hidden dot\r\n..\r\nlast\r\n"
    );
    assert_eq!(message.subject.as_deref(), Some("raw"));
    assert_eq!(message.body, ".hidden dot\n..\nlast");
}

#[tokio::test]
async fn a_connection_carries_several_messages() {
    let sink = SmtpSink::start().unwrap();
    let mut client = Client::connect(&sink).await;
    assert_eq!(client.send("EHLO client.test").await, 250);
    for n in 0..3 {
        assert_eq!(client.send("MAIL FROM:<a@example.com>").await, 250);
        assert_eq!(
            client.send(&format!("RCPT TO:<n{n}@example.com>")).await,
            250
        );
        assert_eq!(client.send("DATA").await, 354);
        assert_eq!(client.send(&format!("\r\nmessage {n}\r\n.")).await, 250);
    }
    let bodies: Vec<_> = sink.messages().into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, ["message 0", "message 1", "message 2"]);
    assert_eq!(sink.messages_to("n1@example.com")[0].body, "message 1");
}

#[tokio::test]
async fn dropping_the_sink_stops_it() {
    let sink = SmtpSink::start().unwrap();
    let addr = sink.addr();
    let mut client = Client::connect(&sink).await;
    drop(sink);

    // The open connection is closed, and no new one is accepted.
    let mut rest = String::new();
    let read = tokio::time::timeout(WAIT, client.reader.read_line(&mut rest)).await;
    assert_eq!(read.unwrap().unwrap_or(0), 0, "{rest:?}");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_message_with_an_over_long_line_is_refused() {
    let sink = SmtpSink::start().unwrap();
    let mut client = Client::connect(&sink).await;
    assert_eq!(client.send("HELO client.test").await, 250);
    assert_eq!(client.send("MAIL FROM:<a@example.com>").await, 250);
    assert_eq!(client.send("RCPT TO:<b@example.com>").await, 250);
    assert_eq!(client.send("DATA").await, 354);
    let long = "y".repeat(MAX_LINE);
    assert_eq!(client.send(&format!("\r\n{long}\r\nafter\r\n.")).await, 500);
    assert_eq!(client.send("DATA").await, 503, "the transaction ended");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn wait_for_sees_a_message_that_arrives_while_it_waits() {
    let sink = SmtpSink::start().unwrap();
    let mut client = Client::connect(&sink).await;
    let send = async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        client
            .write(
                "HELO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n\r\nlate\r\n.\r\n",
            )
            .await;
        client
    };
    let wait = sink.wait_for(|messages| messages.iter().any(|m| m.body == "late"), WAIT);

    let (messages, _client) = tokio::join!(wait, send);

    assert_eq!(messages.expect("the message arrives in time").len(), 1);
}

#[test]
fn starting_outside_a_tokio_runtime_is_an_error() {
    let error = SmtpSink::start().err().expect("no runtime to serve on");
    assert!(error.to_string().contains("Tokio runtime"), "{error}");
}
