//! The `cohortd` command line: `serve` (the default), and operator commands
//! that talk to a running server over its admin API.
//!
//! Operator commands print a readable summary or table by default and the
//! server's JSON with `--json` (for scripts). Output goes through
//! [`emit`]: a reader that goes away (`cohortd inspect FILE | head`) ends
//! the command quietly, as for any Unix tool.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// glibc's allocator spent ~15 % of ingest time in malloc/free
/// consolidation (perf); mimalloc's per-thread free lists fit the
/// allocate-per-request pattern of the HTTP workers and actors.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cohortd::config::Config;
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "cohortd",
    version,
    about = "Live cohort membership with a Braze-compatible partner import API"
)]
struct Cli {
    /// Path of the config file (missing file: the embedded default).
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (the default).
    Serve,
    /// Manage workspaces on the running server.
    Workspace {
        #[command(subcommand)]
        action: WorkspaceCmd,
    },
    /// Take a snapshot on the running server now.
    Snapshot {
        /// The server's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Replace the running server's state with a snapshot's.
    Restore {
        /// A snapshot id, as `GET /admin/snapshots` lists them.
        id: String,
        /// The server's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Print a snapshot file's header and contents summary (offline, JSON).
    Inspect { file: PathBuf },
    /// Show every workspace's connectors and how their delivery is going.
    Connectors {
        /// The server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load data into the running server.
    Import {
        #[command(subcommand)]
        what: ImportCmd,
    },
    /// The running server's health, workspaces and newest snapshot.
    Status {
        /// JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Cluster mode: the running node's view of the cluster.
    Cluster {
        #[command(subcommand)]
        action: ClusterCmd,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Every shard: its leader, the sequence this node applied, its lag
    /// behind the shard's stream (`GET /cluster`).
    Status {
        /// The server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ImportCmd {
    /// Profiles from NDJSON (one `/users/track` attributes object a line)
    /// or CSV (`.csv`: a header naming the fields), sent as batches of 75
    /// to `/users/track`; refused lines go to a file, with why.
    Profiles {
        file: PathBuf,
        /// The workspace's REST API key.
        #[arg(long, env = "COHORTD_REST_KEY", hide_env_values = true)]
        key: String,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Where refused lines go (default: FILE.rejected).
        #[arg(long)]
        rejected: Option<PathBuf>,
        /// The summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WorkspaceCmd {
    /// Create a workspace; prints its id and REST API key.
    Create {
        name: String,
        /// The server's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// List the workspaces with their profile and cohort counts.
    List {
        /// The server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = load_config(&cli.config).and_then(|config| run(&config, cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohortd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &Config, command: Option<Cmd>) -> Result<(), String> {
    // The server's JSON, or `human` of it.
    let show = |json: bool, answer: String, human: fn(&Value) -> String| {
        if json {
            emit(&answer)
        } else {
            emit(human(&parse(&answer)?).trim_end())
        }
    };
    match command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => cohortd::app::serve(config.clone()).map_err(|e| format!("cannot start: {e}")),
        Cmd::Workspace {
            action: WorkspaceCmd::Create { name, json },
        } => {
            let body = serde_json::json!({ "name": name }).to_string();
            let answer = admin_call(config, "POST", "/admin/workspaces", &body)?;
            show(json, answer, |v| {
                format!(
                    "workspace {} created\nREST API key (shown once): {}",
                    text(&v["workspace_id"]),
                    text(&v["rest_api_key"])
                )
            })
        }
        Cmd::Workspace {
            action: WorkspaceCmd::List { json },
        } => {
            let answer = admin_call(config, "GET", "/admin/workspaces", "")?;
            show(json, answer, |v| {
                table(
                    &v["workspaces"],
                    &["workspace_id", "name", "created_at", "profiles", "cohorts"],
                    "(no workspaces)",
                )
            })
        }
        Cmd::Snapshot { json } => {
            let answer = while_waiting(!json, "taking a snapshot", || {
                admin_call(config, "POST", "/admin/snapshots", "{}")
            })?;
            show(json, answer, |v| format!("snapshot {}", snapshot_line(v)))
        }
        Cmd::Restore { id, json } => {
            let body = serde_json::json!({ "snapshot_id": id }).to_string();
            let answer = while_waiting(!json, &format!("restoring snapshot {id}"), || {
                admin_call(config, "POST", "/admin/restore", &body)
            })?;
            show(json, answer, |v| {
                format!(
                    "restored {}; the new starting point is snapshot {}",
                    text(&v["restored"]),
                    snapshot_line(&v["snapshot"])
                )
            })
        }
        Cmd::Connectors { json } => {
            let answer = admin_call(config, "GET", "/admin/connectors", "")?;
            show(json, answer, |v| {
                table(
                    &v["connectors"],
                    &[
                        "workspace_id",
                        "connector_id",
                        "name",
                        "state",
                        "sent",
                        "failed",
                        "lag_events",
                        "lag_seconds",
                        "last_error",
                    ],
                    "(no connectors)",
                )
            })
        }
        Cmd::Cluster {
            action: ClusterCmd::Status { json },
        } => {
            let answer = admin_call(config, "GET", "/cluster", "")?;
            show(json, answer, |v| {
                format!(
                    "node {}\n{}",
                    text(&v["node_id"]),
                    table(
                        &v["shards"],
                        &[
                            "shard",
                            "leader",
                            "applied_sequence",
                            "lag",
                            "first_sequence"
                        ],
                        "(no shards)",
                    )
                )
            })
        }
        Cmd::Status { json } => {
            let status = status(config)?;
            if json {
                emit(&status.to_string())
            } else {
                emit(&status_text(&status))
            }
        }
        Cmd::Import {
            what:
                ImportCmd::Profiles {
                    file,
                    key,
                    concurrency,
                    rejected,
                    json,
                },
        } => {
            let rejected = rejected.unwrap_or_else(|| {
                let mut name = file.clone().into_os_string();
                name.push(".rejected");
                name.into()
            });
            let summary = cohortd::import::run(&cohortd::import::Options {
                file: &file,
                format: cohortd::import::Format::of(&file),
                server: config.listen,
                key: &key,
                rejected: &rejected,
                concurrency: concurrency.max(1),
                progress: !json,
            })?;
            if json {
                emit(&summary.to_json().to_string())
            } else {
                let mut out = format!(
                    "{} lines: {} profiles imported, {} lines rejected in {:.1} s ({:.0} profiles/s)",
                    summary.lines,
                    summary.imported,
                    summary.rejected_total(),
                    summary.seconds,
                    summary.imported as f64 / summary.seconds.max(1e-9)
                );
                for (why, n) in &summary.rejected {
                    out.push_str(&format!("\n  {n:>8}  {why}"));
                }
                if summary.rejected_total() > 0 {
                    out.push_str(&format!("\nrejected lines: {}", rejected.display()));
                }
                emit(&out)
            }
        }
        Cmd::Inspect { file } => {
            let bar = spinner("reading");
            let out = cohortd::persist::schema::inspect_with(&file, &mut |step| {
                inspect_progress(&bar, step)
            });
            bar.finish_and_clear();
            let out = out.map_err(|e| e.to_string())?;
            emit(&out)
        }
    }
}

/// A step without a count: a spinner, what it is doing, the time taken.
fn spinning() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .expect("a valid template")
}

/// A spinner on stderr saying `what` and the time it has taken (drawn only
/// when stderr is a terminal).
fn spinner(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(spinning());
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// Runs `work` (a call the server answers when it is done: a snapshot or
/// a restore, which report no progress of their own) under a spinner,
/// unless `shown` is false (`--json`).
fn while_waiting<T>(shown: bool, what: &str, work: impl FnOnce() -> T) -> T {
    if !shown {
        return work();
    }
    let bar = spinner(what);
    let out = work();
    bar.finish_and_clear();
    out
}

/// `cohortd inspect`'s bar: bytes read, then decoding, then profiles
/// checked.
fn inspect_progress(bar: &indicatif::ProgressBar, step: cohortd::persist::schema::InspectStep) {
    use cohortd::persist::schema::InspectStep;
    let counted = |unit: &str| {
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:30}} {unit} {{msg}} ({{elapsed}}, eta {{eta}})"
        ))
        .expect("a valid template")
    };
    match step {
        InspectStep::Reading { done, total } => {
            if bar.length() != Some(total) {
                bar.set_style(counted("{bytes}/{total_bytes}"));
                bar.set_length(total);
                bar.set_message("read and checksummed");
            }
            bar.set_position(done);
        }
        InspectStep::Decoding => {
            bar.set_style(spinning());
            bar.set_message("decoding the image");
        }
        InspectStep::Checking { done, total } => {
            if bar.message() != "profiles checked" {
                bar.set_style(counted("{pos}/{len}"));
                bar.set_length(total);
                bar.set_message("profiles checked");
            }
            bar.set_position(done);
        }
    }
}

/// Prints `out` and a newline. A closed reader ends the command quietly
/// (its exit status is success: the reader had what it wanted).
fn emit(out: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(format!("cannot write the output: {e}")),
    }
}

fn parse(answer: &str) -> Result<Value, String> {
    serde_json::from_str(answer).map_err(|e| format!("unreadable answer: {e}"))
}

/// A JSON value as a table cell.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// `id at time, bytes, log position` of a snapshot's JSON.
fn snapshot_line(v: &Value) -> String {
    format!(
        "{} at {}, {} bytes, log position {}",
        text(&v["snapshot_id"]),
        text(&v["created_at"]),
        text(&v["bytes"]),
        text(&v["log_position"])
    )
}

/// The objects of `rows` as a table of `columns`, one a line, with a
/// header; `empty` when there are none.
fn table(rows: &Value, columns: &[&str], empty: &str) -> String {
    let mut cells = vec![columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>()];
    for r in rows.as_array().into_iter().flatten() {
        cells.push(columns.iter().map(|k| text(&r[*k])).collect());
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &cells {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if cells.len() == 1 {
        out.push_str(empty);
        out.push('\n');
    }
    out
}

/// What `cohortd status` reports: the server's address and readiness, its
/// workspaces' counts, and its newest snapshot.
fn status(config: &Config) -> Result<Value, String> {
    let addr = config.listen;
    let (code, answer) = http_call(config, "GET", "/readyz", "", false)?;
    let ready = code == 200;
    let mut out = serde_json::json!({ "address": addr.to_string(), "ready": ready });
    if !ready {
        // Recovering: the admin API answers 503 until it is done.
        out["detail"] = parse(&answer).unwrap_or(Value::Null);
        return Ok(out);
    }
    let workspaces = parse(&admin_call(config, "GET", "/admin/workspaces", "")?)?;
    let list = workspaces["workspaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sum = |k: &str| list.iter().filter_map(|w| w[k].as_u64()).sum::<u64>();
    out["workspaces"] = list.len().into();
    out["profiles"] = sum("profiles").into();
    out["cohorts"] = sum("cohorts").into();
    let snapshots = parse(&admin_call(config, "GET", "/admin/snapshots", "")?)?;
    out["snapshots"] = snapshots["snapshots"].as_array().map_or(0, Vec::len).into();
    out["last_snapshot"] = snapshots["snapshots"]
        .as_array()
        .and_then(|all| all.iter().max_by_key(|s| s["log_position"].as_u64()))
        .cloned()
        .unwrap_or(Value::Null);
    Ok(out)
}

fn status_text(s: &Value) -> String {
    let address = text(&s["address"]);
    if s["ready"] != Value::Bool(true) {
        return format!("cohortd at {address}: recovering (not ready yet)");
    }
    let last = match &s["last_snapshot"] {
        Value::Null => "none yet".to_string(),
        v => snapshot_line(v),
    };
    format!(
        "cohortd at {address}: ready\nworkspaces:    {} ({} profiles, {} cohorts)\n\
         snapshots:     {}\nlast snapshot: {last}",
        text(&s["workspaces"]),
        text(&s["profiles"]),
        text(&s["cohorts"]),
        text(&s["snapshots"]),
    )
}

/// The config file with the environment's overrides; what is wrong with
/// either is an invalid configuration (named as such, like `serve`'s other
/// start-up errors).
fn load_config(path: &std::path::Path) -> Result<Config, String> {
    Config::load(path)
        .and_then(|mut config| {
            config.apply_env(|k| std::env::var(k).ok())?;
            Ok(config)
        })
        .map_err(|e| cohortd::error::StartError::Config(e).to_string())
}

/// How long the operator commands wait for the server: connecting is
/// quick or hopeless; a snapshot of a large state or a restore can take a
/// while, so the answer gets minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// One admin API call to the server at `config.listen`: its answer, or
/// what went wrong (a status other than 2xx included).
fn admin_call(config: &Config, method: &str, path: &str, body: &str) -> Result<String, String> {
    match http_call(config, method, path, body, true)? {
        (200..=299, text) => Ok(text),
        (code, text) => Err(format!("server answered {code}: {text}")),
    }
}

/// One call to the server at `config.listen`, with the admin token if
/// `admin`: the status and the answer's text.
fn http_call(
    config: &Config,
    method: &str,
    path: &str,
    body: &str,
    admin: bool,
) -> Result<(u16, String), String> {
    let addr = config.listen;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(ANSWER_TIMEOUT)
        .build();
    let mut request = agent
        .request(method, &format!("http://{addr}{path}"))
        .set("Content-Type", "application/json");
    if admin {
        let token = cohortd::secrets::admin_token(config)?.ok_or(
            "no admin token: set COHORTD_ADMIN_TOKEN or start the server once to generate one",
        )?;
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let unreadable =
        |e: std::io::Error| format!("cohortd at {addr} sent an unreadable answer: {e}");
    match request.send_string(body) {
        Ok(r) => {
            let code = r.status();
            let text = r.into_string().map_err(unreadable)?;
            Ok((code, text.trim().to_string()))
        }
        Err(ureq::Error::Status(code, r)) => {
            Ok((code, r.into_string().unwrap_or_default().trim().to_string()))
        }
        Err(ureq::Error::Transport(t)) => Err(format!(
            "cannot reach cohortd at {addr} ({t}); is it running, and does COHORTD_LISTEN or \
             --config point at it?"
        )),
    }
}
