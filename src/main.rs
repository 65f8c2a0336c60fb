//! The `cohortd` command line: `serve` (the default), and operator commands
//! that talk to a running server over its admin API.

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
    Snapshot,
    /// Replace the running server's state with a snapshot's.
    Restore {
        /// A snapshot id, as `GET /admin/snapshots` lists them.
        id: String,
    },
    /// Print a snapshot file's header and contents summary (offline).
    Inspect { file: PathBuf },
    /// Show every workspace's connectors and how their delivery is going.
    Connectors {
        /// The server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WorkspaceCmd {
    /// Create a workspace; prints its id and REST API key.
    Create { name: String },
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
    let result =
        load_config(&cli.config).and_then(|config| match cli.command.unwrap_or(Cmd::Serve) {
            Cmd::Serve => cohortd::app::serve(config).map_err(|e| format!("cannot start: {e}")),
            Cmd::Workspace {
                action: WorkspaceCmd::Create { name },
            } => {
                let body = serde_json::json!({ "name": name }).to_string();
                admin_call(&config, "POST", "/admin/workspaces", &body).map(|out| println!("{out}"))
            }
            Cmd::Snapshot => {
                admin_call(&config, "POST", "/admin/snapshots", "{}").map(|out| println!("{out}"))
            }
            Cmd::Restore { id } => {
                let body = serde_json::json!({ "snapshot_id": id }).to_string();
                admin_call(&config, "POST", "/admin/restore", &body).map(|out| println!("{out}"))
            }
            Cmd::Connectors { json } => admin_call(&config, "GET", "/admin/connectors", "")
                .and_then(|out| {
                    if json {
                        println!("{out}");
                        Ok(())
                    } else {
                        connectors_table(&out).map(|t| print!("{t}"))
                    }
                }),
            Cmd::Inspect { file } => cohortd::persist::schema::inspect(&file)
                .map(|out| println!("{out}"))
                .map_err(|e| e.to_string()),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohortd: {e}");
            ExitCode::FAILURE
        }
    }
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

/// `GET /admin/connectors`' answer as a table, one connector a line.
fn connectors_table(answer: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(answer).map_err(|e| format!("unreadable answer: {e}"))?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let columns = [
        "workspace_id",
        "connector_id",
        "name",
        "state",
        "sent",
        "failed",
        "lag_events",
        "lag_seconds",
        "last_error",
    ];
    let mut rows = vec![columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>()];
    for c in v["connectors"].as_array().into_iter().flatten() {
        rows.push(columns.iter().map(|k| text(&c[*k])).collect());
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if rows.len() == 1 {
        out.push_str("(no connectors)\n");
    }
    Ok(out)
}

/// How long the operator commands wait for the server: connecting is
/// quick or hopeless; a snapshot of a large state or a restore can take a
/// while, so the answer gets minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// One admin API call to the server at `config.listen`.
fn admin_call(config: &Config, method: &str, path: &str, body: &str) -> Result<String, String> {
    let token = cohortd::secrets::admin_token(config)?.ok_or(
        "no admin token: set COHORTD_ADMIN_TOKEN or start the server once to generate one",
    )?;
    let addr = config.listen;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(ANSWER_TIMEOUT)
        .build();
    let answer = agent
        .request(method, &format!("http://{addr}{path}"))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/json")
        .send_string(body);
    match answer {
        Ok(r) => r
            .into_string()
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cohortd at {addr} sent an unreadable answer: {e}")),
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            Err(format!("server answered {code}: {}", text.trim()))
        }
        Err(ureq::Error::Transport(t)) => Err(format!(
            "cannot reach cohortd at {addr} ({t}); is it running, and does COHORTD_LISTEN or \
             --config point at it?"
        )),
    }
}
