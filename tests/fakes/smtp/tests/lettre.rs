//! The sink as a real client sees it: messages sent with `lettre` arrive intact.

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Email, Tokio1Executor};
use smtp_sink::{MAX_MESSAGE, Message, SmtpSink};

const WAIT: Duration = Duration::from_secs(5);

fn mailer(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.addr().port())
        .build()
}

fn mailbox(address: &str) -> Mailbox {
    address.parse().expect("a valid mailbox")
}

fn email(to: &str, subject: &str) -> lettre::message::MessageBuilder {
    Email::builder()
        .from(mailbox("Tenantry <noreply@tenantry.test>"))
        .to(mailbox(to))
        .subject(subject)
}

async fn send_one(sink: &SmtpSink, email: Email) -> Message {
    mailer(sink)
        .send(email)
        .await
        .expect("the sink accepts the message");
    let mut messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    messages.remove(0)
}

#[tokio::test]
async fn a_plain_text_message_arrives_intact() {
    let sink = SmtpSink::start().unwrap();
    let subject = "Ihr Bestätigungscode — 123456 ✓";
    let text = "Your code is 123456.\n.a line that starts with a dot\n..and one with two\n.\nend";
    let sent = email("Ada <ada@example.com>", subject)
        .header(ContentType::TEXT_PLAIN)
        .body(text.to_owned())
        .unwrap();

    let message = send_one(&sink, sent).await;

    assert_eq!(message.from, "noreply@tenantry.test");
    assert_eq!(message.to, ["ada@example.com"]);
    assert_eq!(message.subject.as_deref(), Some(subject));
    assert!(
        message.data.to_ascii_lowercase().contains("=?utf-8?b?"),
        "lettre encodes the subject as RFC 2047 encoded-words: {}",
        message.data
    );
    assert_eq!(message.body, text);
    // Dot-stuffed on the wire, unstuffed in the capture.
    assert!(
        message
            .data
            .contains("\r\n.a line that starts with a dot\r\n")
    );
    assert!(message.data.contains("\r\n..and one with two\r\n.\r\nend"));
    assert_eq!(
        message.header("To").as_deref(),
        Some("Ada <ada@example.com>")
    );
}

#[tokio::test]
async fn utf8_bodies_are_transfer_decoded_whatever_lettre_picks() {
    let sink = SmtpSink::start().unwrap();
    let text = "Grüße aus Wien — dein Code: 654321\nZeile zwei: ✓";
    let encodings = [
        None,
        Some(ContentTransferEncoding::QuotedPrintable),
        Some(ContentTransferEncoding::Base64),
        Some(ContentTransferEncoding::EightBit),
    ];
    for (number, encoding) in encodings.iter().enumerate() {
        let body = match encoding {
            None => Body::new(text.to_owned()),
            Some(encoding) => Body::new_with_encoding(text.to_owned(), *encoding).unwrap(),
        };
        let sent = email("bob@example.com", &format!("message {number}"))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .unwrap();
        mailer(&sink).send(sent).await.unwrap();
    }

    let messages = sink.messages();
    assert_eq!(messages.len(), encodings.len());
    for (message, encoding) in messages.iter().zip(encodings) {
        assert_eq!(message.body, text, "{encoding:?}: {}", message.data);
    }
}

#[tokio::test]
async fn a_message_to_two_recipients_reaches_both() {
    let sink = SmtpSink::start().unwrap();
    let sent = email("ada@example.com", "Welcome")
        .cc(mailbox("bob@example.com"))
        .body(String::from("Hello, both of you."))
        .unwrap();

    mailer(&sink).send(sent).await.unwrap();

    let messages = sink
        .wait_for(|messages| !messages.is_empty(), WAIT)
        .await
        .expect("the message arrives");
    assert_eq!(messages[0].to, ["ada@example.com", "bob@example.com"]);
    assert_eq!(sink.messages_to("ada@example.com"), messages);
    assert_eq!(sink.messages_to("BOB@example.com"), messages);
    assert!(sink.messages_to("eve@example.com").is_empty());
}

#[tokio::test]
async fn a_multipart_message_gives_its_plain_text_part() {
    let sink = SmtpSink::start().unwrap();
    let sent = email("ada@example.com", "Verify your address")
        .multipart(MultiPart::alternative_plain_html(
            String::from("Code: 246810 — gültig 15 Minuten"),
            String::from("<p>Code: <b>246810</b></p>"),
        ))
        .unwrap();

    let message = send_one(&sink, sent).await;

    assert_eq!(message.body, "Code: 246810 — gültig 15 Minuten");
}

#[tokio::test]
async fn an_oversized_message_is_refused_with_552() {
    let sink = SmtpSink::start().unwrap();
    let line = format!("{}\n", "x".repeat(75));
    let huge = line.repeat(MAX_MESSAGE / line.len() + 1);
    let sent = email("ada@example.com", "Too big").body(huge).unwrap();

    let error = mailer(&sink)
        .send(sent)
        .await
        .expect_err("the sink refuses it");

    assert!(error.is_permanent(), "{error}");
    assert_eq!(
        error.status().map(|code| code.to_string()).as_deref(),
        Some("552")
    );
    assert!(sink.messages().is_empty());

    // The sink goes on accepting messages that fit.
    let small = email("ada@example.com", "Fits").body(line).unwrap();
    mailer(&sink).send(small).await.unwrap();
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn subscribers_see_each_message_as_it_arrives() {
    let sink = SmtpSink::start().unwrap();
    let mut live = sink.subscribe();
    assert!(sink.url().starts_with("smtp://127.0.0.1:"));
    assert!(sink.url().ends_with(&sink.addr().port().to_string()));

    for n in 1..=2 {
        let sent = email("ada@example.com", &format!("number {n}"))
            .body(format!("body {n}"))
            .unwrap();
        mailer(&sink).send(sent).await.unwrap();
    }

    for n in 1..=2 {
        let message = tokio::time::timeout(WAIT, live.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.subject, Some(format!("number {n}")));
        assert!(message.to_string().ends_with(&format!("\n\nbody {n}")));
    }
}

#[tokio::test]
async fn wait_for_gives_up_after_its_timeout() {
    let sink = SmtpSink::start().unwrap();
    let waited = sink
        .wait_for(|messages| !messages.is_empty(), Duration::from_millis(50))
        .await;
    assert_eq!(waited, None);
}
