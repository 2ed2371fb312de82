//! Export and import of the raw event stream: the log is the source of truth, so its backup is
//! the one that matters. An export is JSON lines, one message each, in sequence order, with
//! every header and the payload as stored (base64), its subject relative to the namespace (so
//! it can be imported under another). An import re-appends them to an empty stream, each at
//! exactly its old sequence (`Nats-Expected-Last-Sequence`), so stream sequences — which read
//! models keep as checkpoints — mean the same after a restore. An interrupted import can be
//! run again: it checks that what the stream holds is the export's beginning and goes on.

use std::collections::VecDeque;
use std::io::{BufRead, Write};

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{EventStore, StoreError};

/// Publishes in flight during an import (acks awaited oldest first).
const WINDOW: usize = 256;

/// One message of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedMessage {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its subject below the namespace root (`provisioning.<tenant>`).
    pub subject: String,
    /// Every header, sorted by name (values in stored order).
    pub headers: Vec<(String, String)>,
    /// The payload, base64 (standard alphabet, padded).
    pub payload: String,
    /// When JetStream first stored it (an import stores it anew; the event's own time is in
    /// its payload).
    pub stored_at: DateTime<Utc>,
}

/// What an export or import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ArchiveReport {
    /// Messages written (export) or appended (import).
    pub messages: u64,
    /// Messages an import found already in the stream (a resumed import).
    pub already_there: u64,
    /// The last stream sequence covered.
    pub last_sequence: u64,
}

/// Every header as `(name, value)`, sorted by name (values of one name in stored order).
fn flat_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut flat: Vec<(String, String)> = headers
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.to_string(), v.as_str().to_owned()))
        })
        .collect();
    flat.sort_by(|a, b| a.0.cmp(&b.0));
    flat
}

fn bad_line(line: u64, why: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("export line {line}: {why}"))
}

impl EventStore {
    fn root(&self) -> String {
        self.all_filter().trim_end_matches(".>").to_owned()
    }

