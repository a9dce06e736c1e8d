//! `purse serve`: the HTTP server over one engine. Stops gracefully on SIGTERM or Ctrl-C:
//! no new connections, in-flight requests answered, queued batches committed, then exit.

use std::net::SocketAddr;
use std::sync::Arc;

use purse_engine::{Clock, Engine, EngineConfig};
use purse_http::{ApiSettings, AppState};

use crate::alerts::{AlertConfig, Notifier, Worker};
use crate::Opened;

pub struct ServeOptions {
    pub listen: String,
    pub engine: EngineConfig,
    pub api: ApiSettings,
    /// Notifications and the scheduler; `None` runs no worker.
    pub alerts: Option<AlertConfig>,
}

/// A running server: its address, and a way to stop it and wait.
pub struct Server {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    worker: Option<Worker>,
}

impl Server {
    /// Stops taking connections, finishes in-flight requests and queued batches.
    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    /// Blocks until the server stops by itself (a signal).
    pub fn wait(mut self) -> Result<(), String> {
        let result = self.thread.take().map_or(Ok(()), |t| t.join().unwrap_or_else(|_| Err("server thread panicked".into())));
        self.worker.take();
        result
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.worker.take();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.take().map_or(Ok(()), |t| t.join().unwrap_or_else(|_| Err("server thread panicked".into())))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

async fn signalled(stop: tokio::sync::oneshot::Receiver<()>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = stop.await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = stop => {}
    }
}

/// Starts the engine and the server on its own thread (with its own runtime) and returns
/// once it listens.
pub fn start(opened: Opened, clock: Arc<dyn Clock>, options: ServeOptions) -> Result<Server, String> {
    let (access, alerts, url) = (opened.access.clone(), opened.alerts.clone(), opened.url.clone());
    let engine = Arc::new(Engine::start(opened.store, opened.reader, clock, options.engine));
    let worker = match options.alerts {
        Some(config) => {
            let side = crate::open_side(&url).map_err(|e| e.to_string())?;
            let notifier = Notifier::new(engine.clone(), side.reader, side.alerts, side.access, config)?;
            eprintln!("{}", serde_json::json!({ "level": "info", "msg": "notifications", "mail": notifier.describe_mail() }));
            Some(Arc::new(notifier).spawn()?)
        }
        None => None,
    };
    let state = AppState::new(engine.clone(), access, alerts, options.api);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let std_listener = std::net::TcpListener::bind(&options.listen).map_err(|e| format!("--listen {}: {e}", options.listen))?;
    std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("purse-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
                let app = purse_http::app(state);
                axum::serve(listener, app).with_graceful_shutdown(signalled(stopped)).await.map_err(|e| e.to_string())
            })
        })
        .map_err(|e| e.to_string())?;
    Ok(Server { addr, engine, stop: Some(stop), thread: Some(thread), worker })
}

/// `purse serve`: runs until SIGTERM or Ctrl-C.
pub fn run(opened: Opened, clock: Arc<dyn Clock>, options: ServeOptions) -> Result<(), String> {
    let listen = options.listen.clone();
    let server = start(opened, clock, options)?;
    eprintln!("{}", serde_json::json!({ "level": "info", "msg": "listening", "addr": server.addr.to_string(), "listen": listen }));
    let engine = server.engine.clone();
    server.wait()?;
    // The server's handlers are gone; the last reference finishes the queued batches.
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.shutdown(),
        Err(engine) => drop(engine),
    }
    eprintln!("{}", serde_json::json!({ "level": "info", "msg": "stopped" }));
    Ok(())
}
