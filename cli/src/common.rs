//! Pieces shared by the CLI commands: connection options and argument parsers.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use client::{Client, ClientConfig, TopicMetadata, BOOTSTRAP_DEFAULT};

#[derive(clap::Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Address of a broker to bootstrap from.
    #[arg(short = 'b', long = "bootstrap-server", default_value = BOOTSTRAP_DEFAULT)]
    pub bootstrap_server: String,
}

impl ConnectionArgs {
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            client_id: format!("sluice-cli-{}", std::process::id()),
            ..ClientConfig::default()
        }
    }

    pub fn connect(&self) -> anyhow::Result<Client> {
        Client::connect_with(&self.bootstrap_server, self.client_config())
            .with_context(|| format!("cannot reach a broker at {}", self.bootstrap_server))
    }

    /// A connection to the coordinator of `group_id`.
    pub fn connect_coordinator(&self, group_id: &str) -> anyhow::Result<Client> {
        Client::connect_coordinator(&self.bootstrap_server, group_id, self.client_config())
            .with_context(|| {
                format!(
                    "cannot reach the coordinator of group {group_id:?} via {}",
                    self.bootstrap_server
                )
            })
    }
}

/// Set by SIGINT or SIGTERM once `watch_interrupts` ran, so a long-running command can stop
/// cleanly (commit, leave its group) instead of dying mid-request.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn watch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub fn is_interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Rows under headers, each column padded to its widest cell, one line each.
pub fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in rows {
        assert_eq!(row.len(), headers.len(), "one cell per column");
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut table = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        table.push_str(padded.join("  ").trim_end());
        table.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    table
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing stdout"),
    }
}

/// Metadata of one existing topic, or a clear error if it does not exist.
pub fn topic_metadata(client: &mut Client, topic: &str) -> anyhow::Result<TopicMetadata> {
    let metadata = client.metadata(Some(&[topic]))?;
    let topic_metadata = metadata
        .topic(topic)
        .with_context(|| format!("broker did not describe topic {topic:?}"))?;
    if let Some(error) = topic_metadata.error() {
        let name = client::error::error_name(error);
        anyhow::bail!("topic {topic:?}: {name}");
    }
    anyhow::ensure!(
        !topic_metadata.partitions.is_empty(),
        "topic {topic:?} has no partitions"
    );
    Ok(topic_metadata.clone())
}

/// Parses `key=value` (the value may contain `=`).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected key=value, got {text:?}")),
    }
}

/// Turns the escapes `\t`, `\n`, `\r`, `\0` and `\\` into the characters they name, so a TAB
/// separator can be given as `--key-separator '\t'`.
pub fn parse_separator(text: &str) -> Result<String, String> {
    let mut separator = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            separator.push(character);
            continue;
        }
        match characters.next() {
            Some('t') => separator.push('\t'),
            Some('n') => separator.push('\n'),
            Some('r') => separator.push('\r'),
            Some('0') => separator.push('\0'),
            Some('\\') | None => separator.push('\\'),
            Some(other) => {
                separator.push('\\');
                separator.push(other);
            }
        }
    }
    if separator.is_empty() {
        return Err("the separator must not be empty".to_owned());
    }
    Ok(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_unescape() {
        assert_eq!(parse_separator("\\t").unwrap(), "\t");
        assert_eq!(parse_separator("\t").unwrap(), "\t");
        assert_eq!(parse_separator("::").unwrap(), "::");
        assert_eq!(parse_separator("a\\\\b\\x").unwrap(), "a\\b\\x");
        assert!(parse_separator("").is_err());
    }

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let rows = vec![vec!["a".to_owned(), "12345".to_owned(), "".to_owned()]];
        assert_eq!(
            format_table(&["LONG-NAME", "X", "Y"], &rows),
            "LONG-NAME  X      Y\na          12345\n"
        );
    }

    #[test]
    fn key_values_split_at_first_equals() {
        assert_eq!(
            parse_key_value("retention.ms=1000").unwrap(),
            ("retention.ms".into(), "1000".into())
        );
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert_eq!(parse_key_value("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
