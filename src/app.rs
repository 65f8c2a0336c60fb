//! Start-up and shut-down order.
//!
//! 1. Resolve secrets (generate and print the missing ones).
//! 2. Start the engine: recover (newest valid snapshot, then the log),
//!    start the router, the cohort arbiters and the snapshotter.
//! 3. Bind the HTTP server (port 0 works: tests use it) and serve until
//!    SIGTERM/SIGINT, then stop accepting and drain in-flight requests
//!    within `shutdown_timeout_secs`.
//! 4. Take a final snapshot, sync the log, exit 0.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer};

use crate::config::Config;
use crate::engine::Engine;
use crate::http;
use crate::secrets::Secrets;

async fn launch(config: Config) -> Result<(Server, SocketAddr, Engine), String> {
    let (secrets, announce) = Secrets::ensure(&config)?;
    for line in announce {
        println!("{line}");
    }
    let engine = Engine::start(config.clone(), secrets).await?;
    let http_engine = engine.clone();
    let workers = match config.http_workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let server = HttpServer::new(move || {
        App::new()
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
    .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| "bound to no address".to_string())?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "cohortd listening");
    Ok((server.run(), addr, engine))
}

/// Serves until the server stops, then shuts the engine down.
async fn run(server: Server, engine: Engine) -> Result<(), String> {
    server.await.map_err(|e| e.to_string())?;
    tracing::info!("HTTP server stopped; taking the final snapshot");
    engine.shutdown().await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Runs the server in this thread until it is stopped by a signal.
pub fn serve(config: Config) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async move {
        let (server, _, engine) = launch(config).await?;
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            stop_signal().await;
            tracing::info!("stop signal received: draining in-flight requests");
            handle.stop(true).await;
        });
        run(server, engine).await
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
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Running {
    /// `http://addr`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: finish in-flight requests, then return.
    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), String> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        actix_web::rt::System::new().block_on(self.handle.stop(true));
        thread
            .join()
            .map_err(|_| "server thread panicked".to_string())?
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Starts a server on a thread of its own and returns once it listens.
pub fn start(config: Config) -> Result<Running, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            match launch(config).await {
                Ok((server, addr, engine)) => {
                    let _ = tx.send(Ok((addr, server.handle())));
                    run(server, engine).await
                }
                Err(e) => {
                    let _ = tx.send(Err(e.clone()));
                    Err(e)
                }
            }
        })
    });
    let (addr, handle) = rx
        .recv()
        .map_err(|_| "server thread ended before listening".to_string())??;
    Ok(Running {
        addr,
        handle,
        thread: Some(thread),
    })
}
