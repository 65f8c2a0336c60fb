//! `cohortd import profiles FILE` (issue 13): loads profiles into a
//! running server through its users API before partners start pushing
//! cohorts.
//!
//! The file is NDJSON (one `/users/track` attributes object a line) or CSV
//! (a header naming the fields, one profile a row; a cell that reads as a
//! number or `true`/`false` is one, an empty cell is left out). Lines are
//! read as a stream, sent as `/users/track` batches of
//! [`MAX_TRACK_OBJECTS`] on `concurrency` connections, and every line the
//! server (or the parser) refuses is written to the rejected file as
//! `line N: reason: the line`. The server stays the one judge of what a
//! profile may hold: this module only shapes lines into objects.
//!
//! A batch answered 429 or 503 (the workspace's share is busy) or not
//! answered at all is sent again after a pause, up to [`ATTEMPTS`] times;
//! then its lines are rejected with the last error.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::http::MAX_TRACK_OBJECTS;

/// Times a batch is sent before its lines are rejected.
pub const ATTEMPTS: u32 = 5;

/// The file's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    /// By the file's extension: `.csv` is CSV, anything else NDJSON.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Ndjson,
        }
    }
}

/// What to import and where.
pub struct Options<'a> {
    pub file: &'a Path,
    pub format: Format,
    pub server: SocketAddr,
    /// The workspace's REST API key.
    pub key: &'a str,
    pub rejected: &'a Path,
    pub concurrency: usize,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// What an import did.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    /// Lines read (blank ones not counted).
    pub lines: u64,
    /// Profiles the server took.
    pub imported: u64,
    /// Lines refused, by reason.
    pub rejected: BTreeMap<String, u64>,
    pub seconds: f64,
}

impl Summary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "lines": self.lines,
            "imported": self.imported,
            "rejected": self.rejected_total(),
            "rejected_by_reason": self.rejected,
            "seconds": self.seconds,
            "profiles_per_second": self.imported as f64 / self.seconds.max(1e-9),
        })
    }
}

/// One line on its way: its number, its text (for the rejected file) and
/// the object made of it.
struct Line {
    number: u64,
    text: String,
    object: Value,
}

/// Shared by the senders: where refused lines go and what was counted.
struct Outcome {
    rejected: Mutex<(BufWriter<File>, BTreeMap<String, u64>)>,
    imported: AtomicU64,
}

impl Outcome {
    fn reject(&self, number: u64, reason: &str, text: &str) {
        let mut r = self.rejected.lock();
        let _ = writeln!(r.0, "line {number}: {reason}: {text}");
        *r.1.entry(reason.to_string()).or_default() += 1;
    }
}

/// Runs the import (see the module docs).
pub fn run(o: &Options) -> Result<Summary, String> {
    let started = Instant::now();
    let file = File::open(o.file).map_err(|e| format!("cannot open {}: {e}", o.file.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(o.progress, total);
    let read = Counting {
        inner: file,
        bar: bar.clone(),
    };
    let rejected = File::create(o.rejected)
        .map_err(|e| format!("cannot create {}: {e}", o.rejected.display()))?;
    let outcome = Outcome {
        rejected: Mutex::new((BufWriter::new(rejected), BTreeMap::new())),
        imported: AtomicU64::new(0),
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build();
    let url = format!("http://{}/users/track", o.server);
    let auth = format!("Bearer {}", o.key);
    let (tx, rx) = mpsc::sync_channel::<Vec<Line>>(o.concurrency * 2);
    let rx = Mutex::new(rx);
    let mut lines = 0;
    let mut failure = None;
    std::thread::scope(|s| {
        for _ in 0..o.concurrency.max(1) {
            s.spawn(|| loop {
                let Ok(batch) = rx.lock().recv() else {
                    return;
                };
                send(&agent, &url, &auth, batch, &outcome);
                bar.set_message(format!(
                    "{} imported",
                    outcome.imported.load(Ordering::Relaxed)
                ));
            });
        }
        let mut batch = Vec::with_capacity(MAX_TRACK_OBJECTS);
        let mut each = |line: Line| {
            batch.push(line);
            if batch.len() == MAX_TRACK_OBJECTS {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(MAX_TRACK_OBJECTS));
                let _ = tx.send(full);
            }
        };
        let parsed = match o.format {
            Format::Ndjson => ndjson(read, &mut each, &outcome),
            Format::Csv => csv_rows(read, &mut each, &outcome),
        };
        match parsed {
            Ok(n) => lines = n,
            Err(e) => failure = Some(e),
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        drop(tx);
    });
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    let (mut file, rejected) = outcome.rejected.into_inner();
    file.flush()
        .map_err(|e| format!("cannot write {}: {e}", o.rejected.display()))?;
    Ok(Summary {
        lines,
        imported: outcome.imported.load(Ordering::Relaxed),
        rejected,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn progress_bar(shown: bool, total: u64) -> indicatif::ProgressBar {
    if !shown {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}  {msg}",
        )
        .expect("a valid template"),
    );
    bar
}

/// The file as read, moving the bar by the bytes that went by.
struct Counting {
    inner: File,
    bar: indicatif::ProgressBar,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Each non-blank line an object; returns how many lines there were.
fn ndjson(read: impl Read, each: &mut dyn FnMut(Line), outcome: &Outcome) -> Result<u64, String> {
    let mut lines = 0;
    for (i, text) in BufReader::with_capacity(1 << 16, read).lines().enumerate() {
        let number = i as u64 + 1;
        let text = text.map_err(|e| format!("cannot read line {number}: {e}"))?;
        if text.trim().is_empty() {
            continue;
        }
        lines += 1;
        match serde_json::from_str::<Value>(&text) {
            Ok(object @ Value::Object(_)) => each(Line {
                number,
                text,
                object,
            }),
            Ok(_) => outcome.reject(number, "not a JSON object", &text),
            Err(_) => outcome.reject(number, "not JSON", &text),
        }
    }
    Ok(lines)
}

/// The header names the fields; each row an object of its non-empty cells.
fn csv_rows(read: impl Read, each: &mut dyn FnMut(Line), outcome: &Outcome) -> Result<u64, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 16, read));
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("cannot read the CSV header: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header.iter().any(String::is_empty) {
        return Err("the CSV header has an empty column name".into());
    }
    let mut lines = 0;
    let mut record = csv::StringRecord::new();
    loop {
        let number = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(format!("CSV line {number}: {e}")),
        }
        lines += 1;
        let text: Vec<&str> = record.iter().collect();
        let text = text.join(",");
        if record.len() != header.len() {
            let reason = format!("{} cells, the header has {}", record.len(), header.len());
            outcome.reject(number, &reason, &text);
            continue;
        }
        let object: Map<String, Value> = header
            .iter()
            .zip(record.iter())
            .filter(|(_, cell)| !cell.is_empty())
            .map(|(name, cell)| (name.clone(), cell_value(cell)))
            .collect();
        each(Line {
            number,
            text,
            object: Value::Object(object),
        });
    }
    Ok(lines)
}

/// A CSV cell as a JSON value: `true`/`false`, a number, or the text.
fn cell_value(cell: &str) -> Value {
    match cell {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => {
            let number = cell.parse::<i64>().map(Value::from).ok().or_else(|| {
                cell.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && cell.contains(|c: char| c.is_ascii_digit()))
                    .map(Value::from)
            });
            number.unwrap_or_else(|| Value::String(cell.to_string()))
        }
    }
}

