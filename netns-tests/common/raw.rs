//! Raw Ethernet frames in and out of a VM namespace's NIC: what a hostile
//! guest sends (any source, any ethertype), and counting what arrives at
//! the others. A thread joins the namespace (setns affects that thread
//! only) and opens an AF_PACKET socket there, which stays bound to that
//! namespace's device afterwards.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// An AF_PACKET socket on `dev` inside namespace `ns`.
pub struct RawSock {
    fd: i32,
}

impl RawSock {
    pub fn open(ns: &str, dev: &str) -> RawSock {
        let (ns, dev) = (ns.to_string(), dev.to_string());
        std::thread::spawn(move || open_in(&ns, &dev))
            .join()
            .expect("raw socket thread")
    }

    pub fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: fd is our open socket, the buffer outlives the call.
        let n = unsafe { libc::send(self.fd, frame.as_ptr().cast(), frame.len(), 0) };
        n == frame.len() as isize
    }

    /// The next frame, or None after the receive timeout.
    pub fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: fd is our open socket, buf is writable for its length.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n > 0).then_some(n as usize)
    }
}

impl Drop for RawSock {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

fn open_in(ns: &str, dev: &str) -> RawSock {
    let f = File::open(format!("/var/run/netns/{ns}")).expect("open netns");
    // SAFETY: plain syscalls on fds we own; this thread ends right after.
    unsafe {
        assert_eq!(
            libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET),
            0,
            "setns {ns}"
        );
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
        assert!(fd >= 0, "AF_PACKET socket in {ns}");
        let name = std::ffi::CString::new(dev).unwrap();
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert!(ifindex > 0, "no {dev} in {ns}");
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        let r = libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(r, 0, "bind to {dev} in {ns}");
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        RawSock { fd }
    }
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
