//! Follows the plugin's log file (written on the node by every CNI call) and
//! copies new lines to the agent's stdout, so `kubectl logs` on the agent tells
//! what happened at pod creation. It also counts failed ADDs and DELs for the
//! metrics: the plugin logs each failure as
//! `<ts> ERROR [ADD <id>/<if> <ns>/<pod>] failed with code <n>: <msg>`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::metrics::CniErrors;

/// Which failure a log line reports, if any.
pub fn failed_command(line: &str) -> Option<&'static str> {
    let (_, rest) = line.split_once(" ERROR [")?;
    let (label, message) = rest.split_once("] ")?;
    if !message.starts_with("failed with code ") {
        return None;
    }
    match label.split(' ').next()? {
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

pub struct LogTail {
    path: PathBuf,
    /// (inode, offset) of what was read so far; `None` before the file exists.
    position: Option<(u64, u64)>,
    partial: Vec<u8>,
    counts: Arc<ErrorCounts>,
}

impl LogTail {
    pub fn new(path: PathBuf, counts: Arc<ErrorCounts>) -> Self {
        LogTail {
            path,
            position: None,
            partial: Vec::new(),
            counts,
        }
    }

    /// Counts the failures already in the file without copying its history,
    /// then follows from its end.
    pub fn start(&mut self) {
        let mut sink = std::io::sink();
        self.read_new(&mut sink);
    }

    /// Copies the lines written since the last call to `out`. A file that was
    /// replaced (new inode) or truncated is read again from its start.
    pub fn poll(&mut self, out: &mut impl Write) {
        self.read_new(out);
    }

    fn read_new(&mut self, out: &mut impl Write) {
        let Ok(mut file) = File::open(&self.path) else {
            return;
        };
        let Ok(meta) = file.metadata() else { return };
        let offset = match self.position {
            Some((inode, offset)) if inode == meta.ino() && offset <= meta.len() => offset,
            _ => {
                self.partial.clear();
                0
            }
        };
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return;
        }
        let mut new = Vec::new();
        let Ok(read) = file.read_to_end(&mut new) else {
            return;
        };
        self.position = Some((meta.ino(), offset + read as u64));
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

    #[test]
    fn recognises_failures() {
        let add = "2026-11-21T10:41:00.123Z ERROR [ADD 1a2b3c4d5e6f/eth0 default/web-0] failed with code 7: x";
        assert_eq!(failed_command(add), Some("ADD"));
        let del = "2026-11-21T10:41:00.123Z ERROR [DEL 1a2b3c4d5e6f/eth0] failed with code 11: y";
        assert_eq!(failed_command(del), Some("DEL"));
        for other in [
            "2026-11-21T10:41:00.123Z ERROR [ADD 1a2b/eth0 default/web-0] details:",
            "2026-11-21T10:41:00.123Z INFO [ADD 1a2b/eth0] failed with code 7: no",
            "2026-11-21T10:41:00.123Z ERROR [GC] failed with code 7: z",
        ] {
            assert_eq!(failed_command(other), None, "{other}");
        }
    }

    #[test]
    fn follows_appends_and_truncation() {
        let path = std::env::temp_dir().join(format!("meshlane-tail-{}", std::process::id()));
        let old = "t ERROR [ADD a/eth0] failed with code 7: old\n";
        std::fs::write(&path, old).unwrap();
        let counts = Arc::new(ErrorCounts::default());
        let mut tail = LogTail::new(path.clone(), counts.clone());
        tail.start();
        assert_eq!(counts.snapshot().add, 1, "history is counted");

        let mut out = Vec::new();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(
            b"t INFO [ADD b/eth0] captured\nt ERROR [DEL b/eth0] failed with code 11: x\npartial",
        )
        .unwrap();
        tail.poll(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "t INFO [ADD b/eth0] captured\nt ERROR [DEL b/eth0] failed with code 11: x\n"
        );
        assert_eq!(counts.snapshot(), CniErrors { add: 1, del: 1 });
        file.write_all(b" line\n").unwrap();
        out.clear();
        tail.poll(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), "partial line\n");

        std::fs::write(&path, "t INFO [DEL c/eth0] after truncation\n").unwrap();
        out.clear();
        tail.poll(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "t INFO [DEL c/eth0] after truncation\n"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
