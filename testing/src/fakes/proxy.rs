//! A TCP proxy between a service and its database that a test can cut or
//! freeze: an outage or a stall without touching the shared server.

use crate::db::base_database_url;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy in front of the database that a test can cut and restore, or
/// freeze and thaw, to simulate an outage without touching the shared server.
///
/// Frozen, it behaves like a server stopped with SIGSTOP: connections stay
/// open and new ones are accepted, but no byte moves in either direction until
/// it thaws; what was sent meanwhile arrives then.
pub struct TcpProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    frozen: tokio::sync::watch::Sender<bool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

/// Waits while the proxy is frozen.
async fn thawed(frozen: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = frozen.wait_for(|frozen| !frozen).await;
}

/// Copies `from` to `to`, holding everything while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        thawed(&mut frozen).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Read just as the freeze began: held too.
        thawed(&mut frozen).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl TcpProxy {
    /// Starts forwarding to the test database's server.
    pub async fn start() -> TcpProxy {
        let config: tokio_postgres::Config = base_database_url().parse().expect("test database URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let target = format!("{host}:{port}");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let (frozen, _) = tokio::sync::watch::channel(false);
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, links, frozen) = (up.clone(), links.clone(), frozen.clone());
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection close
                    }
                    let target = target.clone();
                    let mut gate = frozen.subscribe();
                    let link = tokio::spawn(async move {
                        // A frozen server accepts (the kernel does) but answers nothing.
                        thawed(&mut gate).await;
                        let Ok(outbound) = TcpStream::connect(&target).await else {
                            return;
                        };
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(
                            pump(in_read, out_write, gate.clone()),
                            pump(out_read, in_write, gate)
                        );
                    });
                    if let Ok(mut links) = links.lock() {
                        links.retain(|l| !l.is_finished());
                        links.push(link);
                    }
                }
            }
        });
        TcpProxy {
            addr,
            up,
            frozen,
            links,
            accept,
        }
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut links) = self.links.lock() {
            for link in links.drain(..) {
                link.abort();
            }
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Holds every byte in both directions, on open and new connections alike.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Delivers what was held and lets traffic flow again.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
