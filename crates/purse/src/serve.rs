//! `purse serve`: the HTTP server over one engine. Stops gracefully on SIGTERM or Ctrl-C:
//! no new connections, in-flight requests answered, queued batches committed, then exit.

use purse_app::recharger::Recharger;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use purse_engine::{Clock, Engine, EngineConfig};

use crate::Opened;
use purse_app::notifier::{AlertConfig, Notifier, Worker};

pub struct ServeOptions {
    pub listen: String,
    pub engine: EngineConfig,
    /// The application's, the API's and the portal's settings.
    pub web: crate::web::WebSettings,
    /// Notifications and the scheduler; `None` runs no worker.
    pub alerts: Option<AlertConfig>,
    /// Auto-recharge and card payments (Stripe, when configured).
    pub payments: purse_app::recharger::PaymentConfig,
    /// How long Purse waits for the next bytes of a request: its head, each piece of its
    /// body, or a kept-alive connection's next request (see [`serve_http`]).
    pub read_timeout: Duration,
}

/// [`ServeOptions::read_timeout`] unless configured: hyper's own default for a request's
/// head, which `axum::serve` never armed (it sets no timer).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server: its address, and a way to stop it and wait.
pub struct Server {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<crate::error::Result<()>>>,
    worker: Option<Worker>,
    /// Where notification e-mail goes, when notifications run.
    pub mail: Option<String>,
    /// The database it serves.
    pub url: String,
    /// Its payment settings.
    pub payments: purse_app::recharger::PaymentConfig,
}

impl Server {
    /// Stops taking connections, finishes in-flight requests and queued batches.
    pub fn stop(mut self) -> crate::error::Result<()> {
        self.shutdown()
    }

    /// Blocks until the server stops by itself (a signal).
    pub fn wait(mut self) -> crate::error::Result<()> {
        let result = self.thread.take().map_or(Ok(()), |t| {
            t.join().unwrap_or_else(|_| Err(crate::Error::Failed("server thread panicked".into())))
        });
        self.worker.take();
        result
    }

    fn shutdown(&mut self) -> crate::error::Result<()> {
        self.worker.take();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread
            .take()
            .map_or(Ok(()), |t| t.join().unwrap_or_else(|_| Err(crate::Error::Failed("server thread panicked".into()))))
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
pub fn start(opened: Opened, clock: Arc<dyn Clock>, options: ServeOptions) -> crate::error::Result<Server> {
    launch(opened, clock, options, false)
}

/// [`start`]; with `announce`, the "listening" line is written to standard error before the
/// notification worker starts, so it is always the first line (scripts and tests wait for it).
fn launch(
    opened: Opened,
    clock: Arc<dyn Clock>,
    options: ServeOptions,
    announce: bool,
) -> crate::error::Result<Server> {
    let (access, alerts, payments, credit, rating, grants, url) = (
        opened.access.clone(),
        opened.alerts.clone(),
        opened.payments.clone(),
        opened.credit.clone(),
        opened.rating.clone(),
        opened.grants.clone(),
        opened.url.clone(),
    );
    let reader = opened.reader.clone();
    let engine = Arc::new(Engine::start(opened.store, opened.reader, clock, options.engine));
    let operator_email = options.alerts.as_ref().and_then(|a| a.operator_email.clone());
    let notifier = match options.alerts {
        Some(config) => {
            let side = crate::open_side(&url).map_err(crate::Error::from)?;
            let worker_payments = Recharger::new(
                engine.clone(),
                side.reader.clone(),
                side.alerts.clone(),
                side.payments,
                options.payments.clone(),
                operator_email.clone(),
            );
            let notifier = Notifier::new(engine.clone(), side.reader, side.alerts, side.access, config)
                .map_err(crate::Error::from)?;
            Some(notifier.with_payments(Arc::new(worker_payments)).with_credit(side.credit).with_grants(side.grants))
        }
        None => None,
    };
    let mail = notifier.as_ref().map(Notifier::describe_mail);
    let payment_config = options.payments.clone();
    let cards =
        Recharger::new(engine.clone(), reader, alerts.clone(), payments.clone(), options.payments, operator_email);
    let stores = purse_app::Stores { access, alerts, payments, credit, rating, grants };
    let app = purse_app::App::new(engine.clone(), stores, options.web.app.clone()).with_cards(Arc::new(cards));
    let app = Arc::new(app);
    spawn_session_expiry(Arc::downgrade(&app));
    let router = crate::web::router(app, options.web.api, options.web.portal);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(http_workers(std::thread::available_parallelism().map_or(1, |n| n.get())));
    }
    let runtime = runtime.enable_all().build().map_err(crate::Error::from)?;
    let read_timeout = options.read_timeout;
    let std_listener = std::net::TcpListener::bind(&options.listen)
        .map_err(|e| crate::Error::Failed(format!("--listen {}: {e}", options.listen)))?;
    std_listener.set_nonblocking(true).map_err(crate::Error::from)?;
    let addr = std_listener.local_addr().map_err(crate::Error::from)?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("purse-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).map_err(crate::Error::from)?;
                serve_http(listener, router, signalled(stopped), read_timeout).await;
                Ok(())
            })
        })
        .map_err(crate::Error::from)?;
    if announce {
        eprintln!(
            "{}",
            serde_json::json!({ "level": "info", "msg": "listening", "addr": addr.to_string(), "listen": options.listen })
        );
        if let Some(mail) = &mail {
            eprintln!("{}", serde_json::json!({ "level": "info", "msg": "notifications", "mail": mail }));
        }
    }
    let worker = notifier.map(|n| Arc::new(n).spawn()).transpose()?;
    Ok(Server { addr, engine, stop: Some(stop), thread: Some(thread), worker, mail, url, payments: payment_config })
}

