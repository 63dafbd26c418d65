//! A TCP forwarder that plays a database endpoint whose DNS name flips on failover, as RDS
//! Multi-AZ does: clients connect to [`Forwarder::addr`], each connection is copied byte for byte
//! to the current target, and [`Forwarder::point_to`] moves the endpoint to a new target and
//! closes every connection open through it (the old instance is gone, so are its connections).
//!
//! [`Forwarder::freeze`] stops copying in both directions until thawed: the connections stay
//! open and the bytes wait. Put it between a standby and its primary (`.ci/postgres ha start`
//! with `ECOCITYHUB_PG_HA_UPSTREAM_PORT` set to the forwarder's port) and it is a replication
//! link that lags: in async mode the primary acknowledges commits the standby never gets; in sync
//! mode those commits wait. PostgreSQL's `wal_sender_timeout` (60 s) closes a link frozen for
//! longer, and the standby then reconnects (through the forwarder, frozen or not).
//!
//! Plain threads, no runtime: one accepting, two per connection. Dropping the forwarder closes
//! the listener and every connection.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a new connection may take to reach the target before the client is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP forwarder on 127.0.0.1 (see the module's documentation).
pub struct Forwarder {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accepter: Option<JoinHandle<()>>,
}

/// What the accepting thread, the copying threads and the handle share.
struct Shared {
    state: Mutex<State>,
    /// Signalled whenever `frozen` is cleared or connections are closed.
    changed: Condvar,
}

struct State {
    target: SocketAddr,
    frozen: bool,
    stopped: bool,
    /// Bumped by `point_to`: a connection made to an older target is not let through.
    epoch: u64,
    next_id: u64,
    /// Each open connection's client and upstream sockets, to close them from outside.
    open: HashMap<u64, [TcpStream; 2]>,
}

impl Forwarder {
    /// Binds 127.0.0.1 on a free port and forwards each connection to `target`. The target is
    /// connected to when a client connects, so it need not be up yet.
    pub fn start(target: SocketAddr) -> std::io::Result<Forwarder> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                target,
                frozen: false,
                stopped: false,
                epoch: 0,
                next_id: 0,
                open: HashMap::new(),
            }),
            changed: Condvar::new(),
        });
        let accepter = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("forwarder-accept".into())
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(Forwarder {
            addr,
            shared,
            accepter: Some(accepter),
        })
    }

    /// The endpoint's address (127.0.0.1 and the port bound).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address new connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.shared.lock().target
    }

    /// Flips the endpoint: new connections go to `new`, and every connection open now is closed.
    pub fn point_to(&self, new: SocketAddr) {
        let mut state = self.shared.lock();
        state.target = new;
        state.epoch += 1;
        close_all(&mut state);
        self.shared.changed.notify_all();
    }

    /// While `true`, no byte is copied in either direction; bytes already read wait, and are
    /// delivered in order once thawed (`false`).
    pub fn freeze(&self, frozen: bool) {
        self.shared.lock().frozen = frozen;
        self.shared.changed.notify_all();
    }

    /// How many connections are open through the forwarder.
    pub fn open_connections(&self) -> usize {
        self.shared.lock().open.len()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stopped = true;
            close_all(&mut state);
        }
        self.shared.changed.notify_all();
        // Wakes the accepting thread, which sees `stopped` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accepter) = self.accepter.take() {
            let _ = accepter.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an open connection, unless the forwarder stopped or was pointed elsewhere since
    /// the connection's target was read (`epoch`).
    fn register(&self, epoch: u64, client: &TcpStream, upstream: &TcpStream) -> Option<u64> {
        let sockets = [client.try_clone().ok()?, upstream.try_clone().ok()?];
        let mut state = self.lock();
        if state.stopped || state.epoch != epoch {
            return None;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.open.insert(id, sockets);
        Some(id)
    }

    fn forget(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    /// Waits while frozen; `false` once connection `id` has been closed from outside.
    fn wait_thawed(&self, id: u64) -> bool {
        let mut state = self.lock();
        while state.frozen && state.open.contains_key(&id) {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.open.contains_key(&id)
    }
}

fn close_all(state: &mut State) {
    for [client, upstream] in state.open.drain().map(|(_, sockets)| sockets) {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.lock().stopped {
            return;
        }
        let Ok(client) = client else { continue };
        let shared = Arc::clone(&shared);
        let _ = std::thread::Builder::new()
            .name("forwarder-conn".into())
            .spawn(move || serve(client, shared));
    }
}

/// Connects to the target and copies both ways until either side closes or the connection is
/// closed from outside. A target that cannot be reached closes the client.
fn serve(client: TcpStream, shared: Arc<Shared>) {
    let (target, epoch) = {
        let state = shared.lock();
        (state.target, state.epoch)
    };
    let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let Some(id) = shared.register(epoch, &client, &upstream) else {
        return;
    };
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        shared.forget(id);
        return;
    };
    let upward = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("forwarder-copy".into())
            .spawn(move || copy(client2, upstream2, &shared, id))
    };
    copy(upstream, client, &shared, id);
    if let Ok(upward) = upward {
        let _ = upward.join();
    }
    shared.forget(id);
}

