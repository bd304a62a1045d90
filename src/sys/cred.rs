//! Who is on the other end of a Unix socket (SO_PEERCRED, SO_PEERGROUPS),
//! who we are, and group names: what the control socket's access check
//! needs.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd};

use super::cvt;

/// The credentials the kernel recorded for a Unix socket's peer at connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// SO_PEERCRED of a connected Unix socket.
pub fn peer_cred(fd: impl AsFd) -> io::Result<PeerCred> {
    let c: libc::ucred = super::sockopt::get(fd, libc::SOL_SOCKET, libc::SO_PEERCRED)?;
    Ok(PeerCred {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    })
}

/// SO_PEERGROUPS: the peer's supplementary groups at connect (Linux 4.13).
pub fn peer_groups(fd: impl AsFd) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` holds `len` bytes for the kernel to fill; on
        // ERANGE the kernel writes nothing and sets `len` to what it needs.
        let r = cvt(unsafe {
            libc::getsockopt(
                fd.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        });
        let n = len as usize / size_of::<libc::gid_t>();
        match r {
            Ok(_) => {
                groups.truncate(n.min(groups.len()));
                return Ok(groups);
            }
            // NGROUPS_MAX is 65536: grow once to what the kernel asked for.
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) && n > groups.len() => {
                groups.resize(n.min(65536), 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Our effective uid and gid.
pub fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The gid of a group name (getgrnam_r: /etc/group, or NSS).
pub fn group_gid(name: &str) -> io::Result<Option<u32>> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: an all-zero `struct group` is a valid value to overwrite.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is live for the call and `buf.len()` is
        // the size of `buf`; the result's strings point into `buf`, which
        // we do not read (only the gid).
        let r = unsafe {
            libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out)
        };
        if r == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        return Ok((!out.is_null()).then_some(grp.gr_gid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn peer_of_a_socketpair_is_us() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_cred(&a).unwrap();
        let (uid, gid) = effective_ids();
        assert_eq!((c.pid as u32, c.uid, c.gid), (std::process::id(), uid, gid));
        // Our own supplementary groups, as getgroups(2) would say.
        let groups = peer_groups(&a).unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        let want: Vec<u32> = line[7..]
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        let mut got = groups.clone();
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn group_lookup() {
        assert_eq!(group_gid("root").unwrap(), Some(0));
        assert_eq!(group_gid("no-such-group-meshwire-x").unwrap(), None);
        assert!(group_gid("a\0b").is_err());
    }
}
