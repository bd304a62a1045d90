//! One control client: who it is, and its request and answer under
//! deadlines.
//!
//! Every limit is per client: a client that trickles its request a byte
//! at a time (counted from the accept) or stops reading its answer (the
//! time it keeps us blocked, in all) is cut off when its limit passes,
//! however often single reads or writes succeed.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tracing::warn;

use super::client::BUSY;
use super::server::{error_reply, Answer, Pending, Shared, MAX_CLIENTS, MAX_RENDERS};
use super::{parse_request, Reply, MAX_REQUEST};
use crate::sys::cred;

/// The whole request line must arrive within this (it is one short line).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The dataplane answers (or sends a copy to render) within this.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(5);
/// A client may keep us waiting this long in all while it takes a short
/// answer, and this long without taking a byte of a streamed report.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// A streamed report (a full FDB is tens of megabytes) ends by then
/// however steadily the client reads it: a client that drips its reads
/// holds a render permit this long at most. Not a budget of time blocked:
/// on a loaded host that time is mostly our own wake-up at CLIENT_NICE
/// (a 19 MB FDB was cut off by a 10 s budget beside a CPU hog while its
/// client read as fast as it was scheduled).
pub const STREAM_DEADLINE: Duration = Duration::from_secs(300);
/// The nice value of client threads: below the dataplane's workers.
pub const CLIENT_NICE: i32 = 10;
/// A refusal is written without waiting for a client that does not read.
const REFUSAL_WRITE: Duration = Duration::from_millis(200);

/// Who may use the socket: root, the daemon's own user, and members of
/// the socket's group (`control.group`, else the daemon's group).
pub struct Admission {
    uid: u32,
    gid: u32,
}

impl Admission {
    pub fn new(group: Option<u32>) -> Admission {
        let (uid, egid) = cred::effective_ids();
        Admission {
            uid,
            gid: group.unwrap_or(egid),
        }
    }

    /// Ok, or why not.
    pub fn check(&self, conn: &UnixStream) -> Result<(), String> {
        let c = cred::peer_cred(conn).map_err(|e| format!("no peer credentials: {e}"))?;
        if c.uid == 0 || c.uid == self.uid || c.gid == self.gid {
            return Ok(());
        }
        let groups = cred::peer_groups(conn).unwrap_or_default();
        if groups.contains(&self.gid) {
            return Ok(());
        }
        Err(format!(
            "uid {} (pid {}) is not root, the daemon's user or in group {}",
            c.uid, c.pid, self.gid
        ))
    }
}

/// Checks a fresh connection and starts its thread, or answers it with a
/// refusal at once.
pub(super) fn admit(conn: UnixStream, shared: &Arc<Shared>) {
    if let Err(why) = shared.admission.check(&conn) {
        let n = shared
            .counters
            .refused_credentials
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        // A refused local user could fill the log: the first few, then
        // the 8th, 16th, 32nd... (`ctl stats` counts them all).
        if n <= 4 || n.is_power_of_two() {
            warn!("control socket: refused {why} ({n} refusals so far)");
        }
        refuse(&conn, "permission denied: not an operator of this daemon");
        return;
    }
    // Count first, so that a burst of connections cannot overshoot.
    if shared.active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        shared.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
        refuse(
            &conn,
            &format!("{BUSY} too many control clients at once, try again"),
        );
        return;
    }
    let s = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("ctl-client".into())
        .spawn(move || {
            // Rendering a full FDB takes a core for most of a second: the
            // workers (nice 0) come first.
            let _ = crate::sys::sched::set_thread_nice(CLIENT_NICE);
            serve(&conn, &s);
            s.active.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        shared.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
    }
}

fn refuse(conn: &UnixStream, why: &str) {
    let _ = conn.set_write_timeout(Some(REFUSAL_WRITE));
    let _ = write_reply(conn, &error_reply(why), Instant::now() + REFUSAL_WRITE);
}

fn serve(conn: &UnixStream, shared: &Shared) {
    let start = Instant::now();
    let line = match read_request(conn, start + shared.request_deadline) {
        Ok(l) => l,
        Err(ReadFail::TimedOut) => {
            shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
            let _ = write_reply(
                conn,
                &error_reply("request not complete in time"),
                Instant::now() + REFUSAL_WRITE,
            );
            return;
        }
        Err(ReadFail::TooLong) => {
            shared.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let e = format!("bad request: longer than {MAX_REQUEST} bytes");
            let _ = write_reply(conn, &error_reply(e), Instant::now() + REFUSAL_WRITE);
            return;
        }
        Err(ReadFail::Gone) => return,
    };
    let answer = match parse_request(&line) {
        Err(e) => {
            shared.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            Out::Reply(error_reply(e))
        }
        Ok(cmd) => ask(shared, cmd),
    };
    let written = match answer {
        Out::Reply(r) => write_reply(conn, &r, Instant::now() + WRITE_DEADLINE),
        Out::Render(render) => with_render_permit(shared, || {
            let end = Instant::now() + STREAM_DEADLINE;
            stream(conn, render, WRITE_DEADLINE, end)
        }),
    };
    match written {
        Ok(()) => {
            shared.counters.served.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) if is_timeout(&e) => {
            shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {}
    }
}

/// An answer: a Reply, or a report to render into the connection.
enum Out {
    Reply(Reply),
    Render(super::server::Render),
}

/// Hands the request to the dataplane and renders its answer here.
fn ask(shared: &Shared, cmd: super::CtlCommand) -> Out {
    let (atx, arx) = mpsc::channel();
    if shared.requests.send(Pending::new(cmd, atx)).is_err() {
        return Out::Reply(error_reply("the daemon is shutting down"));
    }
    shared.wake.notify();
    match arx.recv_timeout(ANSWER_DEADLINE) {
        Ok(Answer::Now(Ok(data))) => Out::Reply(Reply {
            ok: true,
            data: Some(data),
            error: None,
        }),
        Ok(Answer::Now(Err(e))) => Out::Reply(error_reply(e)),
        Ok(Answer::Later(render)) => Out::Render(render),
        Err(_) => Out::Reply(error_reply("the dataplane did not answer in time")),
    }
}

/// The report's data streamed into the connection, wrapped as a Reply
/// would be (`{"ok":true,"data":...}`): cut off when the client takes
/// nothing for `stall` or the whole has not gone by `end`.
fn stream(
    conn: &UnixStream,
    render: super::server::Render,
    stall: Duration,
    end: Instant,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, Budgeted { conn, stall, end });
    out.write_all(b"{\"ok\":true,\"data\":")?;
    render(&mut out)?;
    out.write_all(b"}\n")?;
    out.flush()
}