/// Copies `from` to `to`, each chunk once thawed. At the end of `from` the write side of `to` is
/// shut (a half close passes through); on an error, or once closed from outside, both sockets
/// are shut.
fn copy(mut from: TcpStream, mut to: TcpStream, shared: &Shared, id: u64) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(_) => break,
        };
        if !shared.wait_thawed(id) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// An echo server on 127.0.0.1; the counter counts the connections it accepted.
    fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || echo(stream));
            }
        });
        (addr, accepted)
    }

    fn echo(mut stream: TcpStream) {
        let mut writer = stream.try_clone().unwrap();
        let _ = std::io::copy(&mut stream, &mut writer);
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    }

    /// Sends `bytes` and reads them back.
    fn round_trip(stream: &mut TcpStream, bytes: &[u8]) {
        stream.write_all(bytes).unwrap();
        let mut back = vec![0u8; bytes.len()];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back, bytes);
    }

    /// The stream was closed: a read ends (0 bytes) or fails, within 5 s, with nothing echoed.
    fn assert_closed(stream: &mut TcpStream) {
        let _ = stream.write_all(b"anyone?");
        let mut buf = [0u8; 16];
        match stream.read(&mut buf) {
            Ok(0) => {}
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "still open after 5 s"
            ),
            Ok(n) => panic!("read {n} bytes from a connection that should be closed"),
        }
    }

    fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn bytes_pass_both_ways() {
        let (echo, _) = echo_server();
        let forwarder = Forwarder::start(echo).unwrap();
        assert_eq!(forwarder.addr().ip().to_string(), "127.0.0.1");
        let mut stream = connect(forwarder.addr());
        round_trip(&mut stream, b"hello");
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut writer = stream.try_clone().unwrap();
        let sent = big.clone();
        let sender = std::thread::spawn(move || writer.write_all(&sent).unwrap());
        let mut back = vec![0u8; big.len()];
        stream.read_exact(&mut back).unwrap();
        sender.join().unwrap();
        assert!(back == big, "200 kB came back changed");
        assert_eq!(forwarder.open_connections(), 1);
    }

    #[test]
    fn point_to_switches_new_connections_and_cuts_old_ones() {
        let (a, accepted_a) = echo_server();
        let (b, accepted_b) = echo_server();
        let forwarder = Forwarder::start(a).unwrap();
        let mut old = connect(forwarder.addr());
        round_trip(&mut old, b"to a");

        forwarder.point_to(b);
        assert_eq!(forwarder.target(), b);
        assert_closed(&mut old);
        let mut new = connect(forwarder.addr());
        round_trip(&mut new, b"to b");
        assert_eq!(accepted_a.load(Ordering::SeqCst), 1);
        assert_eq!(accepted_b.load(Ordering::SeqCst), 1);
        wait_until("only the new connection is open", || {
            forwarder.open_connections() == 1
        });
    }

    #[test]
    fn freeze_holds_bytes_until_thawed() {
        let (echo, _) = echo_server();
        let forwarder = Forwarder::start(echo).unwrap();
        let mut stream = connect(forwarder.addr());
        round_trip(&mut stream, b"warm");

        forwarder.freeze(true);
        stream.write_all(b"held").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 4];
        let err = stream
            .read(&mut buf)
            .expect_err("nothing passes while frozen");
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );

        forwarder.freeze(false);
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"held");
    }

    #[test]
    fn point_to_cuts_frozen_connections_too() {
        let (a, _) = echo_server();
        let (b, _) = echo_server();
        let forwarder = Forwarder::start(a).unwrap();
        let mut old = connect(forwarder.addr());
        round_trip(&mut old, b"warm");
        forwarder.freeze(true);
        old.write_all(b"held").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        forwarder.point_to(b);
        assert_closed(&mut old);
        wait_until("the frozen connection is gone", || {
            forwarder.open_connections() == 0
        });
    }

    #[test]
    fn an_unreachable_target_closes_the_client() {
        let gone = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let forwarder = Forwarder::start(gone).unwrap();
        let mut stream = connect(forwarder.addr());
        assert_closed(&mut stream);
    }

    #[test]
    fn drop_closes_the_listener_and_the_connections() {
        let (echo, _) = echo_server();
        let forwarder = Forwarder::start(echo).unwrap();
        let addr = forwarder.addr();
        let mut stream = connect(addr);
        round_trip(&mut stream, b"hi");
        drop(forwarder);
        assert_closed(&mut stream);
        assert!(TcpStream::connect(addr).is_err(), "still listening");
    }
}
