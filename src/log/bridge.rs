//! The `log` crate's records — rustls's, ureq's and the netlink crates' — go
//! into meshlane's own log stream, with the crate's target as `source`, so an
//! operator sees one format and one place whichever code wrote the line.

use super::Level;

struct Bridge;

static BRIDGE: Bridge = Bridge;

fn level_of(level: log::Level) -> Level {
    match level {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug | log::Level::Trace => Level::Debug,
    }
}

fn filter_of(level: Level) -> log::LevelFilter {
    match level {
        Level::Debug => log::LevelFilter::Debug,
        Level::Info => log::LevelFilter::Info,
        Level::Warn => log::LevelFilter::Warn,
        Level::Error => log::LevelFilter::Error,
    }
}

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        super::enabled(level_of(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = level_of(record.level());
        if super::enabled(level) {
            super::emit(
                level,
                &record.args().to_string(),
                &[("source", &record.target())],
            );
        }
    }

    fn flush(&self) {}
}

/// Installs the bridge once per process; records below `level` are dropped
/// before they are formatted.
pub fn install(level: Level) {
    if log::set_logger(&BRIDGE).is_ok() {
        log::set_max_level(filter_of(level));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_both_ways() {
        assert_eq!(level_of(log::Level::Trace), Level::Debug);
        assert_eq!(level_of(log::Level::Warn), Level::Warn);
        assert_eq!(filter_of(Level::Error), log::LevelFilter::Error);
    }
}
