//! What the HTTP benches share: the real `cohortd` binary started as a
//! child process on a free loopback port with a temp data dir, and a
//! minimal keep-alive HTTP/1.1 client to drive it.
//!
//! Each bench target compiles this module on its own; an item here is one
//! that every bench uses (a bench's own additions, such as `load`'s
//! restart or `isolation`'s client timeouts, are `impl` blocks in the
//! bench itself).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "bench-admin";
pub const PARTNER_KEY: &str = "bench-partner";

/// A minimal keep-alive HTTP/1.1 client: enough for JSON in, JSON out.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
    pub addr: SocketAddr,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).ok();
        Conn {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
            addr,
        }
    }

    /// One request and its answer; panics on a transport error.
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        self.try_call(method, path, token, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One request and its answer (status, body), or what went wrong on
    /// the wire; a read timeout set on the socket shows up here as an
    /// error. After an error, or an answer with `Connection: close`, the
    /// connection is replaced by a new one (same timeouts), so the next
    /// call can go on.
    pub fn try_call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        let r = self.exchange(method, path, token, body);
        if r.as_ref().map_or(true, |&(_, _, close)| close) {
            self.reopen();
        }
        r.map(|(status, body, _)| (status, body))
    }

    fn reopen(&mut self) {
        let Ok(s) = TcpStream::connect(self.addr) else {
            return; // the next call reports it
        };
        s.set_nodelay(true).ok();
        s.set_read_timeout(self.writer.read_timeout().unwrap_or(None))
            .ok();
        s.set_write_timeout(self.writer.write_timeout().unwrap_or(None))
            .ok();
        if let Ok(r) = s.try_clone() {
            self.reader = BufReader::new(r);
            self.writer = s;
        }
    }

    /// The request, then its answer and whether the server closes the
    /// connection after it.
    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>, bool), String> {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        // A server may answer (413) and stop reading before the body is
        // sent whole: then its answer is still there to read.
        let sent = self
            .writer
            .write_all(head.as_bytes())
            .and_then(|()| self.writer.write_all(body));
        let mut line = String::new();
        let read = self.reader.read_line(&mut line);
        let status = match (&sent, read) {
            (_, Ok(n)) if n > 0 => line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
                .ok_or_else(|| format!("bad status line {line:?}"))?,
            (Err(e), _) => return Err(format!("send: {e}")),
            (Ok(()), Ok(_)) => return Err("connection closed before an answer".into()),
            (Ok(()), Err(e)) => return Err(format!("read: {e}")),
        };
        let (mut len, mut chunked, mut close) = (0usize, false, sent.is_err());
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .map_err(|e| format!("header: {e}"))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().map_err(|_| format!("content-length {v:?}"))?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    close |= v.eq_ignore_ascii_case("close");
                }
            }
        }
        let body = if chunked {
            self.read_chunked()?
        } else {
            let mut buf = vec![0; len];
            self.reader
                .read_exact(&mut buf)
                .map_err(|e| format!("body: {e}"))?;
            buf
        };
        Ok((status, body, close))
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .map_err(|e| format!("chunk: {e}"))?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let n = usize::from_str_radix(size, 16).map_err(|_| format!("chunk size {size:?}"))?;
            let mut buf = vec![0; n + 2]; // the chunk and its CRLF
            self.reader
                .read_exact(&mut buf)
                .map_err(|e| format!("chunk: {e}"))?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// A new workspace named `name` and a data import key for `partner`:
    /// `(REST API key, data import key)`.
    #[allow(
        dead_code,
        reason = "the cluster bench makes its own: it needs the workspace id for the shard"
    )]
    pub fn workspace(&mut self, name: &str, partner: &str) -> (String, String) {
        let ws = self.json(
            "POST",
            "/admin/workspaces",
            Some(ADMIN),
            &serde_json::json!({ "name": name }),
        );
        let key = ws["rest_api_key"].as_str().expect("a REST key").to_string();
        let secret = self.json(
            "POST",
            &format!("/technology_partners/{partner}/data_import_keys"),
            Some(&key),
            &serde_json::json!({}),
        )["data_import_key"]
            .as_str()
            .expect("a data import key")
            .to_string();
        (key, secret)
    }

    /// A JSON call that must succeed (2xx); returns the answer's JSON.
    pub fn json(&mut self, method: &str, path: &str, token: Option<&str>, body: &Value) -> Value {
        let (status, out) = self.call(method, path, token, body.to_string().as_bytes());
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert!(status < 300, "{method} {path} → {status}: {v}");
        v
    }
}

