//! Follows the plugin's log file (written on the node by every CNI call) and
//! copies new lines to the agent's stdout, so `kubectl logs` on the agent tells
//! what happened at pod creation. It also counts failed ADDs and DELs for the
//! metrics by the records' fields, never by their text: a failed call is the
//! record with a `code` field (`plugin::logged`), its `command` field says which.
//!
//! The plugin rotates its file by size (`log::file`): the tail keeps the file
//! it follows open, reads it to its end when the path names a new file, and
//! then moves to the new one, so no line written before the rename is lost.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::log::line::{self, field};

use super::metrics::CniErrors;

/// Which failed CNI call a log line records, if any.
pub fn failed_command(text: &str) -> Option<&'static str> {
    let fields = line::parse(text)?;
    field(&fields, "code")?;
    match field(&fields, "command")? {
        "ADD" => Some("ADD"),
        "DEL" => Some("DEL"),
        _ => None,
    }
}

/// Failure counts shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct ErrorCounts {
    add: AtomicU64,
    del: AtomicU64,
}

impl ErrorCounts {
    pub fn snapshot(&self) -> CniErrors {
        CniErrors {
            add: self.add.load(Ordering::Relaxed),
            del: self.del.load(Ordering::Relaxed),
        }
    }

    fn count(&self, line: &str) {
        match failed_command(line) {
            Some("ADD") => self.add.fetch_add(1, Ordering::Relaxed),
            Some("DEL") => self.del.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// The file being followed and how far it was read.
struct Followed {
    file: File,
    inode: (u64, u64),
    offset: u64,
}

pub struct LogTail {
    path: PathBuf,
    followed: Option<Followed>,
    partial: Vec<u8>,
    counts: Arc<ErrorCounts>,
}

impl LogTail {
    pub fn new(path: PathBuf, counts: Arc<ErrorCounts>) -> Self {
        LogTail {
            path,
            followed: None,
            partial: Vec::new(),
            counts,
        }
    }

    /// Counts the failures already in the file without copying its history,
    /// then follows from its end.
    pub fn start(&mut self) {
        let mut sink = std::io::sink();
        self.poll(&mut sink);
    }

    /// Copies the lines written since the last call to `out`. A file that was
    /// replaced (rotated) is read to its end first, then the new one from its
    /// start; a truncated one is read again from its start.
    pub fn poll(&mut self, out: &mut impl Write) {
        let at_path = std::fs::metadata(&self.path)
            .ok()
            .map(|m| ((m.dev(), m.ino()), m.len()));
        let same_file =
            matches!((&self.followed, at_path), (Some(f), Some((inode, _))) if f.inode == inode);
        if !same_file {
            // Whatever the old file got before the rename.
            self.read_followed(out);
            self.followed = File::open(&self.path).ok().and_then(|file| {
                let meta = file.metadata().ok()?;
                Some(Followed {
                    file,
                    inode: (meta.dev(), meta.ino()),
                    offset: 0,
                })
            });
            self.partial.clear();
        } else if let (Some(followed), Some((_, len))) = (&mut self.followed, at_path) {
            if len < followed.offset {
                followed.offset = 0;
                self.partial.clear();
            }
        }
        self.read_followed(out);
    }

    fn read_followed(&mut self, out: &mut impl Write) {
        let Some(followed) = &mut self.followed else {
            return;
        };
        if followed
            .file
            .seek(SeekFrom::Start(followed.offset))
            .is_err()
        {
            return;
        }
        let mut new = Vec::new();
        let Ok(read) = followed.file.read_to_end(&mut new) else {
            return;
        };
        followed.offset += read as u64;
        self.partial.extend_from_slice(&new);
        let Some(last_newline) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=last_newline).collect();
        let text = String::from_utf8_lossy(&complete);
        for line in text.lines() {
            self.counts.count(line);
        }
        let _ = out.write_all(&complete);
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{line::render, Format, Level};

    fn record(format: Format, command: &str, failed: bool) -> String {
        let mut fields = vec![
            ("command", command.to_owned()),
            ("container_id", "1a2b3c".to_owned()),
        ];
        if failed {
            fields.push(("code", "7".to_owned()));
        }
        let level = if failed { Level::Error } else { Level::Info };
        format!(
            "{}\n",
            render(format, "t", level, "failed with code 7 x", &fields)
        )
    }

    #[test]
    fn recognises_failures_by_fields_in_both_formats() {
        for format in [Format::Logfmt, Format::Json] {
            assert_eq!(failed_command(&record(format, "ADD", true)), Some("ADD"));
            assert_eq!(failed_command(&record(format, "DEL", true)), Some("DEL"));
            // The words of a message never count.
            assert_eq!(failed_command(&record(format, "ADD", false)), None);
            assert_eq!(failed_command(&record(format, "GC", true)), None);
        }
        assert_eq!(
            failed_command("2026-11-21T10:41:00.123Z ERROR [ADD 1a2b/eth0] failed with code 7: x"),
            None
        );
    }

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("meshlane-tail-{}-{name}", std::process::id()))
    }

    #[test]
    fn follows_appends_and_truncation() {
        let path = scratch("append");
        std::fs::write(&path, record(Format::Logfmt, "ADD", true)).unwrap();
        let counts = Arc::new(ErrorCounts::default());
        let mut tail = LogTail::new(path.clone(), counts.clone());
        tail.start();
        assert_eq!(counts.snapshot().add, 1, "history is counted");

        let mut out = Vec::new();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let two = record(Format::Logfmt, "ADD", false) + &record(Format::Json, "DEL", true);
        file.write_all(format!("{two}partial").as_bytes()).unwrap();
        tail.poll(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), two);
        assert_eq!(counts.snapshot(), CniErrors { add: 1, del: 1 });
        file.write_all(b" line\n").unwrap();
        out.clear();
        tail.poll(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), "partial line\n");

        std::fs::write(&path, "after truncation\n").unwrap();
        out.clear();
        tail.poll(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), "after truncation\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn follows_the_plugin_across_a_rotation() {
        let path = scratch("rotate");
        let _ = std::fs::remove_file(crate::log::file::rotated_path(&path));
        let mut log = crate::log::file::LogFile::open(&path, 200).unwrap();
        let counts = Arc::new(ErrorCounts::default());
        let mut tail = LogTail::new(path.clone(), counts.clone());
        tail.start();
        let mut out = Vec::new();
        let mut written = String::new();
        for i in 0..6 {
            let line = record(Format::Logfmt, "ADD", i % 2 == 0);
            log.write_line(&line).unwrap();
            written.push_str(&line);
            if i == 2 {
                tail.poll(&mut out);
            }
        }
        assert!(crate::log::file::rotated_path(&path).exists(), "rotated");
        tail.poll(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), written, "no line lost");
        assert_eq!(counts.snapshot().add, 3);
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(crate::log::file::rotated_path(&path)).unwrap();
    }
}
