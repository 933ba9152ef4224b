//! The standard `process_*` metrics every Prometheus client library exports
//! (start time, CPU seconds, resident and virtual memory, open and maximum
//! file descriptors), read from `/proc/self` the way the Go and Python clients
//! read them, so dashboards built for any exporter work on the agent.

use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: f64,
    pub open_fds: u64,
    /// The soft limit (`None`: unlimited).
    pub max_fds: Option<u64>,
}

/// Fields of `/proc/<pid>/stat` after the command name, which may itself hold
/// spaces and parentheses: it ends at the last `)`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The soft "Max open files" of `/proc/<pid>/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Pure: the stats from the files' texts, the clock tick rate and page size.
pub fn parse(
    stat: &str,
    proc_stat: &str,
    limits: &str,
    open_fds: u64,
    ticks_per_second: u64,
    page_size: u64,
) -> Option<ProcessStats> {
    let fields = stat_fields(stat)?;
    // After the name: state is field 3 of proc(5), so field n is fields[n - 3].
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = ticks_per_second.max(1) as f64;
    let (utime, stime, starttime) = (field(14)?, field(15)?, field(22)?);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page_size),
        start_time_seconds: boot_time(proc_stat)? as f64 + starttime as f64 / ticks,
        open_fds,
        max_fds: max_open_files(limits),
    })
}

/// This process's stats (`None` when /proc cannot be read).
pub fn read_self() -> Option<ProcessStats> {
    let proc = Path::new("/proc");
    let read = |path: &str| std::fs::read_to_string(proc.join(path)).ok();
    let open_fds = std::fs::read_dir(proc.join("self/fd")).ok()?.count() as u64;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    parse(
        &read("self/stat")?,
        &read("stat")?,
        &read("self/limits").unwrap_or_default(),
        // read_dir's own descriptor was open while it listed.
        open_fds.saturating_sub(1),
        u64::try_from(ticks).unwrap_or(100),
        u64::try_from(page).unwrap_or(4096),
    )
}

/// The families, in the exposition format: name, type, help, value.
pub fn render(out: &mut String, stats: &ProcessStats) {
    let families = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            Some(stats.cpu_seconds.to_string()),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            Some(stats.resident_bytes.to_string()),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            Some(stats.virtual_bytes.to_string()),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            Some(stats.start_time_seconds.to_string()),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            Some(stats.open_fds.to_string()),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            stats.max_fds.map(|max| max.to_string()),
        ),
    ];
    for (name, kind, help, value) in families {
        // A limit the process does not have is left out, not reported as 0.
        let Some(value) = value else { continue };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (mesh lane) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                        250 50 0 0 20 0 3 0 12345 104857600 2560 18446744073709551615";

    #[test]
    fn parses_proc_files() {
        let stats = parse(
            STAT,
            "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n",
            "Limit Soft Hard Units\nMax open files            1048576              1048576              files\n",
            9,
            100,
            4096,
        )
        .unwrap();
        assert_eq!(stats.cpu_seconds, 3.0);
        assert_eq!(stats.virtual_bytes, 104_857_600);
        assert_eq!(stats.resident_bytes, 2560 * 4096);
        assert_eq!(stats.start_time_seconds, 1_700_000_000.0 + 123.45);
        assert_eq!(stats.open_fds, 9);
        assert_eq!(stats.max_fds, Some(1_048_576));
        assert_eq!(
            max_open_files("Max open files unlimited unlimited files"),
            None
        );
        assert!(parse("garbage", "", "", 0, 100, 4096).is_none());
    }

    #[test]
    fn reads_this_process() {
        let stats = read_self().expect("/proc/self");
        assert!(stats.resident_bytes > 0);
        assert!(stats.open_fds >= 3, "{stats:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(stats.start_time_seconds <= now + 1.0 && stats.start_time_seconds > now - 3600.0);
        let mut text = String::new();
        render(&mut text, &stats);
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(text.contains("process_open_fds "));
    }
}