/// Sends one batch (again while the server is busy or unreachable), and
/// counts and rejects by the answer.
fn send(agent: &ureq::Agent, url: &str, auth: &str, batch: Vec<Line>, outcome: &Outcome) {
    let body = serde_json::json!({
        "attributes": batch.iter().map(|l| &l.object).collect::<Vec<_>>()
    })
    .to_string();
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200 << attempt.min(5)));
        }
        let answer = agent
            .post(url)
            .set("Authorization", auth)
            .set("Content-Type", "application/json")
            .send_string(&body);
        match answer {
            Ok(r) => {
                let v: Value = r.into_json().unwrap_or(Value::Null);
                let mut refused = vec![None; batch.len()];
                for e in v["errors"].as_array().into_iter().flatten() {
                    if let Some(i) = e["index"].as_u64().map(|i| i as usize) {
                        if i < refused.len() && e["input_array"] == "attributes" {
                            refused[i] = e["type"].as_str().map(str::to_string);
                        }
                    }
                }
                for (line, why) in batch.iter().zip(&refused) {
                    match why {
                        Some(why) => outcome.reject(line.number, why, &line.text),
                        None => {
                            outcome.imported.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                return;
            }
            Err(ureq::Error::Status(code @ (429 | 503), r)) => {
                last = format!("server answered {code}: {}", answer_message(r));
            }
            Err(ureq::Error::Status(code, r)) => {
                // The whole batch refused (a fatal error names why).
                let why = format!("server answered {code}: {}", answer_message(r));
                for line in &batch {
                    outcome.reject(line.number, &why, &line.text);
                }
                return;
            }
            Err(ureq::Error::Transport(t)) => last = format!("cannot reach the server: {t}"),
        }
    }
    for line in &batch {
        outcome.reject(line.number, &last, &line.text);
    }
}

fn answer_message(r: ureq::Response) -> String {
    let text = r.into_string().unwrap_or_default();
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_as_booleans_numbers_or_text() {
        assert_eq!(cell_value("true"), Value::Bool(true));
        assert_eq!(cell_value("42"), Value::from(42));
        assert_eq!(cell_value("-1.5"), Value::from(-1.5));
        for text in ["TRUE", "1e", "inf", "NaN", "u42", "12 apples", ""] {
            assert_eq!(cell_value(text), Value::String(text.into()), "{text}");
        }
    }

    #[test]
    fn the_format_is_the_extension() {
        assert_eq!(Format::of(Path::new("a/b.CSV")), Format::Csv);
        assert_eq!(Format::of(Path::new("a/b.ndjson")), Format::Ndjson);
        assert_eq!(Format::of(Path::new("profiles")), Format::Ndjson);
    }
}
