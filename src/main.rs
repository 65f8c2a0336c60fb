//! The `cohortd` command line: `serve` (the default), and operator commands
//! that talk to a running server over its admin API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;

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
    let result = Config::load(&cli.config).and_then(|mut config| {
        config.apply_env(|k| std::env::var(k).ok())?;
        match cli.command.unwrap_or(Cmd::Serve) {
            Cmd::Serve => cohortd::app::serve(config),
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
            Cmd::Inspect { file } => cohortd::persist::schema::inspect(&file)
                .map(|out| println!("{out}"))
                .map_err(|e| e.to_string()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohortd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One admin API call to the server at `config.listen`, over plain HTTP/1.1.
fn admin_call(config: &Config, method: &str, path: &str, body: &str) -> Result<String, String> {
    let token = cohortd::secrets::admin_token(config)?.ok_or(
        "no admin token: set COHORTD_ADMIN_TOKEN or start the server once to generate one",
    )?;
    let addr = config.listen;
    let mut stream =
        TcpStream::connect(addr).map_err(|e| format!("cannot reach cohortd at {addr}: {e}"))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status.starts_with('2') {
        Ok(payload.trim().to_string())
    } else {
        Err(format!("server answered {status}: {}", payload.trim()))
    }
}
