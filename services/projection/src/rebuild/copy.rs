//! Rows in PostgreSQL's binary `COPY` format, the cheapest form for the server to take in: no
//! text parsing, no escaping, and each value encoded exactly as a bound parameter would be.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::error::Error;

/// The fixed start of a binary `COPY` stream: signature, flags, header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A buffer of binary `COPY` data, sent and cleared piece by piece.
#[derive(Default)]
pub(crate) struct CopyRows {
    buf: Vec<u8>,
}

impl CopyRows {
    /// The bytes so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the bytes (once sent), keeping the allocation.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    /// Starts a stream; once, before the first row.
    pub(crate) fn header(&mut self) {
        self.buf.extend_from_slice(HEADER);
    }

    /// Ends a stream; once, after the last row.
    pub(crate) fn trailer(&mut self) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
    }

    /// Starts a row of `columns` values.
    pub(crate) fn row(&mut self, columns: i16) {
        self.buf.extend_from_slice(&columns.to_be_bytes());
    }

    fn length(&mut self, n: usize) -> Result<(), Error> {
        let n = i32::try_from(n)
            .map_err(|_| anyhow::anyhow!("a value of {n} bytes is too large for PostgreSQL"))?;
        self.buf.extend_from_slice(&n.to_be_bytes());
        Ok(())
    }

    /// A NULL.
    pub(crate) fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A `text` value.
    pub(crate) fn text(&mut self, s: &str) -> Result<(), Error> {
        self.length(s.len())?;
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }

    /// A nullable `text` value.
    pub(crate) fn opt_text(&mut self, s: Option<&str>) -> Result<(), Error> {
        match s {
            Some(s) => self.text(s),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    /// A `bigint` value.
    pub(crate) fn int8(&mut self, v: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// A nullable `bigint` value.
    pub(crate) fn opt_int8(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int8(v),
            None => self.null(),
        }
    }

    /// A `uuid` value.
    pub(crate) fn uuid(&mut self, u: &Uuid) {
        self.buf.extend_from_slice(&16i32.to_be_bytes());
        self.buf.extend_from_slice(u.as_bytes());
    }

    /// A `timestamptz` value: microseconds since 2000-01-01 UTC, computed as sqlx binds it, so
    /// a bulk-written row equals one the live consumer writes.
    pub(crate) fn timestamptz(&mut self, t: DateTime<Utc>) -> Result<(), Error> {
        let micros = (t.naive_utc() - postgres_epoch())
            .num_microseconds()
            .ok_or_else(|| anyhow::anyhow!("time {t} is out of PostgreSQL's range"))?;
        self.int8(micros);
        Ok(())
    }

    /// A nullable `timestamptz` value.
    pub(crate) fn opt_timestamptz(&mut self, t: Option<DateTime<Utc>>) -> Result<(), Error> {
        match t {
            Some(t) => self.timestamptz(t),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    /// A `jsonb` value: format version 1, then the JSON text (as sqlx binds `Json<T>`).
    pub(crate) fn jsonb<T: Serialize>(&mut self, value: &T) -> Result<(), Error> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        self.buf.push(1);
        serde_json::to_writer(&mut self.buf, value)
            .map_err(|e| anyhow::anyhow!("cannot encode a tenant's state as JSON: {e}"))?;
        let n = i32::try_from(self.buf.len() - at - 4)
            .map_err(|_| anyhow::anyhow!("a tenant's state is too large for PostgreSQL"))?;
        self.buf[at..at + 4].copy_from_slice(&n.to_be_bytes());
        Ok(())
    }
}

fn postgres_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_as_postgres_reads_them() {
        let mut rows = CopyRows::default();
        rows.header();
        rows.row(5);
        rows.int8(-2);
        rows.text("é\t\\").unwrap();
        rows.opt_text(None).unwrap();
        rows.timestamptz(DateTime::from_timestamp(946_684_801, 2_500).unwrap())
            .unwrap();
        rows.jsonb(&serde_json::json!({"a": 1})).unwrap();
        rows.trailer();
        let mut want: Vec<u8> = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend([0; 8]);
        want.extend(5i16.to_be_bytes());
        want.extend(8i32.to_be_bytes());
        want.extend((-2i64).to_be_bytes());
        want.extend(4i32.to_be_bytes());
        want.extend("é\t\\".as_bytes());
        want.extend((-1i32).to_be_bytes());
        // One second and 2.5 µs after the PostgreSQL epoch: sub-microseconds are cut off.
        want.extend(8i32.to_be_bytes());
        want.extend(1_000_002i64.to_be_bytes());
        want.extend(8i32.to_be_bytes());
        want.push(1);
        want.extend(br#"{"a":1}"#);
        want.extend((-1i16).to_be_bytes());
        assert_eq!(rows.bytes(), want.as_slice());
    }
}
