//! A NATS JetStream cluster for tests: `n` real `nats-server` processes
//! (Debian's, 2.9) clustered over loopback routes, JetStream on, each with
//! its own store dir. Servers can be killed and started again on the same
//! ports and store.
//!
//! `nats-server` must be installed (`.ci/run` installs it); with
//! `CI=true` its absence fails the test, elsewhere [`available`] says so
//! and the test returns early.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary, if installed.
pub fn binary() -> Option<PathBuf> {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Whether the tests can run here; with `CI=true` they must.
pub fn available() -> bool {
    if binary().is_some() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "cluster tests need nats-server (apt-get install nats-server; .ci/run does it)"
    );
    eprintln!("skipping: cluster tests need nats-server (apt-get install nats-server)");
    false
}

struct Node {
    client_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// A free loopback port (bound, then released: another process could take
/// it in between, which on a test machine does not happen in practice).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl NatsCluster {
    /// Starts `n` clustered servers and waits until JetStream answers.
    pub fn start(n: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("nats-route://127.0.0.1:{route}"))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (client, route))| {
                let store = dir.path().join(format!("js-{i}"));
                let config = dir.path().join(format!("n{i}.conf"));
                std::fs::write(&config, conf(i, *client, *route, &store, &routes))
                    .expect("write config");
                Node {
                    client_port: *client,
                    config,
                    child: None,
                }
            })
            .collect();
        let mut c = NatsCluster { nodes, _dir: dir };
        for i in 0..n {
            c.start_node(i);
        }
        c.wait_ready();
        c
    }

    /// Every server's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect()
    }

    /// The running servers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// `kill -9` server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again (same ports, same store).
    pub fn start_node(&mut self, i: usize) {
        let bin = binary().expect("nats-server");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.nodes[i].child = Some(child);
    }

    /// Waits until every running server takes connections and the
    /// cluster has a JetStream meta leader (a stream can be created).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            while std::net::TcpStream::connect(("127.0.0.1", n.client_port)).is_err() {
                assert!(Instant::now() < deadline, "nats-server did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // JetStream's meta leader: `$JS.API.INFO` answers once there is one.
        // On a thread of its own: callers may be inside a runtime already.
        let urls = self.urls();
        std::thread::spawn(move || ready(urls, deadline))
            .join()
            .expect("JetStream did not become ready");
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Waits until an R3 stream can be created and deleted: the cluster has a
/// JetStream meta leader and a quorum of servers.
fn ready(urls: Vec<String>, deadline: Instant) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        loop {
            let probe = async {
                let client = async_nats::connect(urls.clone())
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let js = async_nats::jetstream::new(client);
                js.get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: "READY_PROBE".into(),
                    subjects: vec!["ready.probe".into()],
                    // As cohortd's shard streams are: file storage, every
                    // server a replica (placement needs each one's peer
                    // up, which a loaded machine can take a while to see).
                    storage: async_nats::jetstream::stream::StorageType::File,
                    num_replicas: urls.len().min(3),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("probe stream: {e}"))?;
                js.delete_stream("READY_PROBE")
                    .await
                    .map_err(|e| format!("probe delete: {e}"))
            };
            let outcome = tokio::time::timeout(Duration::from_secs(2), probe)
                .await
                .unwrap_or_else(|_| Err("no answer in 2 s".into()));
            match outcome {
                Ok(_) => return,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "JetStream did not become ready: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Server `i`'s config: `deploy/cluster/nats-<i+1>.conf`, the example a
/// deployment starts from, with this cluster's ports and store dir in
/// place of the example's.
fn conf(i: usize, client: u16, route: u16, store: &Path, routes: &[String]) -> String {
    let path = format!(
        "{}/deploy/cluster/nats-{}.conf",
        env!("CARGO_MANIFEST_DIR"),
        i + 1
    );
    let example = std::fs::read_to_string(&path).expect("the deploy example (3 servers at most)");
    let example_routes = "[\"nats-route://127.0.0.1:6222\", \"nats-route://127.0.0.1:6223\", \
                          \"nats-route://127.0.0.1:6224\"]";
    let replaced = [
        (
            format!("127.0.0.1:{}\"\njetstream", 4222 + i),
            format!("127.0.0.1:{client}\"\njetstream"),
        ),
        (
            format!("listen: \"127.0.0.1:{}\"\n  routes", 6222 + i),
            format!("listen: \"127.0.0.1:{route}\"\n  routes"),
        ),
        (
            format!("/var/lib/nats/n{}", i + 1),
            store.display().to_string(),
        ),
        (
            example_routes.to_string(),
            format!(
                "[{}]",
                routes
                    .iter()
                    .map(|r| format!("\"{r}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    ];
    let mut text = example;
    for (from, to) in replaced {
        assert!(text.contains(&from), "{path} has no {from:?}");
        text = text.replace(&from, &to);
    }
    text
}
