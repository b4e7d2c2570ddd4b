//! `--flag value` pairs from the command line, taken one by one as the parser asks for them,
//! so that whatever is left over is an unknown flag.

use crate::cli::usage;
use crate::error::Result;
use std::net::{SocketAddr, ToSocketAddrs};

/// Flags that take no value.
const SWITCHES: [&str; 3] = ["--help", "-h", "--at-prompt"];

/// `--flag value` / `--flag=value` pairs, consumed as they are looked up.
pub struct Flags {
    pairs: Vec<(String, Option<String>)>,
}

impl Flags {
    pub fn split(args: &[String]) -> Result<Flags> {
        let mut pairs = Vec::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            if !a.starts_with('-') {
                return Err(usage(&format!("unexpected argument {a:?}")));
            }
            if let Some((k, v)) = a.split_once('=') {
                pairs.push((k.to_owned(), Some(v.to_owned())));
            } else if SWITCHES.contains(&a.as_str()) {
                pairs.push((a.clone(), None));
            } else {
                let v = it
                    .next()
                    .ok_or_else(|| usage(&format!("{a} needs a value")))?;
                pairs.push((a.clone(), Some(v.clone())));
            }
        }
        Ok(Flags { pairs })
    }

    pub fn take_switch(&mut self, name: &str) -> bool {
        let before = self.pairs.len();
        self.pairs.retain(|(k, _)| k != name);
        self.pairs.len() != before
    }

    pub fn take(&mut self, name: &str) -> Option<String> {
        let mut found = None;
        self.pairs.retain(|(k, v)| {
            if k == name {
                found = v.clone();
                false
            } else {
                true
            }
        });
        found
    }

    pub fn num<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| usage(&format!("{name}: {v:?} is not a valid number"))),
        }
    }

    pub fn required<T: std::str::FromStr>(&mut self, name: &str) -> Result<T> {
        self.num(name)?
            .ok_or_else(|| usage(&format!("{name} is required")))
    }

    /// Every value of a flag that may be given several times, each possibly a comma list.
    pub fn take_all(&mut self, name: &str) -> Vec<String> {
        let mut found = Vec::new();
        self.pairs.retain(|(k, v)| {
            if k != name {
                return true;
            }
            let v = v.as_deref().unwrap_or_default();
            found.extend(v.split(',').map(|p| p.trim().to_owned()));
            false
        });
        found
    }

    pub fn list<T: std::str::FromStr>(&mut self, name: &str) -> Result<Vec<T>> {
        self.take_all(name)
            .into_iter()
            .map(|v| {
                v.parse()
                    .map_err(|_| usage(&format!("{name}: {v:?} is not a valid number")))
            })
            .collect()
    }

    pub fn addrs(&mut self) -> Result<Vec<SocketAddr>> {
        let mut texts = self.take_all("--addr");
        if texts.is_empty() {
            texts.push("127.0.0.1:6677".into());
        }
        texts.iter().map(|t| loopback_addr(t)).collect()
    }

    pub fn finish(self) -> Result<()> {
        match self.pairs.first() {
            Some((k, _)) => Err(usage(&format!("unknown or repeated flag {k}"))),
            None => Ok(()),
        }
    }
}

fn loopback_addr(text: &str) -> Result<SocketAddr> {
    let addr = text
        .to_socket_addrs()
        .map_err(|e| usage(&format!("--addr {text}: {e}")))?
        .next()
        .ok_or_else(|| usage(&format!("--addr {text}: no address")))?;
    if !addr.ip().is_loopback() {
        return Err(usage(&format!(
            "--addr {text}: natter-load only targets loopback addresses"
        )));
    }
    Ok(addr)
}
