//! The real `cohortd` binary as a child process: what crash, restart and
//! signal tests need and an in-process server cannot give (`kill -9`, a
//! restart on the same data dir, exit codes, the start-up log).
//!
//! A [`Home`] is a temp directory that outlives the processes started in it:
//! `data/` is the data dir, and the directory itself is the working dir (so
//! a `config.toml` written there is the one `serve` reads). A [`Daemon`] is
//! one running `cohortd serve` on a free loopback port; dropping it kills it.
//! Everything is bounded: start-up, exits and polls give up with a panic
//! that carries the server's output rather than hang.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Resp, ADMIN, PARTNER_KEY};

pub const BIN: &str = env!("CARGO_BIN_EXE_cohortd");

/// How long a start-up (recovery included) or an exit may take before the
/// test gives up. Generous: a debug build on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(40);

/// A place for one server's data that survives its restarts.
pub struct Home {
    root: tempfile::TempDir,
    /// Caps every file the server writes (`ulimit -f`, with `SIGXFSZ`
    /// ignored so that an oversized write fails with `EFBIG`): a disk-full
    /// stand-in that also works as root.
    pub file_size_limit_bytes: Option<u64>,
    /// Environment changes for every process started here, applied after
    /// the harness's own variables: `Some` sets one, `None` removes it.
    env: Vec<(String, Option<String>)>,
}

/// A start that ended before the server was ready.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub output: String,
}

impl Home {
    pub fn new() -> Home {
        Home {
            root: tempfile::tempdir().expect("tempdir"),
            file_size_limit_bytes: None,
            env: Vec::new(),
        }
    }

    /// A home whose data dir is a copy of `data` (a compatibility fixture's,
    /// say; the original is never written to), run with the secrets stored
    /// in it: the harness's test admin token and partner key are not set,
    /// and such variables inherited from the test's environment are removed.
    pub fn with_data_copy(data: &Path) -> Home {
        let mut home = Home::new();
        copy_dir(data, &home.data_dir());
        home.set_env("COHORTD_ADMIN_TOKEN", None);
        for partner in cohortd::config::Config::default().partners.keys() {
            let var = format!(
                "COHORTD_PARTNER_KEY_{}",
                partner.to_ascii_uppercase().replace('-', "_")
            );
            home.set_env(&var, None);
        }
        home
    }

