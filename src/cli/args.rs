//! A tiny argument reader: a command, then `--flag value` options.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::datapath::{PinLayout, DEFAULT_PIN_ROOT};

pub struct Args {
    rest: Vec<String>,
}

impl Args {
    pub fn new(argv: Vec<String>) -> Self {
        Args {
            rest: argv.into_iter().skip(1).collect(),
        }
    }

    pub fn command(&mut self) -> Option<String> {
        (!self.rest.is_empty()).then(|| self.rest.remove(0))
    }

    /// Takes `--name VALUE` (or `--name=VALUE`) out of the arguments.
    pub fn option(&mut self, name: &str) -> Result<Option<String>> {
        let flag = format!("--{name}");
        let prefix = format!("{flag}=");
        if let Some(index) = self.rest.iter().position(|arg| arg.starts_with(&prefix)) {
            let arg = self.rest.remove(index);
            return Ok(Some(arg[prefix.len()..].to_owned()));
        }
        if let Some(index) = self.rest.iter().position(|arg| *arg == flag) {
            if index + 1 >= self.rest.len() {
                bail!("{flag} needs a value");
            }
            self.rest.remove(index);
            return Ok(Some(self.rest.remove(index)));
        }
        Ok(None)
    }

    pub fn layout(&mut self) -> Result<PinLayout> {
        let root = self
            .option("bpffs-root")?
            .unwrap_or_else(|| DEFAULT_PIN_ROOT.to_owned());
        Ok(PinLayout::new(PathBuf::from(root)))
    }

    /// Fails on anything left over (a typo must not be ignored).
    pub fn finish(&self) -> Result<()> {
        if let Some(extra) = self.rest.first() {
            bail!("unexpected argument {extra:?}");
        }
        Ok(())
    }
}
