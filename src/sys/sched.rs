//! Thread scheduling: the control plane's threads yield to the dataplane's.

use std::io;

use super::cvt;

/// Sets the calling thread's nice value (Linux schedules threads one by
/// one, so this is the thread's alone). Raising it needs no privilege.
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid and setpriority take no pointers; `who` is our own
    // thread id.
    cvt(unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    })
    .map(drop)
}

/// The calling thread's nice value, from /proc (for tests).
pub fn thread_nice() -> io::Result<i32> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    // Field 19 (nice) counted after the ")" that ends the command name.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    after
        .split_whitespace()
        .nth(16)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("no nice value in stat"))
}

/// CPU time the calling thread has used (for figures the tests report).
pub fn thread_cpu_time() -> std::time::Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` lives for the call, which only writes it.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    std::time::Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_its_own_priority_only() {
        let before = thread_nice().unwrap();
        let t = std::thread::spawn(|| {
            set_thread_nice(10).unwrap();
            thread_nice().unwrap()
        });
        assert_eq!(t.join().unwrap(), 10);
        assert_eq!(thread_nice().unwrap(), before);
    }
}
