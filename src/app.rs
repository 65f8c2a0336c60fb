//! Start-up and shut-down order.
//!
//! 1. Resolve secrets (generate and print the missing ones).
//! 2. Bind the listen address (port 0 works: tests use it), and answer on
//!    it at once: `/healthz` 200, `/readyz` 503 "recovering", anything else
//!    503. A port in use fails start-up before any recovery work.
//! 3. Start the engine: recover (newest valid snapshot, then the log),
//!    start the router, the cohort arbiters and the snapshotter.
//! 4. Hand the listener to the real HTTP server, retire the recovering
//!    one, mark the engine ready. Serve until SIGTERM/SIGINT, then stop
//!    accepting and drain in-flight requests within `shutdown_timeout_secs`.
//! 5. Take a final snapshot, sync the log, exit 0.

use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer};

use crate::config::Config;
use crate::engine::Engine;
use crate::error::StartError;
use crate::http;
use crate::secrets::Secrets;

async fn launch(config: Config) -> Result<(Server, SocketAddr, Engine), StartError> {
    let (secrets, announce) = Secrets::ensure(&config).map_err(StartError::Secrets)?;
    for line in announce {
        println!("{line}");
    }
    let listen = |source| StartError::Listen {
        addr: config.listen,
        source,
    };
    let listener = TcpListener::bind(config.listen).map_err(listen)?;
    let addr = listener.local_addr().map_err(listen)?;
    let recovering = HttpServer::new(|| App::new().configure(http::recovering))
        .workers(1)
        .disable_signals()
        .listen(listener.try_clone().map_err(listen)?)
        .map_err(listen)?
        .run();
    let recovering_handle = recovering.handle();
    actix_web::rt::spawn(recovering);
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "cohortd listening; recovering");

    let engine = match Engine::start(config.clone(), secrets).await {
        Ok(engine) => engine,
        Err(e) => {
            recovering_handle.stop(false).await;
            return Err(e);
        }
    };
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
    .listen(listener)
    .map_err(listen)?
    .run();
    // Both accept on the socket for a moment; the recovering one stops
    // taking connections now and finishes what it took.
    recovering_handle.stop(true).await;
    engine.set_ready();
    tracing::info!(%addr, "cohortd ready");
    Ok((server, addr, engine))
}

/// Serves until the server stops, then shuts the engine down.
async fn run(server: Server, engine: Engine) -> Result<(), StartError> {
    server
        .await
        .map_err(|e| StartError::Runtime(format!("HTTP server: {e}")))?;
    tracing::info!("HTTP server stopped; taking the final snapshot");
    engine.shutdown().await.map_err(StartError::Runtime)?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Runs the server in this thread until it is stopped by a signal.
pub fn serve(config: Config) -> Result<(), StartError> {
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
                Ok((server, addr, engine)) => {
                    let _ = tx.send(Ok((addr, server.handle())));
                    run(server, engine).await
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