    /// Sets (`Some`) or removes (`None`) an environment variable for every
    /// process started in this home from now on, over the harness's own.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.map(str::to_string)));
    }

    fn apply_env(&self, cmd: &mut Command) {
        for (key, value) in &self.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
    }

    /// A home whose `config.toml` is the shipped one passed through `edit`
    /// (each `(from, to)` replaces one line that must exist).
    pub fn with_config(edits: &[(&str, &str)]) -> Home {
        let home = Home::new();
        let mut text = cohortd::config::SHIPPED.to_string();
        for (from, to) in edits {
            assert!(text.contains(from), "config.toml has no line {from:?}");
            text = text.replace(from, to);
        }
        std::fs::write(home.root.path().join("config.toml"), text).expect("write config.toml");
        home
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir().join("wal")
    }

    /// Starts `cohortd serve` and waits until `/readyz` is 200.
    pub fn start(&self) -> Daemon {
        self.try_start()
            .unwrap_or_else(|e| panic!("cohortd did not start ({}):\n{}", e.status, e.output))
    }

    /// Starts `cohortd serve`; `Err` if it exits before it is ready. A lost
    /// race for the port (another process took it between our probe and the
    /// server's bind) is retried on a fresh port.
    pub fn try_start(&self) -> Result<Daemon, Exited> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = free_port();
            match self.spawn_on(addr) {
                Err(e) if attempt < 5 && e.output.contains("cannot listen on") => continue,
                other => return other,
            }
        }
    }

    /// Starts `cohortd serve` and returns at once, ready or not (for
    /// tests of what it answers while it recovers).
    pub fn spawn(&self) -> Daemon {
        self.launch(free_port())
    }

    /// Starts `cohortd serve` on `addr` (a cluster node must know its
    /// port before it starts: it advertises it) and waits until ready;
    /// `Err` if it exits first (a lost race for the port included).
    pub fn try_start_on(&self, addr: SocketAddr) -> Result<Daemon, Exited> {
        self.spawn_on(addr)
    }

    /// Writes `text` as this home's `config.toml`.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.root.path().join("config.toml"), text).expect("write config.toml");
    }

    fn spawn_on(&self, addr: SocketAddr) -> Result<Daemon, Exited> {
        let mut daemon = self.launch(addr);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = daemon.child.try_wait().expect("try_wait") {
                let output = daemon.collect_output();
                return Err(Exited { status, output });
            }
            if let Ok(r) = daemon.call("GET", "/readyz", None, None) {
                if r.status == 200 {
                    return Ok(daemon);
                }
            }
            if Instant::now() > deadline {
                let _ = daemon.child.kill();
                let _ = daemon.child.wait();
                panic!(
                    "cohortd not ready within {PATIENCE:?}:\n{}",
                    daemon.collect_output()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn launch(&self, addr: SocketAddr) -> Daemon {
        let mut cmd = match self.file_size_limit_bytes {
            None => {
                let mut c = Command::new(BIN);
                c.arg("serve");
                c
            }
            Some(bytes) => {
                // `ulimit -f` counts 512-byte blocks in dash and 1024-byte
                // ones in bash: bytes / 1024 blocks never exceeds `bytes`.
                let blocks = (bytes / 1024).max(1);
                let mut c = Command::new("sh");
                c.args([
                    "-c",
                    &format!("trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" serve"),
                    BIN,
                ]);
                c
            }
        };
        cmd.current_dir(self.root.path())
            .env("COHORTD_LISTEN", addr.to_string())
            .env("COHORTD_DATA_DIR", self.data_dir())
            .env("COHORTD_ADMIN_TOKEN", ADMIN)
            .env("COHORTD_PARTNER_KEY_SEGMENT", PARTNER_KEY)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.apply_env(&mut cmd);
        let mut child = cmd.spawn().expect("spawn cohortd");
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            capture(child.stdout.take().expect("stdout"), output.clone()),
            capture(child.stderr.take().expect("stderr"), output.clone()),
        ];
        Daemon {
            child,
            addr,
            url: format!("http://{addr}"),
            output,
            readers,
            agent: agent(),
        }
    }

    /// Runs a `cohortd` subcommand (not `serve`) in this home, talking to
    /// the server at `addr` if it needs one. Bounded like everything here.
    pub fn cli(&self, args: &[&str], addr: Option<SocketAddr>) -> Output {
        self.cli_to(args, addr, Stdio::piped())
    }

    /// [`cli`](Self::cli) with its standard output going to `stdout` (a
    /// pipe whose reader is gone, for one).
    pub fn cli_to(&self, args: &[&str], addr: Option<SocketAddr>, stdout: Stdio) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.root.path())
            .env("COHORTD_ADMIN_TOKEN", ADMIN)
            .env("COHORTD_DATA_DIR", self.data_dir())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        if let Some(a) = addr {
            cmd.env("COHORTD_LISTEN", a.to_string());
        }
        self.apply_env(&mut cmd);
        let mut child = cmd.spawn().expect("spawn cohortd");
        let deadline = Instant::now() + PATIENCE;
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cohortd {args:?} did not finish within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().expect("cli output")
    }
}

impl Default for Home {
    fn default() -> Self {
        Home::new()
    }
}

/// Copies the directory tree `from` into `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("dir entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
        }
    }
}

/// A port nobody listens on right now (the server may still lose it to a
/// race: `try_start` retries).
pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr")
}

/// No connection pooling: a request is in flight exactly while its own
/// connection is open, which is what crash and shutdown tests reason about.
fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .max_idle_connections(0)
        .timeout(Duration::from_secs(20))
        .build()
}

fn capture(pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut out = into.lock().unwrap();
            out.push_str(&strip_ansi(&line));
            out.push('\n');
        }
    })
}

/// Log lines without terminal colour codes, so tests can search them.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One running `cohortd serve`.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub url: String,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    agent: ureq::Agent,
}

