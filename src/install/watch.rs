//! What wakes the agent: a change in the net.d dir (inotify), SIGTERM/SIGINT
//! (signalfd), or the periodic re-check. One `poll(2)` waits for all three, so
//! the agent needs no extra thread and no signal handler.
//!
//! inotify tells within milliseconds that the primary CNI rewrote its config;
//! the periodic re-check still runs because inotify can miss changes (a dir
//! replaced wholesale, a bind mount swapped under us, a queue overflow).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::error::InstallError;

/// Writers often touch a file several times (create, write, rename): wait this
/// long after the first event and take them all as one change.
const SETTLE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something in the watched dir changed.
    Changed,
    /// The re-check interval passed.
    Timeout,
    /// SIGTERM or SIGINT: stop (and leave everything in place).
    Terminate(Signal),
}

pub struct Watcher {
    dir: PathBuf,
    inotify: Inotify,
    watch: Option<WatchDescriptor>,
    signals: SignalFd,
}

fn nix_err(action: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> InstallError {
    let path = path.to_path_buf();
    move |errno| InstallError::Io {
        action,
        path,
        source: errno.into(),
    }
}

impl Watcher {
    /// Blocks SIGTERM and SIGINT for the calling thread and the threads it
    /// starts afterwards (call it before spawning any), so they are only ever
    /// read from the signalfd.
    pub fn new(dir: &Path) -> Result<Self, InstallError> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGINT);
        mask.thread_block()
            .map_err(nix_err("blocking signals for", Path::new("signalfd")))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(nix_err("creating", Path::new("signalfd")))?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(nix_err("creating inotify for", dir))?;
        let mut watcher = Watcher {
            dir: dir.to_path_buf(),
            inotify,
            watch: None,
            signals,
        };
        watcher.ensure_watch();
        Ok(watcher)
    }

    /// (Re-)adds the watch on the dir; false while the dir does not exist.
    fn ensure_watch(&mut self) -> bool {
        if self.watch.is_some() {
            return true;
        }
        let flags = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        self.watch = self.inotify.add_watch(&self.dir, flags).ok();
        self.watch.is_some()
    }

    fn drain_events(&mut self) {
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for event in events {
                // The dir itself went away: watch it again once it is back.
                if event.mask.intersects(
                    AddWatchFlags::IN_IGNORED
                        | AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF,
                ) {
                    self.watch = None;
                }
            }
        }
    }

    /// Waits up to `timeout` for a change or a signal.
    pub fn wait(&mut self, timeout: Duration) -> Result<Wake, InstallError> {
        if !self.ensure_watch() {
            // No dir to watch yet: a short sleep-and-recheck stands in for it.
            let timeout = timeout.min(Duration::from_secs(1));
            return self.wait_signal_only(timeout);
        }
        let poll_timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let ready = {
            let mut fds = [
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, poll_timeout) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(Wake::Timeout),
                Ok(_) => (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false)),
                Err(errno) => return Err(nix_err("polling", &self.dir)(errno)),
            }
        };
        if ready.0 {
            if let Some(signal) = self.read_signal() {
                return Ok(Wake::Terminate(signal));
            }
        }
        if ready.1 {
            std::thread::sleep(SETTLE);
            self.drain_events();
            return Ok(Wake::Changed);
        }
        Ok(Wake::Timeout)
    }

    fn wait_signal_only(&mut self, timeout: Duration) -> Result<Wake, InstallError> {
        let poll_timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, poll_timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => Ok(Wake::Timeout),
            Ok(_) => Ok(self.read_signal().map_or(Wake::Timeout, Wake::Terminate)),
            Err(errno) => Err(nix_err("polling", &self.dir)(errno)),
        }
    }

    fn read_signal(&mut self) -> Option<Signal> {
        let info = self.signals.read_signal().ok()??;
        Signal::try_from(info.ssi_signo as i32).ok()
    }
}
