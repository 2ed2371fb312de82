//! The editor's work done by this process itself, when the bench's files are ours to touch: a
//! local runner without a `user` (the control plane runs as the bench's own user). It saves the
//! Python start-up (≈ 0.1 s of a pooled claim) and changes nothing else: the same host-side
//! locks (`flock` on `sites/.tenantry-<site>.lock`, as the `flock` program takes them), the same
//! ownership rule, the same rename, frappe's own `locks/site_config.lock`, and the same bytes
//! (`json.dumps(config, indent=1, sort_keys=True)`, `ensure_ascii` included). The sim suite
//! holds both paths to the same output.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{ConfigEdit, EditError};
use crate::bench::BenchError;
use crate::inspect::SiteConfig;
use crate::runner::lock_path;

const OP: &str = "edit-site-config";

/// Applies `edit` under `bench_dir`, waiting at most `wait` for frappe's own config lock.
pub(super) fn apply(bench_dir: &Path, edit: &ConfigEdit, wait: Duration) -> Result<(), EditError> {
    let mut held = Vec::new();
    held.push(host_lock(bench_dir, edit.site.as_str())?);
    if let Some(from) = &edit.rename_from {
        held.push(host_lock(bench_dir, from.as_str())?);
    }
    let sites = bench_dir.join("sites");
    let dst = sites.join(edit.site.as_str());
    if let Some(from) = &edit.rename_from
        && fs::symlink_metadata(&dst).is_err()
    {
        refuse(&sites, from.as_str(), edit)?;
        // Both names are locked above; nothing creates `dst` meanwhile.
        fs::rename(sites.join(from.as_str()), &dst).map_err(|e| fs_error(&dst, e))?;
    }
    refuse(&sites, edit.site.as_str(), edit)?;
    let locks = dst.join("locks");
    fs::create_dir_all(&locks).map_err(|e| fs_error(&locks, e))?;
    let lock_file = locks.join("site_config.lock");
    let frappe_lock = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&lock_file)
        .map_err(|e| fs_error(&lock_file, e))?;
    lock_within(&frappe_lock, &lock_file, wait)?;
    // Re-read under frappe's lock: a writer may have changed the file since the check.
    let mut config = read(&dst)?.ok_or_else(|| EditError::Missing(edit.site.to_string()))?;
    for (k, v) in &edit.set {
        config.insert(k.as_str().to_owned(), v.clone());
    }
    let tmp = dst.join(".site_config.json.tenantry");
    let mut f = File::create(&tmp).map_err(|e| fs_error(&tmp, e))?;
    f.write_all(&frappe_json(&Value::Object(config)))
        .and_then(|()| f.sync_all())
        .map_err(|e| fs_error(&tmp, e))?;
    let target = dst.join("site_config.json");
    fs::rename(&tmp, &target).map_err(|e| fs_error(&target, e))?;
    drop(frappe_lock);
    drop(held);
    Ok(())
}

/// The host-side lock of `site`, taken without waiting (as `flock -n` does).
fn host_lock(bench_dir: &Path, site: &str) -> Result<File, EditError> {
    let path = bench_dir.join(lock_path(site));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| fs_error(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(EditError::Bench(BenchError::Busy {
            op: OP,
            site: site.to_owned(),
        })),
        Err(TryLockError::Error(e)) => Err(fs_error(&path, e)),
    }
}

/// Frappe's lock is held only while it writes: wait for it, but not forever.
fn lock_within(file: &File, path: &Path, wait: Duration) -> Result<(), EditError> {
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(EditError::Bench(BenchError::Timeout {
                    op: OP,
                    after: wait,
                }));
            }
            Err(TryLockError::Error(e)) => return Err(fs_error(path, e)),
        }
    }
}

/// The editor's refusals: `name` missing, or not the caller's (reported, as the program
/// reports it, against the edited site).
fn refuse(sites: &Path, name: &str, edit: &ConfigEdit) -> Result<(), EditError> {
    let config = read(&sites.join(name))?.ok_or_else(|| EditError::Missing(name.to_owned()))?;
    let found = SiteConfig::from_map(&config);
    if edit.owner.accepts(&found) {
        return Ok(());
    }
    Err(EditError::NotOwned {
        site: edit.site.clone(),
        owner: found.markers(),
    })
}

fn read(dir: &Path) -> Result<Option<Map<String, Value>>, EditError> {
    let path = dir.join("site_config.json");
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fs_error(&path, e)),
    };
    match serde_json::from_slice(&text) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) | Err(_) => Err(EditError::Bench(BenchError::UnexpectedOutput {
            op: OP,
            detail: format!("{} is not a JSON object", path.display()),
        })),
    }
}

fn fs_error(path: &Path, source: io::Error) -> EditError {
    EditError::Bench(BenchError::Filesystem {
        op: OP,
        path: PathBuf::from(path),
        source,
    })
}

/// `json.dumps(value, indent=1, sort_keys=True)`: one-space indent, `": "` and `","`
/// separators, keys sorted at every level, everything outside printable ASCII as `\uXXXX`.
pub(crate) fn frappe_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiPretty::default());
    // Serialising a `Value` into a Vec cannot fail.
    let _ = sorted(value).serialize(&mut ser);
    out
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        v => v.clone(),
    }
}

/// serde_json's pretty printer with Python's `ensure_ascii`.
struct AsciiPretty(serde_json::ser::PrettyFormatter<'static>);

impl Default for AsciiPretty {
    fn default() -> Self {
        Self(serde_json::ser::PrettyFormatter::with_indent(b" "))
    }
}

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name<W: ?Sized + io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> io::Result<()> {
            self.0.$name(w $(, $arg)*)
        }
    )*};
}

impl serde_json::ser::Formatter for AsciiPretty {
    delegate! {
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object();
        end_object();
        begin_object_key(first: bool);
        begin_object_value();
        end_object_value();
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn output_is_what_pythons_json_dumps_writes() {
        let v = json!({
            "z": 1, "a": {"y": [1, 2, {}], "b": []}, "host_name": "http://é.example",
            "emoji": "😀", "del": "\u{7f}", "nl": "a\nb", "q": "\"\\", "f": 1.5, "t": true, "n": null
        });
        let text = String::from_utf8(frappe_json(&v)).expect("ascii");
        assert_eq!(
            text,
            "{\n \"a\": {\n  \"b\": [],\n  \"y\": [\n   1,\n   2,\n   {}\n  ]\n },\n \"del\": \"\\u007f\",\n \"emoji\": \"\\ud83d\\ude00\",\n \"f\": 1.5,\n \"host_name\": \"http://\\u00e9.example\",\n \"n\": null,\n \"nl\": \"a\\nb\",\n \"q\": \"\\\"\\\\\",\n \"t\": true,\n \"z\": 1\n}"
        );
    }
}
