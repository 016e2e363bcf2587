//! Minimal `--name value` command-line parsing.

use std::str::FromStr;

/// Parsed `--name value` pairs, checked against the names a tool accepts.
#[derive(Debug)]
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Parses the process arguments. `known` lists the accepted names
    /// (without `--`) with a one-line description each, for `--help`,
    /// which prints them and ends the process with status 0.
    pub fn parse(tool: &str, known: &[(&str, &str)]) -> Result<Args, String> {
        let usage = || {
            let mut u = format!("usage: {tool}");
            for (name, what) in known {
                u.push_str(&format!("\n  --{name} N  {what}"));
            }
            u
        };
        let mut pairs = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            if arg == "--help" || arg == "-h" {
                println!("{}", usage());
                std::process::exit(0);
            }
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}\n{}", usage()));
            };
            if !known.iter().any(|(k, _)| *k == name) {
                return Err(format!("unknown option --{name}\n{}", usage()));
            }
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            pairs.push((name.to_string(), value));
        }
        Ok(Args { pairs })
    }

    /// The value of `--name`, or `default`.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.pairs.iter().rev().find(|(k, _)| k == name) {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| format!("--{name}: cannot parse {v:?}")),
        }
    }

    /// The raw string value of `--name`, if given.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