    /// Writes every message of the stream, from sequence 1 to the last one present when it
    /// started, to `out`; `progress(done, total)` after each.
    pub async fn export(
        &self,
        out: &mut (dyn Write + Send),
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<ArchiveReport, StoreError> {
        let root = format!("{}.", self.root());
        let mut replay = self.replay(&self.all_filter(), 1).await?;
        let total = replay.total();
        let mut report = ArchiveReport {
            messages: 0,
            already_there: 0,
            last_sequence: 0,
        };
        while let Some(raw) = replay.next_raw().await {
            let raw = raw?;
            let headers = flat_headers(&raw.headers);
            let message = ArchivedMessage {
                sequence: raw.sequence,
                subject: raw
                    .subject
                    .strip_prefix(&root)
                    .unwrap_or(&raw.subject)
                    .to_owned(),
                headers,
                payload: base64::engine::general_purpose::STANDARD.encode(&raw.payload),
                stored_at: raw.stored_at,
            };
            let line = serde_json::to_string(&message)
                .map_err(|e| StoreError::Invalid(format!("cannot encode message: {e}")))?;
            writeln!(out, "{line}").map_err(|e| {
                StoreError::Invalid(format!(
                    "cannot write the export: {e}; nothing is lost, run it again"
                ))
            })?;
            report.messages += 1;
            report.last_sequence = raw.sequence;
            progress(report.messages, total);
            if report.messages >= total {
                break;
            }
        }
        out.flush()
            .map_err(|e| StoreError::Invalid(format!("cannot write the export: {e}")))?;
        if report.messages < total {
            return Err(StoreError::Unavailable(format!(
                "the export ended after {} of {total} messages (the read was cut short);                  delete the partial file and run it again",
                report.messages
            )));
        }
        Ok(report)
    }

    /// Appends the messages of an export to this store's stream, each at its old sequence.
    /// The stream must be empty, or hold the beginning of this same export (a resumed import);
    /// anything else is refused before a message is written.
    pub async fn import(
        &self,
        input: &mut (dyn BufRead + Send),
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<ArchiveReport, StoreError> {
        let root = self.root();
        let stream_name = self.stream_name().to_owned();
        let mut stream = self
            .jetstream()
            .get_stream(&stream_name)
            .await
            .map_err(StoreError::unavailable)?;
        let present = stream
            .info()
            .await
            .map_err(StoreError::unavailable)?
            .state
            .last_sequence;
        let mut report = ArchiveReport {
            messages: 0,
            already_there: 0,
            last_sequence: present,
        };
        let mut in_flight = VecDeque::new();
        let mut line_no = 0u64;
        let mut line = String::new();
        let mut to_check: Option<(ArchivedMessage, u64)> = None;
        let mut ids = std::collections::HashSet::new();
        loop {
            line.clear();
            let read = input
                .read_line(&mut line)
                .map_err(|e| bad_line(line_no + 1, format!("cannot read: {e}")))?;
            if read == 0 {
                break;
            }
            line_no += 1;
            if line.trim().is_empty() {
                continue;
            }
            let m: ArchivedMessage =
                serde_json::from_str(&line).map_err(|e| bad_line(line_no, e))?;
            if m.sequence <= present {
                // Resuming: the last of the export's messages the stream already holds is
                // compared (subject and event id) before anything is written: it proves the
                // stream holds this export's beginning, not other events.
                report.already_there += 1;
                to_check = Some((m, line_no));
                continue;
            }
            match to_check.take() {
                Some((held, at)) => self.same_message(&held, at).await?,
                // The stream holds events and the export has none of them: not this export's
                // beginning.
                None if present > 0 && report.already_there == 0 => {
                    return Err(bad_line(
                        line_no,
                        format!(
                            "the stream already holds {present} events and this export starts                              after them; import only into an empty stream, or into the one this                              export was being imported into"
                        ),
                    ));
                }
                None => {}
            }
            let expected = report.last_sequence + 1;
            if m.sequence != expected {
                return Err(bad_line(
                    line_no,
                    format!(
                        "sequence {} follows {}: the export has a gap or is out of order, and \
                         sequences after it would not be reproduced; nothing after sequence {} \
                         was imported",
                        m.sequence, report.last_sequence, report.last_sequence
                    ),
                ));
            }
            let mut headers = HeaderMap::new();
            for (name, value) in &m.headers {
                // The expectation headers were the original writer's. A message id this import
                // already sent is left out: the log may hold one id twice (appended more than
                // the duplicate window apart), and JetStream would drop the second copy here.
                // The expected sequence below makes every message land exactly once anyway.
                if name.starts_with("Nats-Expected")
                    || (name == "Nats-Msg-Id" && !ids.insert(value.clone()))
                {
                    continue;
                }
                headers.append(name.as_str(), value.as_str());
            }
            headers.insert(
                "Nats-Expected-Last-Sequence",
                report.last_sequence.to_string().as_str(),
            );
            let payload = base64::engine::general_purpose::STANDARD
                .decode(&m.payload)
                .map_err(|e| bad_line(line_no, format!("payload is not base64: {e}")))?;
            let ack = self
                .jetstream()
                .publish_with_headers(format!("{root}.{}", m.subject), headers, payload.into())
                .await
                .map_err(StoreError::unavailable)?;
            in_flight.push_back((m.sequence, ack));
            report.last_sequence = m.sequence;
            if in_flight.len() >= WINDOW {
                self.settle(&mut in_flight, &mut report, &mut progress, 1)
                    .await?;
            }
        }
        if let Some((held, at)) = to_check.take() {
            self.same_message(&held, at).await?;
        }
        let n = in_flight.len();
        self.settle(&mut in_flight, &mut report, &mut progress, n)
            .await?;
        Ok(report)
    }

    /// Awaits the `n` oldest publish acks, each of which must land at its own sequence.
    async fn settle(
        &self,
        in_flight: &mut VecDeque<(u64, async_nats::jetstream::context::PublishAckFuture)>,
        report: &mut ArchiveReport,
        progress: &mut (impl FnMut(u64) + Send),
        n: usize,
    ) -> Result<(), StoreError> {
        for _ in 0..n {
            let Some((sequence, ack)) = in_flight.pop_front() else {
                break;
            };
            match ack.await {
                Ok(a) if a.sequence == sequence => {}
                Ok(a) => {
                    return Err(StoreError::Invalid(format!(
                        "message {sequence} was stored at sequence {}; the stream changed under \
                         the import — stop every writer and import into an empty stream",
                        a.sequence
                    )));
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    return Err(StoreError::Invalid(format!(
                        "message {sequence} could not be stored at its sequence: something else \
                         writes to the stream; stop every writer and run the import again"
                    )));
                }
                Err(e) => return Err(StoreError::unavailable(e)),
            }
            report.messages += 1;
            progress(report.messages);
        }
        Ok(())
    }

    /// Checks that the stored message at `m.sequence` is `m` (same subject and event id).
    async fn same_message(&self, m: &ArchivedMessage, line: u64) -> Result<(), StoreError> {
        let stream = self
            .jetstream()
            .get_stream(self.stream_name())
            .await
            .map_err(StoreError::unavailable)?;
        let stored = stream
            .get_raw_message(m.sequence)
            .await
            .map_err(StoreError::unavailable)?;
        let id_of = |headers: &[(String, String)]| {
            headers
                .iter()
                .find(|(k, _)| k == crate::headers::EVENT_ID)
                .map(|(_, v)| v.clone())
        };
        let stored_headers = flat_headers(&stored.headers);
        let same_subject = stored.subject.as_str() == format!("{}.{}", self.root(), m.subject);
        let same_id = id_of(&stored_headers).is_some_and(|id| Some(id) == id_of(&m.headers));
        if same_subject && same_id {
            return Ok(());
        }
        Err(bad_line(
            line,
            format!(
                "the stream already holds other events (sequence {} is not this export's); \
                 import only into an empty stream, or into the one this export was being \
                 imported into",
                m.sequence
            ),
        ))
    }
}