/// Writes to a connection while the client keeps taking bytes: each
/// write must make progress within `stall`, and all of them end by `end`.
struct Budgeted<'a> {
    conn: &'a UnixStream,
    stall: Duration,
    end: Instant,
}

impl Write for Budgeted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        // A blocked write returns what the client took before the timeout
        // (progress), or WouldBlock when it took nothing: a stall.
        self.conn.set_write_timeout(Some(left.min(self.stall)))?;
        match (&*self.conn).write(buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(ErrorKind::TimedOut.into()),
            r => r,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `render` once fewer than MAX_RENDERS others run.
fn with_render_permit<R>(shared: &Shared, render: impl FnOnce() -> R) -> R {
    let (count, turn) = &shared.renders;
    {
        let mut n = count.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= MAX_RENDERS {
            n = turn.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
    }
    let r = render();
    *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
    turn.notify_one();
    r
}

enum ReadFail {
    TimedOut,
    TooLong,
    Gone,
}

/// One line (or what came before the client shut its side), at most
/// MAX_REQUEST bytes, all of it before `deadline`.
fn read_request(conn: &UnixStream, deadline: Instant) -> Result<Vec<u8>, ReadFail> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadFail::TimedOut);
        }
        conn.set_read_timeout(Some(left))
            .map_err(|_| ReadFail::Gone)?;
        let n = match (&*conn).read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Err(ReadFail::TimedOut),
            Err(_) => return Err(ReadFail::Gone),
        };
        if n == 0 {
            return if buf.is_empty() {
                Err(ReadFail::Gone)
            } else {
                Ok(buf)
            };
        }
        let got = &chunk[..n];
        if let Some(i) = got.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&got[..i]);
            return if buf.len() > MAX_REQUEST {
                Err(ReadFail::TooLong)
            } else {
                Ok(buf)
            };
        }
        buf.extend_from_slice(got);
        if buf.len() > MAX_REQUEST {
            return Err(ReadFail::TooLong);
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Writes the reply and its newline, all of it before `deadline`.
fn write_reply(conn: &UnixStream, reply: &Reply, deadline: Instant) -> std::io::Result<()> {
    let out = serde_json::to_vec(reply).unwrap_or_default();
    write_parts(conn, &[&out, b"\n"], deadline)
}

/// Writes `parts` one after the other, all of it before `deadline`.
fn write_parts(conn: &UnixStream, parts: &[&[u8]], deadline: Instant) -> std::io::Result<()> {
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            conn.set_write_timeout(Some(left))?;
            match (&*conn).write(rest) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Eight megabytes through `stream` to a reader that takes them 64 KB
    /// at a time with pauses: the answer takes far longer than the stall
    /// limit and arrives whole.
    #[test]
    fn a_slow_steady_reader_gets_a_big_report_whole() {
        let (a, mut b) = UnixStream::pair().unwrap();
        const LEN: usize = 8 << 20;
        let render: super::super::server::Render = Box::new(|w: &mut dyn Write| {
            let chunk = vec![b'x'; 4096];
            for _ in 0..LEN / 4096 {
                w.write_all(&chunk)?;
            }
            Ok(())
        });
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0; 64 << 10];
            loop {
                match b.read(&mut buf) {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        let start = Instant::now();
        let stall = Duration::from_secs(2);
        stream(&a, render, stall, start + Duration::from_secs(120)).expect("the whole report");
        drop(a);
        let got = reader.join().unwrap();
        let head = b"{\"ok\":true,\"data\":";
        assert_eq!(got.len(), head.len() + LEN + 2);
        assert!(got.starts_with(head) && got.ends_with(b"}\n"));
        eprintln!("8 MB to a slow reader in {:?}", start.elapsed());
    }

    /// A reader that stops taking bytes is cut off after the stall limit.
    #[test]
    fn a_reader_that_stops_is_cut_off() {
        let (a, b) = UnixStream::pair().unwrap();
        let render: super::super::server::Render = Box::new(|w: &mut dyn Write| {
            let chunk = vec![b'x'; 4096];
            for _ in 0..(64 << 20) / 4096 {
                w.write_all(&chunk)?;
            }
            Ok(())
        });
        let stall = Duration::from_millis(300);
        let far = Instant::now() + Duration::from_secs(120);
        let e = stream(&a, render, stall, far).expect_err("a stalled client");
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        drop(b);
    }
}
