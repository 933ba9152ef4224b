//! The plugin's log file on the node, rotated by size: every CNI call appends
//! to it, nothing else would ever trim it, and a node lives for months.
//!
//! When a write would take the file past its limit, the file is renamed to
//! `<file>.1` (replacing the previous one) and a new one is started: at most
//! twice the limit on disk. Many plugin processes write at once (kubelet runs
//! ADDs in parallel), so the rename happens under an exclusive `flock` on the
//! open file and only if the path still names that file: two writers that both
//! see a full file rotate it once, not twice (which would lose `<file>.1`).
//! The agent follows the file across the rename (`install::log_tail`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The default limit of one file (the plugin's `logMaxBytes`).
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;

pub struct LogFile {
    path: PathBuf,
    /// 0: never rotated.
    max_bytes: u64,
    file: File,
}

/// The mode a new log file gets: the log names pods and their errors, which
/// other users of the node have no business reading.
pub const FILE_MODE: u32 = 0o640;

fn open_append(path: &Path) -> std::io::Result<File> {
    // Readable too: `ends_mid_line` reads the last byte.
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
}

/// `<file>.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

impl LogFile {
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<LogFile> {
        // The directory is made only when the open says it is missing: every CNI
        // call opens the log, and the directory is there for all but the first.
        let file = match open_append(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                open_append(path)?
            }
            opened => opened?,
        };
        Ok(LogFile {
            path: path.to_path_buf(),
            max_bytes,
            file,
        })
    }

    /// Appends one line (with its newline), rotating first when it would not fit.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let mut size = self.file.metadata()?.len();
        if self.max_bytes > 0 && size > 0 && size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
            size = self.file.metadata()?.len();
        }
        // One write call per line: O_APPEND keeps concurrent writers' lines whole.
        if self.ends_mid_line(size)? {
            // A full disk cut the last record short (ENOSPC half-way through
            // its write): this one starts a line of its own instead of
            // finishing that one.
            let mut whole = String::with_capacity(line.len() + 1);
            whole.push('\n');
            whole.push_str(line);
            return self.file.write_all(whole.as_bytes());
        }
        self.file.write_all(line.as_bytes())
    }

    fn ends_mid_line(&self, size: u64) -> std::io::Result<bool> {
        if size == 0 {
            return Ok(false);
        }
        let mut last = [0u8; 1];
        self.file.read_exact_at(&mut last, size - 1)?;
        Ok(last[0] != b'\n')
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let ours = self.file.try_clone()?;
        let locked = Flock::lock(ours, FlockArg::LockExclusive)
            .map_err(|(_, errno)| std::io::Error::from(errno))?;
        let current = locked.metadata()?;
        let still_ours = std::fs::metadata(&self.path)
            .is_ok_and(|at_path| at_path.ino() == current.ino() && at_path.dev() == current.dev());
        if still_ours && current.len() > 0 {
            std::fs::rename(&self.path, rotated_path(&self.path))?;
        }
        // Whoever rotated, the path now names the file to write to.
        self.file = open_append(&self.path)?;
        drop(locked);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::{scratch, ScratchDir};
    use std::os::unix::fs::PermissionsExt;

    /// `cni.log` in a fresh scratch directory, which goes when the test ends.
    fn scratch_log(label: &str) -> (ScratchDir, PathBuf) {
        let dir = scratch(label);
        let path = dir.join("cni.log");
        (dir, path)
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[test]
    fn rotates_at_the_limit_and_keeps_one_old_file() {
        let (_dir, path) = scratch_log("limit");
        let mut log = LogFile::open(&path, 100).unwrap();
        let line = format!("{}\n", "x".repeat(39)); // 40 bytes
        for _ in 0..2 {
            log.write_line(&line).unwrap();
        }
        assert_eq!(size(&path), 80);
        log.write_line(&line).unwrap();
        assert_eq!(size(&path), 40, "rotated");
        assert_eq!(size(&rotated_path(&path)), 80);
        // 80, then a second rotation: never more than the limit in one file.
        for _ in 0..2 {
            log.write_line(&line).unwrap();
        }
        assert_eq!(size(&path), 40);
        assert_eq!(size(&rotated_path(&path)), 80);
        for file in [path.clone(), rotated_path(&path)] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, FILE_MODE, "{}", file.display());
        }
    }

    #[test]
    fn two_writers_rotate_once() {
        let (_dir, path) = scratch_log("two");
        let mut a = LogFile::open(&path, 100).unwrap();
        let mut b = LogFile::open(&path, 100).unwrap();
        a.write_line(&"a".repeat(95)).unwrap();
        // Both see a full file; a rotates, b finds the path renamed under it
        // and writes into the new file instead of rotating again.
        a.write_line("first\n").unwrap();
        b.write_line("second\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nsecond\n");
        assert_eq!(
            std::fs::read_to_string(rotated_path(&path)).unwrap(),
            "a".repeat(95)
        );
    }

    #[test]
    fn zero_never_rotates() {
        let (_dir, path) = scratch_log("zero");
        let mut log = LogFile::open(&path, 0).unwrap();
        for _ in 0..10 {
            log.write_line(&"y".repeat(100)).unwrap();
        }
        assert!(!rotated_path(&path).exists());
    }

    #[test]
    fn a_record_after_one_cut_short_starts_its_own_line() {
        let (_dir, path) = scratch_log("cut");
        std::fs::write(&path, "whole\ncut sh").unwrap();
        let mut log = LogFile::open(&path, 0).unwrap();
        log.write_line("next\n").unwrap();
        log.write_line("last\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "whole\ncut sh\nnext\nlast\n"
        );
    }

    #[test]
    fn a_missing_directory_is_made_on_open() {
        let dir = scratch("nested");
        let path = dir.join("a/b/cni.log");
        let mut log = LogFile::open(&path, 0).unwrap();
        log.write_line("first\n").unwrap();
        // And an existing one is simply used.
        let mut again = LogFile::open(&path, 0).unwrap();
        again.write_line("second\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nsecond\n");
    }
}
