//! Raw Ethernet frames in and out of a VM namespace's NIC: what a hostile
//! guest sends (any source, any ethertype), and counting what arrives at
//! the others. A thread joins the namespace (setns affects that thread
//! only) and opens an AF_PACKET socket there, which stays bound to that
//! namespace's device afterwards.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use meshwire::sys::{fd, ifreq, ns, socket, sockopt};

/// An AF_PACKET socket on `dev` inside namespace `ns`.
pub struct RawSock {
    fd: OwnedFd,
}

impl RawSock {
    pub fn open(ns: &str, dev: &str) -> RawSock {
        let (ns, dev) = (ns.to_string(), dev.to_string());
        std::thread::spawn(move || open_in(&ns, &dev))
            .join()
            .expect("raw socket thread")
    }

    pub fn send(&self, frame: &[u8]) -> bool {
        fd::send(&self.fd, frame, 0).is_ok_and(|n| n == frame.len())
    }

    /// The next frame, or None after the receive timeout.
    pub fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        fd::recv(&self.fd, buf, 0).ok().filter(|&n| n > 0)
    }
}

/// Runs on a thread of its own, which ends right after: setns affects
/// that thread only.
fn open_in(netns: &str, dev: &str) -> RawSock {
    let f = File::open(format!("/var/run/netns/{netns}")).expect("open netns");
    ns::setns_net(&f).unwrap_or_else(|e| panic!("setns {netns}: {e}"));
    let proto = (libc::ETH_P_ALL as u16).to_be();
    let fd = socket::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto))
        .unwrap_or_else(|e| panic!("AF_PACKET socket in {netns}: {e}"));
    let ifindex = ifreq::ifindex_of(dev)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no {dev} in {netns}"));
    socket::bind_packet(&fd, ifindex, proto)
        .unwrap_or_else(|e| panic!("bind to {dev} in {netns}: {e}"));
    let _ = sockopt::set_recv_timeout(&fd, Duration::from_millis(100));
    RawSock { fd }
}

/// Counts the frames arriving at a VM's NIC that `matches` picks, until
/// stopped.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Vec<u8>>>>,
}

impl Capture {
    pub fn start(ns: &str, dev: &str, matches: impl Fn(&[u8]) -> bool + Send + 'static) -> Capture {
        let sock = RawSock::open(ns, dev);
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Some(n) = sock.recv(&mut buf) {
                    if matches(&buf[..n]) && got.len() < 100_000 {
                        got.push(buf[..n].to_vec());
                    }
                }
            }
            got
        });
        Capture {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops after `settle` (for frames still in flight) and returns what
    /// matched.
    pub fn finish(mut self, settle: Duration) -> Vec<Vec<u8>> {
        std::thread::sleep(settle);
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("capture thread")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
