//! The Redis peer the HTTP benches measure beside cohortd: Debian's
//! `redis-server` with persistence off on a free loopback port (installed
//! with apt-get when missing), and a minimal pipelining RESP client.
//!
//! Included by the benches that use it (`#[path] mod redis;`), not by
//! `common`, which every bench compiles whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `redis-server` (installing Debian's package if it is missing and
/// we may), or says why the peer is skipped.
pub fn start_redis() -> Result<Redis, String> {
    start_redis_with(&["--save", "", "--appendonly", "no"])
}

/// [`start_redis`] with `persistence` as its persistence arguments (e.g.
/// an append-only file fsynced always, in a directory of the caller's).
pub fn start_redis_with(persistence: &[&str]) -> Result<Redis, String> {
    if !have("redis-server") {
        eprintln!("redis-server not found: installing Debian's redis-server");
        let ok = Command::new("sh")
            .args(["-c", "apt-get install -y -q redis-server >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q redis-server >/dev/null 2>&1)"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !have("redis-server") {
            return Err("redis-server is not installed and could not be installed".into());
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| e.to_string())?
        .local_addr()
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(persistence)
        .args(["--protected-mode", "no", "--logfile", ""])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let redis = Redis {
        child,
        addr: format!("127.0.0.1:{port}").parse().expect("addr"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut c) = Resp::open(redis.addr) {
            if c.roundtrip(&resp(&[b"PING"]), 1).is_ok() {
                return Ok(redis);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("redis-server did not answer PING".into())
}

/// One RESP command.
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A pipelining RESP client: replies are integers, simple and bulk
/// strings, and arrays of those, which is all the peers need.
pub struct Resp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

#[derive(Debug)]
pub enum Reply {
    Int(i64),
    Array(Vec<Reply>),
    Text(String),
}

impl Resp {
    pub fn open(addr: SocketAddr) -> std::io::Result<Resp> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Resp {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    fn line(&mut self) -> Result<String, String> {
        let mut l = String::new();
        self.reader.read_line(&mut l).map_err(|e| e.to_string())?;
        Ok(l.trim_end().to_string())
    }

    fn reply(&mut self) -> Result<Reply, String> {
        let l = self.line()?;
        let (kind, rest) = l.split_at(1);
        match kind {
            ":" => rest.parse().map(Reply::Int).map_err(|e| e.to_string()),
            "+" => Ok(Reply::Text(rest.to_string())),
            "-" => Err(format!("redis error: {rest}")),
            "$" => {
                let n: usize = rest
                    .parse()
                    .map_err(|e: std::num::ParseIntError| e.to_string())?;
                let mut buf = vec![0; n + 2];
                self.reader
                    .read_exact(&mut buf)
                    .map_err(|e| e.to_string())?;
                Ok(Reply::Text(String::from_utf8_lossy(&buf[..n]).into_owned()))
            }
            "*" => {
                let n: usize = rest
                    .parse()
                    .map_err(|e: std::num::ParseIntError| e.to_string())?;
                (0..n)
                    .map(|_| self.reply())
                    .collect::<Result<_, _>>()
                    .map(Reply::Array)
            }
            _ => Err(format!("unexpected reply line {l:?}")),
        }
    }

    pub fn roundtrip(&mut self, pipeline: &[u8], replies: usize) -> Result<Vec<Reply>, String> {
        self.writer.write_all(pipeline).map_err(|e| e.to_string())?;
        (0..replies).map(|_| self.reply()).collect()
    }
}

/// Redis's `used_memory` (bytes), 0 when it cannot be read.
pub fn used_memory(addr: SocketAddr) -> u64 {
    memory_info(addr, "used_memory")
}

/// One figure of `INFO memory` (bytes), 0 when it cannot be read.
pub fn memory_info(addr: SocketAddr, field: &str) -> u64 {
    let prefix = format!("{field}:");
    let mut c = Resp::open(addr).expect("connect to redis");
    let Ok(mut r) = c.roundtrip(&resp(&[b"INFO", b"memory"]), 1) else {
        return 0;
    };
    match r.pop() {
        Some(Reply::Text(t)) => t
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}
