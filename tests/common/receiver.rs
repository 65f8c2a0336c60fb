//! A scriptable HTTP receiver on loopback, standing in for a connector's
//! endpoint: it records every request (headers, parsed JSON body, what it
//! answered) and answers the next requests as scripted ([`Behaviour`]),
//! 200 once the script is empty.
//!
//! std and serde_json only. It speaks the HTTP/1.1 a client such as ureq
//! needs: keep-alive, `Content-Length` bodies (no chunked bodies: those
//! are answered 501). Each connection has its own thread, so a hanging
//! answer holds up nobody else and the receiver keeps up with a benchmark
//! (about a thousand requests a second of 100 events). Every request is
//! kept in memory, raw and parsed.
//!
//! Used by `connector::deliver`'s unit tests (through `#[path]`) and by
//! integration tests.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How to answer one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with `{}`.
    Ok,
    /// This status, with `{"error": "scripted"}`.
    Status(u16),
    /// No answer: the connection is held this long, then closed (for the
    /// client's timeout).
    Hang(Duration),
    /// The request is read, then the connection closed with no answer.
    Close,
}

/// One request received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body parsed as JSON, if it is.
    pub json: Option<Value>,
    /// The status answered (`None`: hung or closed).
    pub answered: Option<u16>,
}

impl Request {
    /// The first header of this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }

    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }

    /// The body's `events` (none if it has no such array).
    pub fn events(&self) -> Vec<Value> {
        self.events_slice().to_vec()
    }

    /// How many `events` the body has.
    pub fn event_count(&self) -> usize {
        self.events_slice().len()
    }

    fn events_slice(&self) -> &[Value] {
        self.json
            .as_ref()
            .and_then(|j| j.get("events"))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    pub fn acknowledged(&self) -> bool {
        self.answered.is_some_and(|c| (200..300).contains(&c))
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Behaviour>,
    requests: Vec<Request>,
    /// Events in requests answered 2xx (kept, so that waiting for a count
    /// does not walk every request each time one arrives).
    acknowledged: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on every request recorded.
    recorded: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A test thread that panicked holding it leaves usable data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The receiver (see the module docs). Stops accepting when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Listens on 127.0.0.1 on a free port.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            recorded: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("receiver-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let s = s.clone();
                    let _ = std::thread::Builder::new()
                        .name("receiver-conn".into())
                        .spawn(move || serve(conn, &s));
                }
            })
            .expect("start the receiver");
        Receiver {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:<port>/ingest`.
    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues how to answer the next requests, after what is queued.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.shared.lock().script.extend(behaviours);
    }

    /// Every request so far, in the order received.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// The events of every request answered 2xx, in order.
    pub fn acknowledged_events(&self) -> Vec<Value> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.acknowledged())
            .flat_map(Request::events)
            .collect()
    }

    /// How many events were in requests answered 2xx.
    pub fn acknowledged_count(&self) -> usize {
        self.shared.lock().acknowledged
    }

    /// Waits until `done` holds of the requests so far, or `timeout`;
    /// whether it held.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[Request]) -> bool) -> bool {
        self.wait_state(timeout, |s| done(&s.requests))
    }

    fn wait_state(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if done(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .recorded
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until at least `n` events were acknowledged, or `timeout`.
    pub fn wait_for_events(&self, n: usize, timeout: Duration) -> bool {
        self.wait_state(timeout, |s| s.acknowledged >= n)
    }

    /// Waits until at least `n` requests arrived, or `timeout`.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |rs| rs.len() >= n)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop with one last connection.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// A request's head and body as read off the connection.
struct Incoming {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
    chunked: bool,
}

/// Serves requests on one connection until it closes or is closed.
fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut input = BufReader::new(conn);
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(req) = read_request(&mut input) else {
            return;
        };
        if req.chunked {
            let _ = respond(
                &mut out,
                501,
                "{\"error\": \"chunked bodies are not read\"}",
                false,
            );
            return;
        }
        // Script and record under one lock, before answering: when the
        // client has its answer, the request is recorded.
        let behaviour = {
            let mut state = shared.lock();
            let b = state.script.pop_front().unwrap_or(Behaviour::Ok);
            let answered = match b {
                Behaviour::Ok => Some(200),
                Behaviour::Status(c) => Some(c),
                Behaviour::Hang(_) | Behaviour::Close => None,
            };
            let request = Request {
                json: serde_json::from_slice(&req.body).ok(),
                method: req.method,
                path: req.path,
                headers: req.headers,
                body: req.body,
                answered,
            };
            if request.acknowledged() {
                state.acknowledged += request.event_count();
            }
            state.requests.push(request);
            shared.recorded.notify_all();
            b
        };
        let kept = match behaviour {
            Behaviour::Ok => respond(&mut out, 200, "{}", req.keep_alive),
            Behaviour::Status(c) => {
                respond(&mut out, c, "{\"error\": \"scripted\"}", req.keep_alive)
            }
            Behaviour::Hang(d) => {
                std::thread::sleep(d);
                false
            }
            Behaviour::Close => false,
        };
        if !kept {
            let _ = out.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// Writes an answer; whether the connection stays open.
fn respond(out: &mut TcpStream, code: u16, body: &str, keep_alive: bool) -> bool {
    let reason = match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Scripted",
    };
    let body = if code == 204 { "" } else { body };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" }
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    out.write_all(&bytes).and_then(|()| out.flush()).is_ok() && keep_alive
}

/// Reads one request; `None` at the end of the connection or on what is
/// not HTTP.
fn read_request(input: &mut BufReader<TcpStream>) -> Option<Incoming> {
    let mut line = String::new();
    // Blank lines before a request are allowed (RFC 9112 §2.2).
    while line.trim().is_empty() {
        line.clear();
        if input.read_line(&mut line).ok()? == 0 {
            return None;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let version = parts.next().unwrap_or("HTTP/1.0").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if input.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let keep_alive = match get("connection") {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => version == "HTTP/1.1",
    };
    let len: usize = match get("content-length") {
        Some(v) => v.parse().ok()?,
        None => 0,
    };
    let mut body = vec![0u8; len];
    if !chunked {
        input.read_exact(&mut body).ok()?;
    }
    Some(Incoming {
        method,
        path,
        headers,
        body,
        keep_alive,
        chunked,
    })
}