/// Serves HTTP/1.1 on `listener` until `stop`: then accepts no more, lets every connection
/// finish the request it is answering, and returns once all are closed. A connection that
/// takes longer than `read_timeout` to send a request's head (a client that trickles its
/// headers, or one that holds a kept-alive connection idle) is closed, and a body that stops
/// arriving for as long fails its request (408, `purse_http::body::Patient`): clients who
/// never finish cannot hold the process's file descriptors, or its handlers, from anyone.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: impl std::future::Future<Output = ()>,
    read_timeout: Duration,
) {
    let (closing, _) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
            // Finished connections leave the set as they go.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // Out of file descriptors, or a connection reset before it was accepted: the
            // listener stays, and the next accept comes after a pause rather than a spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let request = request.map(|body| axum::body::Body::new(purse_http::body::Patient::new(body, read_timeout)));
            tower::ServiceExt::oneshot(router.clone(), request)
        });
        let mut closing = closing.subscribe();
        connections.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(read_timeout);
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closing.changed() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(closing);
    while connections.join_next().await.is_some() {}
}

/// The HTTP runtime's worker threads on a machine of `cores` (tokio's own
/// `TOKIO_WORKER_THREADS` overrides it): one fewer than the cores, at least one. The ledger's
/// writer is a thread of its own, busy whenever charges arrive; a worker for every core as
/// well makes the threads take the cores from each other (on 2 cores, one worker answered
/// single charges 10 % faster at 16 connections, and with a quarter of the p99 beside a
/// stream of batches: BENCHMARKS.md).
fn http_workers(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// Closes charging sessions not heard from within their time to live, every half second,
/// for as long as the application lives (several processes may: each session is closed once).
fn spawn_session_expiry(app: std::sync::Weak<purse_app::App>) {
    let _ = std::thread::Builder::new().name("purse-sessions".into()).spawn(move || {
        let mut failing = false;
        while let Some(app) = app.upgrade() {
            match app.expire_sessions() {
                Ok(_) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    eprintln!(
                        "{}",
                        serde_json::json!({ "level": "warn", "msg": "session expiry failed", "error": e.detail() })
                    );
                }
                Err(_) => {}
            }
            drop(app);
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    });
}

/// `purse serve`: runs until SIGTERM or Ctrl-C.
pub fn run(opened: Opened, clock: Arc<dyn Clock>, options: ServeOptions) -> crate::error::Result<()> {
    let server = launch(opened, clock, options, true)?;
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

#[cfg(test)]
mod tests {
    use super::http_workers;

    #[test]
    fn the_http_runtime_leaves_a_core_to_the_ledgers_writer() {
        assert_eq!(http_workers(1), 1, "one core still gets a worker");
        assert_eq!(http_workers(2), 1);
        assert_eq!(http_workers(8), 7);
    }
}
