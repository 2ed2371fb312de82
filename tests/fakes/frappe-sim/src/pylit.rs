//! Python-literal reading (what bench `eval`s for `--args`, `--kwargs` and `set-config --parse`)
//! and Python-style JSON writing (what bench prints: `json.dumps` with `", "` and `": "`).

use serde_json::{Map, Number, Value};

/// Parses a Python literal (None/True/False, numbers, quoted strings, lists, tuples, dicts,
/// parentheses, unary minus) into JSON. Anything else is an error, as `ast.literal_eval` would say.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected trailing text at offset {}", p.i));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        match self.peek() {
            None => Err("unexpected end of input".into()),
            Some(b'[') => {
                self.i += 1;
                self.seq(b']').map(Value::Array)
            }
            Some(b'(') => {
                self.i += 1;
                let items = self.seq(b')')?;
                // `(x)` is x; `(x,)` and `(x, y)` are tuples (rendered as lists).
                let text = std::str::from_utf8(&self.s[..self.i]).unwrap_or_default();
                if items.len() == 1 && !text.trim_end_matches(')').trim_end().ends_with(',') {
                    Ok(items.into_iter().next().unwrap_or(Value::Null))
                } else {
                    Ok(Value::Array(items))
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut map = Map::new();
                if self.eat(b'}') {
                    return Ok(Value::Object(map));
                }
                loop {
                    let key = match self.value()? {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        other => return Err(format!("unsupported dict key {other}")),
                    };
                    if !self.eat(b':') {
                        return Err("expected ':'".into());
                    }
                    let v = self.value()?;
                    map.insert(key, v);
                    if self.eat(b',') {
                        if self.eat(b'}') {
                            break;
                        }
                        continue;
                    }
                    if self.eat(b'}') {
                        break;
                    }
                    return Err("expected ',' or '}'".into());
                }
                Ok(Value::Object(map))
            }
            Some(q @ (b'"' | b'\'')) => self.string(q).map(Value::String),
            Some(b'-') => {
                self.i += 1;
                match self.value()? {
                    Value::Number(n) => {
                        if let Some(i) = n.as_i64() {
                            Ok(Value::Number((-i).into()))
                        } else {
                            Number::from_f64(-n.as_f64().unwrap_or(0.0))
                                .map(Value::Number)
                                .ok_or_else(|| "bad number".into())
                        }
                    }
                    _ => Err("unary minus on a non-number".into()),
                }
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => self.number(),
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
                {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"None" => Ok(Value::Null),
                    b"True" => Ok(Value::Bool(true)),
                    b"False" => Ok(Value::Bool(false)),
                    other => Err(format!(
                        "name '{}' is not defined",
                        String::from_utf8_lossy(other)
                    )),
                }
            }
        }
    }

    fn seq(&mut self, close: u8) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.value()?);
            if self.eat(b',') {
                if self.eat(close) {
                    break;
                }
                continue;
            }
            if self.eat(close) {
                break;
            }
            return Err("expected ',' or a closing bracket".into());
        }
        Ok(items)
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_digit() || b".eE+-_".contains(&self.s[self.i]))
        {
            // A '+'/'-' only belongs to the number right after an exponent marker.
            if matches!(self.s[self.i], b'+' | b'-') && !matches!(self.s[self.i - 1], b'e' | b'E') {
                break;
            }
            self.i += 1;
        }
        let text: String = String::from_utf8_lossy(&self.s[start..self.i]).replace('_', "");
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("invalid number {text}"))
    }

    fn string(&mut self, quote: u8) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("unterminated string".into());
            };
            self.i += 1;
            if c == quote {
                return Ok(out);
            }
            if c != b'\\' {
                // Copy a whole UTF-8 character.
                let start = self.i - 1;
                let len = utf8_len(c);
                let end = (start + len).min(self.s.len());
                out.push_str(&String::from_utf8_lossy(&self.s[start..end]));
                self.i = end;
                continue;
            }
            let Some(e) = self.peek() else {
                return Err("unterminated escape".into());
            };
            self.i += 1;
            match e {
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'0' => out.push('\0'),
                b'\\' => out.push('\\'),
                b'\'' => out.push('\''),
                b'"' => out.push('"'),
                b'x' => out.push(self.hex(2)?),
                b'u' => out.push(self.hex(4)?),
                b'U' => out.push(self.hex(8)?),
                other => {
                    out.push('\\');
                    out.push(other as char);
                }
            }
        }
    }

    fn hex(&mut self, n: usize) -> Result<char, String> {
        let digits = self.s.get(self.i..self.i + n).ok_or("truncated escape")?;
        self.i += n;
        let code = u32::from_str_radix(std::str::from_utf8(digits).map_err(|e| e.to_string())?, 16)
            .map_err(|e| e.to_string())?;
        char::from_u32(code).ok_or_else(|| "invalid code point".into())
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// `json.dumps(value)` with Python's default separators.
pub fn dumps(value: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, PyFormatter);
    serde::Serialize::serialize(value, &mut ser).unwrap_or_default();
    String::from_utf8(buf).unwrap_or_default()
}

struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// `json.dumps(value, indent=1, sort_keys=True)`, as frappe writes site_config.json.
pub fn dumps_config(value: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b" "),
    );
    serde::Serialize::serialize(value, &mut ser).unwrap_or_default();
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals() {
        assert_eq!(
            parse(r#"["Administrator"]"#).unwrap(),
            json!(["Administrator"])
        );
        assert_eq!(
            parse(r#"{"user": 'a@b.c'}"#).unwrap(),
            json!({"user": "a@b.c"})
        );
        assert_eq!(parse("5").unwrap(), json!(5));
        assert_eq!(parse("(-5)").unwrap(), json!(-5));
        assert_eq!(parse("(1, 2)").unwrap(), json!([1, 2]));
        assert_eq!(parse("1.5e3").unwrap(), json!(1500.0));
        assert_eq!(
            parse(r#"{"a": 1, "b": [1, 2]}"#).unwrap(),
            json!({"a": 1, "b": [1, 2]})
        );
        assert_eq!(
            parse(r#""q\"\\\x0a\xe9\U0001f600""#).unwrap(),
            json!("q\"\\\n\u{e9}\u{1F600}")
        );
        assert_eq!(
            parse("[True, False, None]").unwrap(),
            json!([true, false, null])
        );
        assert!(parse("[cli.user@example.com]").is_err());
        assert!(parse("__import__('os')").is_err());
        assert!(parse(r#""a" + "b""#).is_err());
    }

    #[test]
    fn python_json() {
        assert_eq!(dumps(&json!({"api_secret": "x"})), r#"{"api_secret": "x"}"#);
        assert_eq!(dumps(&json!(["a", "b"])), r#"["a", "b"]"#);
        assert_eq!(
            dumps_config(&json!({"b": 1, "a": [1, 2]})),
            "{\n \"a\": [\n  1,\n  2\n ],\n \"b\": 1\n}"
        );
    }
}
