//! Start-up and shut-down order.
//!
//! 1. Resolve secrets (generate and print the missing ones).
//! 2. Bind the listen address (port 0 works: tests use it) and serve at
//!    once: while the engine recovers, `/healthz` answers 200, `/readyz`
//!    503 "recovering", and everything else 503 (`http::until_ready`). A
//!    port in use fails start-up before any recovery work.
//! 3. Recover (newest valid snapshot, then the log), start the router, the
//!    cohort arbiters and the snapshotter; then mark the engine ready.
//! 4. Serve until SIGTERM/SIGINT, then stop accepting and drain in-flight
//!    requests within `shutdown_timeout_secs`.
//! 5. Take a final snapshot, sync the log, exit 0.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer};

use crate::config::Config;
use crate::engine::Engine;
use crate::error::StartError;
use crate::http;
use crate::secrets::Secrets;

/// A server that serves: its handle, the task it runs in, its address.
struct Launched {
    handle: ServerHandle,
    serving: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    addr: SocketAddr,
    engine: Engine,
}

async fn launch(config: Config) -> Result<Launched, StartError> {
    config.check_secrets().map_err(StartError::Config)?;
    let (secrets, announce) = Secrets::ensure(&config).map_err(StartError::Secrets)?;
    for line in announce {
        println!("{line}");
    }
    let engine = Engine::new(config.clone(), secrets);
    let http_engine = engine.clone();
    let workers = match config.http_workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let listen = |source| StartError::Listen {
        addr: config.listen,
        source,
    };
    let server = HttpServer::new(move || {
        App::new()
            .wrap(http::cluster::Routing)
            .wrap_fn(http::until_ready)
            .wrap_fn(http::observe)
            .configure(http::configure(http_engine.clone()))
    })
    .workers(workers)
    // Signals are ours (see `serve`): actix-server would stop the whole
    // System on SIGTERM, before the final snapshot, and treat SIGINT as a
    // hard stop.
    .disable_signals()
    .shutdown_timeout(config.shutdown_timeout_secs)
    .bind(config.listen)
    .map_err(listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| StartError::Runtime("bound to no address".into()))?;
    let server = server.run();
    let handle = server.handle();
    // Serving starts now, on its own task: probes answer during recovery.
    let serving = actix_web::rt::spawn(server);
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "cohortd listening; recovering");
    if let Err(e) = engine.recover().await {
        handle.stop(false).await;
        return Err(e);
    }
    engine.set_ready();
    tracing::info!(%addr, "cohortd ready");
    Ok(Launched {
        handle,
        serving,
        addr,
        engine,
    })
}

/// Serves until the server stops, then shuts the engine down.
async fn run(launched: Launched) -> Result<(), StartError> {
    let Launched {
        serving, engine, ..
    } = launched;
    serving
        .await
        .map_err(|e| StartError::Runtime(format!("HTTP server task: {e}")))?
        .map_err(|e| StartError::Runtime(format!("HTTP server: {e}")))?;
    tracing::info!("HTTP server stopped; taking the final snapshot");
    engine.shutdown().await.map_err(StartError::Runtime)?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Runs the server in this thread until it is stopped by a signal.
pub fn serve(config: Config) -> Result<(), StartError> {
    actix_web::rt::System::new().block_on(async move {
        let launched = launch(config).await?;
        let handle = launched.handle.clone();
        actix_web::rt::spawn(async move {
            stop_signal().await;
            tracing::info!("stop signal received: draining in-flight requests");
            handle.stop(true).await;
        });
        run(launched).await
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A server running on its own thread (tests, benchmarks).
pub struct Running {
    pub addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<Result<(), StartError>>>,
}

impl Running {
    /// `http://addr`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: finish in-flight requests, then return.
    pub fn stop(mut self) -> Result<(), StartError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StartError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        actix_web::rt::System::new().block_on(self.handle.stop(true));
        thread
            .join()
            .map_err(|_| StartError::Runtime("server thread panicked".into()))?
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Starts a server on a thread of its own and returns once it listens.
pub fn start(config: Config) -> Result<Running, StartError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            match launch(config).await {
                Ok(launched) => {
                    let _ = tx.send(Ok((launched.addr, launched.handle.clone())));
                    run(launched).await
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    Err(StartError::Runtime("start-up failed".into()))
                }
            }
        })
    });
    let (addr, handle) = rx
        .recv()
        .map_err(|_| StartError::Runtime("the server thread ended before listening".into()))??;
    Ok(Running {
        addr,
        handle,
        thread: Some(thread),
    })
}
