//! The control server against real Unix-socket clients: what is at the
//! socket path, the socket's mode, slow, hung and concurrent clients. A
//! thread stands in for worker 0 and answers from the request queue the
//! way the dataplane does (through `Pending`), so every byte crosses the
//! real socket and the real sessions.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::client::request;
use super::server::ControlServer;
use super::CtlCommand;
use crate::config::ControlAccess;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mw-ctl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn access(path: &std::path::Path) -> ControlAccess {
    ControlAccess {
        socket: path.to_path_buf(),
        gid: None,
        mode: 0o660,
    }
}

/// Polls `f` until it holds; a generous limit for a loaded machine.
fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Worker 0's part: answers `stats` now and `fdb` as a copy rendered on the
/// client's thread, as the dataplane does.
struct FakeWorker {
    stop: Arc<AtomicBool>,
}

impl FakeWorker {
    fn start(server: ControlServer) -> FakeWorker {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mut fds = [crate::sys::fd::pollin(server.fd())];
                let _ = crate::sys::fd::poll(&mut fds, 50);
                for req in server.drain() {
                    match req.cmd {
                        CtlCommand::Fdb => {
                            let copy: Vec<u32> = (0..1000).collect();
                            req.reply_later(Box::new(move |out| {
                                serde_json::to_writer(out, &copy).map_err(std::io::Error::other)
                            }))
                        }
                        // Reports render on the client's thread: say
                        // how nice it is.
                        CtlCommand::Originators => req.reply_later(Box::new(|out| {
                            let nice = crate::sys::sched::thread_nice()?;
                            serde_json::to_writer(out, &nice).map_err(std::io::Error::other)
                        })),
                        _ => req.reply(Ok(json!({"control": server.stats()}))),
                    }
                }
            }
        });
        FakeWorker { stop }
    }
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
    let d = dir("file");
    let path = d.join("ctl.sock");
    std::fs::write(&path, "precious").unwrap();
    let e = ControlServer::start(&access(&path)).err().unwrap();
    assert!(e.to_string().contains("a regular file"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    // A directory and a symlink are not ours either.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let e = ControlServer::start(&access(&path)).err().unwrap();
    assert!(e.to_string().contains("a directory"), "{e}");
    std::fs::remove_dir(&path).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
    let e = ControlServer::start(&access(&path)).err().unwrap();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_live_socket_is_refused_and_a_stale_one_replaced() {
    let d = dir("live");
    let path = d.join("ctl.sock");
    let first = ControlServer::start(&access(&path)).unwrap();
    let e = ControlServer::start(&access(&path)).err().unwrap();
    assert!(e.to_string().contains("in use by a running daemon"), "{e}");
    drop(first);
    assert!(!path.exists(), "the socket goes with its server");
    // A socket nobody listens on (a daemon that died) is replaced.
    drop(UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    let again = ControlServer::start(&access(&path)).unwrap();
    let _w = FakeWorker::start(again);
    request(&path, &CtlCommand::Stats).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn mode_and_group_are_applied() {
    let d = dir("mode");
    let path = d.join("ctl.sock");
    let (_, egid) = crate::sys::cred::effective_ids();
    let a = ControlAccess {
        socket: path.clone(),
        gid: Some(egid),
        mode: 0o600,
    };
    let s = ControlServer::start(&a).unwrap();
    let m = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&m), egid);
    drop(s);
    if crate::sys::ns::is_root() {
        // Root may hand the socket to any group.
        let a = ControlAccess {
            gid: Some(4242),
            mode: 0o660,
            ..a
        };
        let _s = ControlServer::start(&a).unwrap();
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&m), 4242);
        assert_eq!(m.permissions().mode() & 0o777, 0o660);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_hung_client_does_not_delay_others() {
    let d = dir("hung");
    let path = d.join("ctl.sock");
    // A deadline no test waits for: the others must be served while the
    // hung client still holds its place (a sequential server would keep
    // them past their 10 s read timeout, and they would fail).
    let server = ControlServer::start_with(&access(&path), Duration::from_secs(120)).unwrap();
    let _w = FakeWorker::start(server);
    let mut hung = UnixStream::connect(&path).unwrap();
    hung.write_all(br#"{"cmd":"#).unwrap();
    let others: Vec<_> = (0..8)
        .map(|i| {
            let p = path.clone();
            std::thread::spawn(move || {
                let cmd = if i % 2 == 0 {
                    CtlCommand::Stats
                } else {
                    CtlCommand::Fdb
                };
                request(&p, &cmd).unwrap()
            })
        })
        .collect();
    for o in others {
        let v = o.join().unwrap();
        assert!(v.is_object() || v.as_array().is_some_and(|a| a.len() == 1000));
    }
    // Reports render at a lower priority than the workers.
    assert_eq!(
        request(&path, &CtlCommand::Originators).unwrap(),
        json!(super::session::CLIENT_NICE)
    );
    // The hung client still holds its place: with this request, two are
    // served (once the threads of the answered ones have ended).
    wait_until(
        "the hung client alone left",
        Duration::from_secs(30),
        || request(&path, &CtlCommand::Stats).unwrap()["control"]["clients_now"] == json!(2),
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn slow_and_hung_clients_are_cut_off_at_the_deadline() {
    let d = dir("slow");
    let path = d.join("ctl.sock");
    let _w = FakeWorker::start(ControlServer::start(&access(&path)).unwrap());
    // A hung client: connects, sends nothing, never reads.
    let hung = UnixStream::connect(&path).unwrap();
    // A client trickling its request, one byte every 300 ms (it would
    // need 4.5 s for the whole line; the deadline is 2 s).
    let slow = UnixStream::connect(&path).unwrap();
    let mut s2 = slow.try_clone().unwrap();
    let trickler = std::thread::spawn(move || {
        for b in br#"{"cmd":"stats"}"# {
            if s2.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    for c in [&slow, &hung] {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut answer = String::new();
        let _ = (&*c).read_to_string(&mut answer);
        assert!(answer.contains("not complete in time"), "{answer}");
    }
    trickler.join().unwrap();
    let st = request(&path, &CtlCommand::Stats).unwrap();
    assert!(st["control"]["timed_out"].as_u64().unwrap() >= 2, "{st}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn two_hundred_idle_connections_clear_quickly_and_ctl_still_answers() {
    let d = dir("idle");
    let path = d.join("ctl.sock");
    let _w = FakeWorker::start(ControlServer::start(&access(&path)).unwrap());
    let opened = Instant::now();
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    // Served despite them: a busy answer is retried by the client.
    let st = request(&path, &CtlCommand::Stats).unwrap();
    assert!(st["control"]["accepted"].as_u64().unwrap() >= 1, "{st}");
    // Every idle connection is closed by the daemon (a refusal or the
    // deadline), without the client doing anything: within seconds, not
    // minutes (the read limit is generous for a loaded machine).
    for c in &idle {
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut sink = Vec::new();
        (&*c).read_to_end(&mut sink).unwrap();
        assert!(!sink.is_empty(), "each gets an answer before the close");
    }
    // A figure for the README, not an assertion.
    eprintln!(
        "200 idle connections all closed {:?} after the first connect",
        opened.elapsed()
    );
    wait_until("no client left", Duration::from_secs(30), || {
        request(&path, &CtlCommand::Stats).unwrap()["control"]["clients_now"] == json!(1)
    });
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn oversized_and_garbage_requests_are_answered_and_counted() {
    let d = dir("junk");
    let path = d.join("ctl.sock");
    let _w = FakeWorker::start(ControlServer::start(&access(&path)).unwrap());
    for junk in [
        vec![b'x'; 10_000],
        b"{\"cmd\":\"port\",\"action\":{\"action\":\"add\",\"name\":\"vm1\",\"mtu\":9}}\n".to_vec(),
        vec![0xff, 0x00, b'\n'],
    ] {
        let mut c = UnixStream::connect(&path).unwrap();
        let _ = c.write_all(&junk);
        let _ = c.shutdown(std::net::Shutdown::Write);
        // The daemon closes with our excess unread: the kernel reports
        // that as a reset after the answer.
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        let answer = String::from_utf8(answer).unwrap();
        let v: serde_json::Value = serde_json::from_str(answer.trim()).unwrap();
        assert_eq!(v["ok"], json!(false), "{answer}");
    }
    let st = request(&path, &CtlCommand::Stats).unwrap();
    assert_eq!(st["control"]["bad_requests"], json!(3), "{st}");
    std::fs::remove_dir_all(&d).unwrap();
}