/// A workspace's credentials: they outlive the process that issued them.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub key: String,
    /// A data import key for the `segment` partner.
    pub secret: String,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server printed so far (stdout and stderr, uncoloured).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn collect_output(&mut self) -> String {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.output()
    }

    /// `kill -9`: no shutdown path runs. Returns what the server printed.
    pub fn kill9(mut self) -> String {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
        self.collect_output()
    }

    /// Sends a signal by name (`TERM`, `INT`) with the `kill` utility.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// A graceful stop: `SIGTERM`, then a bounded wait for exit status 0.
    /// Returns what the server printed.
    pub fn stop(self) -> String {
        self.signal("TERM");
        let (status, output) = self.wait_exit();
        assert_eq!(status.code(), Some(0), "SIGTERM must exit 0:\n{output}");
        output
    }

    /// Waits (bounded) for the process to exit on its own.
    pub fn wait_exit(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, self.collect_output());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "cohortd did not exit within {PATIENCE:?}:\n{}",
                    self.collect_output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One request; `Err` only when no HTTP answer came back at all.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Resp, String> {
        let req = self.agent.request(method, &format!("{}{path}", self.url));
        super::send(req, token, body, Resp::try_from_ureq)
    }

    /// A request that must be answered.
    pub fn must(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
        self.call(method, path, Some(token), body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.output()))
    }

    pub fn get(&self, path: &str, token: &str) -> Resp {
        self.must("GET", path, token, None)
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.must("POST", path, token, Some(body))
    }

    /// A workspace with identified users `ids` and a `segment` import key.
    pub fn tenant(&self, name: &str, ids: &[String]) -> Tenant {
        let r = self.post("/admin/workspaces", ADMIN, json!({ "name": name }));
        assert_eq!(r.status, 201, "{}", r.body);
        let key = r.body["rest_api_key"].as_str().unwrap().to_string();
        let id = r.body["workspace_id"].as_str().unwrap().to_string();
        let attrs: Vec<Value> = ids.iter().map(|id| json!({ "external_id": id })).collect();
        for chunk in attrs.chunks(75) {
            let r = self.post("/users/track", &key, json!({ "attributes": chunk }));
            assert_eq!(r.status, 201, "{}", r.body);
        }
        let r = self.must(
            "POST",
            "/technology_partners/segment/data_import_keys",
            &key,
            None,
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let secret = r.body["data_import_key"].as_str().unwrap().to_string();
        Tenant { id, key, secret }
    }

    /// A partner delta to `segment`'s cohort: add or remove `ids`.
    pub fn delta(
        &self,
        t: &Tenant,
        cohort: &str,
        ids: &[String],
        remove: bool,
    ) -> Result<Resp, String> {
        let body = super::delta(
            &t.secret,
            cohort,
            json!([{ "user_ids": ids, "should_remove": remove }]),
        );
        self.call("POST", "/partners/segment/cohorts/users", None, Some(&body))
    }

    /// The external ids in a `segment` cohort, sorted; empty if it does not
    /// exist.
    pub fn member_ids(&self, t: &Tenant, cohort: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor = String::new();
        loop {
            let r = self.get(
                &format!("/cohorts/segment/{cohort}/members?limit=10000&cursor={cursor}"),
                &t.key,
            );
            if r.status == 404 {
                return ids;
            }
            assert_eq!(r.status, 200, "{}", r.body);
            for m in r.body["members"].as_array().unwrap() {
                ids.push(m["external_id"].as_str().unwrap().to_string());
            }
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => break,
            }
        }
        ids.sort();
        ids
    }

    /// A cohort's import history, newest first (up to 10,000 entries).
    pub fn imports(&self, t: &Tenant, cohort: &str) -> Vec<Value> {
        let r = self.get(
            &format!("/cohorts/segment/{cohort}/imports?limit=10000"),
            &t.key,
        );
        if r.status == 404 {
            return Vec::new();
        }
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["imports"].as_array().unwrap().clone()
    }

    /// Everything a workspace's REST key can see about its cohorts, plus
    /// the workspace list: equal fingerprints mean equal observable state.
    pub fn fingerprint(&self, t: &Tenant) -> Value {
        let workspaces = self.get("/admin/workspaces", ADMIN).body;
        let list = self.get("/cohorts", &t.key).body;
        let mut cohorts = Vec::new();
        for c in list["cohorts"].as_array().unwrap() {
            assert_eq!(c["partner"], "segment", "fingerprints cover segment only");
            let id = c["cohort_id"].as_str().unwrap();
            cohorts.push(json!({
                "cohort": c,
                "members": self.member_ids(t, id),
                "imports": self.imports(t, id),
            }));
        }
        json!({ "workspaces": workspaces, "cohorts": cohorts })
    }

    pub fn snapshot(&self) -> Value {
        let r = self.post("/admin/snapshots", ADMIN, json!({}));
        assert_eq!(r.status, 201, "{}", r.body);
        r.body
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A CLI run's standard output, once it succeeded (else a failure naming
/// what it printed).
pub fn cli_text(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// [`cli_text`] as JSON.
pub fn cli_json(out: &Output) -> serde_json::Value {
    let text = cli_text(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