/// The server child process; dropping it kills and reaps the child.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cohortd serve` on `dir`'s `bench-config.toml` and `data/`.
pub fn spawn(dir: &std::path::Path, addr: SocketAddr) -> Child {
    // COHORTD_BENCH_BIN runs the same scenarios against another build (an
    // older commit's binary, for a before/after in one sitting).
    Command::new(
        std::env::var_os("COHORTD_BENCH_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_cohortd").into()),
    )
    .args(["serve", "--config"])
    .arg(dir.join("bench-config.toml"))
    .env("COHORTD_LISTEN", addr.to_string())
    .env("COHORTD_DATA_DIR", dir.join("data"))
    .env("COHORTD_ADMIN_TOKEN", ADMIN)
    .env("COHORTD_PARTNER_KEY_SEGMENT", PARTNER_KEY)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .spawn()
    .expect("start cohortd")
}

/// The shipped config.toml with `fsync`, `http_workers` (0: one per core,
/// as shipped) and no periodic snapshots, on a free loopback port and a
/// temp data dir; returns once `/readyz` is 200.
pub fn start_server(fsync: &str, http_workers: usize) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // COHORTD_BENCH_CONFIG: start from another build's config.toml (with
    // COHORTD_BENCH_BIN, to run an older cohortd that rejects newer keys).
    let shipped = match std::env::var_os("COHORTD_BENCH_CONFIG") {
        Some(path) => std::fs::read_to_string(&path).expect("COHORTD_BENCH_CONFIG is readable"),
        None => include_str!("../../config.toml").to_string(),
    };
    let config = shipped
        .replace("fsync = \"always\"", &format!("fsync = \"{fsync}\""))
        .replace("interval_secs = 300", "interval_secs = 0")
        .replace(
            "http_workers = 0",
            &format!("http_workers = {http_workers}"),
        );
    std::fs::write(dir.path().join("bench-config.toml"), config).unwrap();
    let child = spawn(dir.path(), addr);
    // From here on, `Server`'s Drop kills and reaps the child on every path.
    let server = Server {
        child,
        addr,
        _dir: dir,
    };
    server.wait_ready();
    server
}

impl Server {
    /// SIGKILL, then start again on the same data dir; returns the time
    /// until `/readyz` answers 200 (recovery: snapshot load + log replay).
    #[allow(dead_code, reason = "load and segments use it; isolation does not")]
    pub fn crash_and_restart(&mut self) -> Duration {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let started = Instant::now();
        self.child = spawn(self._dir.path(), self.addr);
        self.wait_ready();
        started.elapsed()
    }

    /// The server's resident memory now (VmRSS), in KiB.
    #[allow(dead_code, reason = "load and segments use it; isolation does not")]
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(mut c) = TcpStream::connect(self.addr).map(|_| Conn::open(self.addr)) {
                if c.call("GET", "/readyz", None, b"").0 == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("cohortd did not become ready");
    }
}

/// CPU seconds (user + system) a process has used (`"self"`: this one):
/// fields 14 and 15 of `/proc/<pid>/stat`, in USER_HZ ticks (100 a second
/// on Linux).
#[allow(dead_code, reason = "export and cluster use it; the others do not")]
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count from after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if f.len() < 13 {
        return 0.0;
    }
    (f[11] + f[12]) as f64 / 100.0
}

/// The `p` quantile of sorted latencies, in ms with three decimals.
pub fn pct(l: &[Duration], p: f64) -> String {
    if l.is_empty() {
        return "-".into();
    }
    let i = ((l.len() as f64 * p) as usize).min(l.len() - 1);
    format!("{:.3}", l[i].as_secs_f64() * 1000.0)
}
