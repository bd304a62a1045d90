//! Attaching to a TAP that another process holds (AF_PACKET), against the
//! real kernel. The test plays both other parts: qemu (it holds the TAP's
//! file side and copies frames between it and a "guest NIC", a TAP whose
//! netdev sits in namespace A with an address) and the switch (it forwards
//! between the attached port and an ordinary TAP port whose netdev sits in
//! namespace B). A real TCP transfer from A to B must arrive intact, with
//! the guest's super-frames passing through the packet socket; then the
//! attached TAP goes away and comes back (a VM restart) and traffic resumes.
//!
//! Runs on its own thread in a namespace of its own (unshare), where the
//! attached TAP and the packet socket live, as in a hypervisor namespace.

use std::io;
use std::os::fd::RawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use super::offload::{finished, output, spawn_py, CLIENT, SERVER};
use crate::port::testnet::{unique_name, Netns};
use crate::port::*;

fn poll(fds: &[RawFd], ms: i32) {
    let mut p: Vec<libc::pollfd> = fds.iter().map(|&fd| crate::sys::fd::pollin(fd)).collect();
    let _ = crate::sys::fd::poll(&mut p, ms);
}

/// qemu's part: whatever one TAP file side has goes to the other, as is
/// (virtio header included).
fn copy(from: &Tap, to: &Tap, buf: &mut [u8]) {
    for _ in 0..64 {
        match from.read(buf) {
            Ok(n) => {
                let _ = to.write(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("qemu read: {e}"),
        }
    }
}

struct World {
    ports: Ports,
    a: PortId,
    b: PortId,
    guest: Tap,
    vnet: Tap,
    vnet_name: String,
    nsa: Netns,
    nsb: Netns,
}

fn move_up(dev: &str, ns: &Netns, ip: &str) {
    let ok = Command::new("ip")
        .args(["link", "set", dev, "netns", &ns.0])
        .status()
        .unwrap()
        .success();
    assert!(ok, "move {dev}");
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["link", "set", dev, "up"]);
    ns.ip(&["addr", "add", ip, "dev", dev]);
}

pub(super) fn offload() -> TapOptions {
    TapOptions {
        offload: true,
        multi_queue: false,
    }
}

impl World {
    fn new() -> World {
        let base = unique_name();
        let nsa = Netns::new(format!("{base}-a"));
        let nsb = Netns::new(format!("{base}-b"));
        let guest_name = format!("{base}g");
        let guest = Tap::open_with(&guest_name, 1500, offload()).expect("guest NIC");
        move_up(&guest_name, &nsa, "198.19.78.1/24");
        let vnet_name = format!("{base}v");
        let vnet = Tap::open_with(&vnet_name, 1500, offload()).expect("libvirt's TAP");
        let mut ports = Ports::new();
        let a = ports.attach("vm1", &vnet_name).expect("attach");
        let b_name = format!("{base}b");
        let b = ports.open_with(&b_name, 1500, offload()).expect("port b");
        move_up(&b_name, &nsb, "198.19.78.2/24");
        World {
            ports,
            a,
            b,
            guest,
            vnet,
            vnet_name,
            nsa,
            nsb,
        }
    }

    /// Runs qemu's copy and the switch's forwarding until `done` or `limit`.
    fn run(&mut self, limit: Duration, mut done: impl FnMut() -> bool) {
        let mut buf = vec![0u8; rx::MAX_READ];
        let mut rx = PortRx::new();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !done() {
            let fds = [
                self.guest.fd(),
                self.vnet.fd(),
                self.ports.get(self.a).unwrap().dev.fd(),
                self.ports.get(self.b).unwrap().dev.fd(),
            ];
            poll(&fds, 10);
            copy(&self.guest, &self.vnet, &mut buf);
            copy(&self.vnet, &self.guest, &mut buf);
            for (from, to) in [(self.a, self.b), (self.b, self.a)] {
                for _ in 0..8 {
                    match self.ports.recv_batch(from, &mut rx) {
                        Ok(_) => {
                            while let Some(f) = rx.next_frame() {
                                self.ports.send_gro(to, f);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("recv_batch: {e}"),
                    }
                }
            }
            self.ports.flush();
        }
    }

    /// A TCP transfer of `bytes` from the guest to namespace B, or back.
    fn transfer(&mut self, bytes: usize, to_guest: bool) {
        let n = bytes.to_string();
        let (from, to, ip) = if to_guest {
            (&self.nsb, &self.nsa, "198.19.78.1")
        } else {
            (&self.nsa, &self.nsb, "198.19.78.2")
        };
        let mut server = spawn_py(to, SERVER, &[ip]);
        let mut client = spawn_py(from, CLIENT, &[ip, &n]);
        self.run(Duration::from_secs(240), || {
            finished(&mut client) && finished(&mut server)
        });
        for c in [&mut client, &mut server] {
            if !finished(c) {
                let _ = c.kill();
            }
        }
        let (sent, got) = (output(client), output(server));
        assert_eq!(
            got,
            format!("{bytes} {sent}"),
            "data through the attached port"
        );
    }
}

pub(super) fn in_own_netns(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        crate::sys::ns::unshare_net().expect("unshare (root?)");
        let ok = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        f();
    })
    .join()
    .expect("test thread");
}

#[test]
fn an_attached_tap_carries_tcp_with_super_frames_and_survives_a_vm_restart() {
    in_own_netns(|| {
        let mut w = World::new();
        let info = w.ports.info();
        let a = info.iter().find(|p| p.id == w.a).unwrap();
        assert_eq!((a.name.as_str(), a.created), ("vm1", false));
        assert_eq!(a.device, w.vnet_name);
        w.transfer(6_000_000, false);
        let c = w.ports.get(w.a).unwrap().counters;
        assert!(c.rx_gso > 0, "no super-frame came through AF_PACKET: {c:?}");
        w.transfer(6_000_000, true);
        let c = w.ports.get(w.a).unwrap().counters;
        assert!(
            c.tx_gro > 0,
            "no super-frame went out through AF_PACKET: {c:?}"
        );
        assert_eq!(w.ports.reattach(), 0);

        // The VM restarts: libvirt's TAP goes and a new one of the same
        // name (another ifindex) comes.
        let old = w.ports.get(w.a).unwrap().dev.ifindex();
        let dummy = Tap::open_with(&format!("{}x", w.vnet_name), 1500, offload()).unwrap();
        drop(std::mem::replace(&mut w.vnet, dummy));
        assert_eq!(
            w.ports.reattach(),
            1,
            "the port did not notice its TAP went"
        );
        assert!(
            matches!(
                w.ports.recv_batch(w.a, &mut PortRx::new()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            "a gone TAP must not fail the port"
        );
        w.vnet = Tap::open_with(&w.vnet_name, 1500, offload()).expect("the TAP again");
        assert_eq!(w.ports.reattach(), 0, "not attached again");
        assert_ne!(w.ports.get(w.a).unwrap().dev.ifindex(), old);
        w.transfer(2_000_000, false);
        w.transfer(2_000_000, true);
    });
}
