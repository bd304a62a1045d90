//! recvmmsg/sendmmsg for the underlay's batches, with the UDP GRO and GSO
//! control messages, and a plain sendmmsg for an attached port's batches. The buffers are the caller's (allocated once per
//! socket owner); only the iovec and mmsghdr arrays, which hold pointers
//! into them, are built on the stack per call.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd};

use super::socket::SockAddr;

/// Room for one received message's control messages, in u64 for cmsghdr
/// alignment: the UDP_GRO cmsg (16-byte header + int) with slack for one
/// more.
#[derive(Clone, Copy, Default)]
pub struct RecvCmsg([u64; 8]);

/// What recvmmsg said about one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Bytes written into the entry's buffer.
    pub len: usize,
    /// MSG_TRUNC: the datagram (or the train's last one) did not fit.
    pub truncated: bool,
    /// UDP GRO segment size: the entry is a train of datagrams of this
    /// size (the last may be shorter); 0 for a single datagram.
    pub segment_size: usize,
}

/// One recvmmsg (MSG_DONTWAIT) of up to `out.len()` entries, at most N:
/// entry i lands in `bufs[i * slot..][..slot]`, its source in `names[i]`,
/// its control messages in `ctrl[i]` and what the kernel said of it in
/// `out[i]`. Returns how many entries were filled; `WouldBlock` when
/// nothing is waiting.
pub fn recv<const N: usize>(
    fd: impl AsFd,
    bufs: &mut [u8],
    slot: usize,
    names: &mut [SockAddr],
    ctrl: &mut [RecvCmsg],
    out: &mut [Received],
) -> io::Result<usize> {
    // SAFETY: all-zero is a valid iovec and mmsghdr (null pointers, zero
    // lengths); the ones used are filled below.
    let mut iov: [libc::iovec; N] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; N] = unsafe { zeroed() };
    let mut max = 0;
    for ((((buf, name), c), v), m) in bufs
        .chunks_exact_mut(slot.max(1))
        .zip(names.iter_mut())
        .zip(ctrl.iter_mut())
        .zip(iov.iter_mut())
        .zip(msgs.iter_mut())
        .take(out.len())
    {
        *v = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        m.msg_hdr.msg_name = name.as_mut_ptr();
        m.msg_hdr.msg_namelen = SockAddr::CAPACITY;
        m.msg_hdr.msg_control = c.0.as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = size_of::<RecvCmsg>() as _;
        max += 1;
    }
    if max == 0 {
        return Ok(0);
    }
    // One pointer for the whole array, so the ones in the headers stay
    // valid (no reborrow of `iov` after this).
    let iov_base = iov.as_mut_ptr();
    for (i, m) in msgs.iter_mut().take(max).enumerate() {
        m.msg_hdr.msg_iov = iov_base.wrapping_add(i);
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `max` headers point at live iovecs, names and
    // control buffers of the lengths they give, all borrowed mutably for
    // the call; the kernel writes no more than those lengths.
    let n = super::cvt(unsafe {
        libc::recvmmsg(
            fd.as_fd().as_raw_fd(),
            msgs.as_mut_ptr(),
            max as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    })?;
    let n = (n as usize).min(max);
    for ((m, o), name) in msgs
        .iter()
        .zip(out.iter_mut())
        .zip(names.iter_mut())
        .take(n)
    {
        *o = Received {
            len: m.msg_len as usize,
            truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            segment_size: gro_segment_size(&m.msg_hdr),
        };
        name.set_len(m.msg_hdr.msg_namelen);
    }
    Ok(n)
}

/// The UDP_GRO control message's segment size, 0 if there is none.
fn gro_segment_size(hdr: &libc::msghdr) -> usize {
    // SAFETY: the kernel filled msg_control up to msg_controllen (it lowers
    // it to what it wrote); the CMSG_* macros stay inside that range, and
    // the int is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP
                && (*c).cmsg_type == libc::UDP_GRO
                && (*c).cmsg_len as usize
                    >= libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    0
}

/// One sendmmsg message: `count` consecutive datagrams from `first`; more
/// than one makes a UDP GSO message cut at the first one's length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planned {
    pub first: usize,
    pub count: usize,
}

/// Room for the UDP_SEGMENT cmsg: CMSG_SPACE(2) is 24 bytes.
type SendCmsg = [u64; 4];

/// Sends the messages of `plan` (at most N) with sendmmsg, as many per call
/// as the kernel takes. Datagram k is `bufs[k * slot..][..lens[k]]`;
/// message m goes to `names[m]` (an empty name leaves the message empty, so
/// the kernel refuses it). After each call `next(m, result)` says where to
/// go on from (`result`: how many messages from m the kernel took), or
/// None to stop; the same m again retries (EINTR).
pub fn send<const N: usize>(
    fd: impl AsFd,
    bufs: &[u8],
    slot: usize,
    lens: &[usize],
    plan: &[Planned],
    names: &[SockAddr],
    mut next: impl FnMut(usize, io::Result<usize>) -> Option<usize>,
) {
    // SAFETY: all-zero is a valid iovec and mmsghdr.
    let mut iov: [libc::iovec; N] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; N] = unsafe { zeroed() };
    let mut ctrl: [SendCmsg; N] = [[0; 4]; N];
    let first_used = plan.first().map_or(0, |p| p.first);
    for (k, v) in iov.iter_mut().enumerate().take(lens.len()).skip(first_used) {
        let start = k * slot;
        if let Some(d) = bufs.get(start..start + lens[k]) {
            *v = libc::iovec {
                // sendmmsg only reads the data.
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            };
        }
    }
    let planned = plan.len().min(N).min(names.len());
    let iov_base = iov.as_mut_ptr();
    for (m, (p, (h, c))) in plan
        .iter()
        .zip(msgs.iter_mut().map(|m| &mut m.msg_hdr).zip(ctrl.iter_mut()))
        .take(planned)
        .enumerate()
    {
        let name = &names[m];
        if name.is_empty() || p.count == 0 || p.first + p.count > lens.len().min(N) {
            continue;
        }
        // sendmmsg only reads the name.
        h.msg_name = name.as_ptr() as *mut libc::c_void;
        h.msg_namelen = name.len();
        h.msg_iov = iov_base.wrapping_add(p.first);
        h.msg_iovlen = p.count as _;
        if p.count > 1 {
            set_segment_size(h, c, lens[p.first]);
        }
    }
    let mut m = 0;
    while m < planned {
        // SAFETY: msgs[m..planned] are initialised headers whose pointers
        // refer to iov, names, ctrl and bufs, all alive and unmoved for the
        // call; the kernel only reads through them.
        let r = unsafe {
            libc::sendmmsg(
                fd.as_fd().as_raw_fd(),
                msgs[m..].as_mut_ptr(),
                (planned - m) as libc::c_uint,
                0,
            )
        };
        let r = match r {
            r if r > 0 => Ok((r as usize).min(planned - m)),
            0 => Ok(0),
            _ => Err(io::Error::last_os_error()),
        };
        match next(m, r) {
            Some(n) => m = n,
            None => return,
        }
    }
}

/// Puts a UDP_SEGMENT control message with `seg` into `h`, using `ctrl`.
fn set_segment_size(h: &mut libc::msghdr, ctrl: &mut SendCmsg, seg: usize) {
    h.msg_control = ctrl.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE(2) (24) fits in ctrl (32 bytes, zeroed); then
    // CMSG_FIRSTHDR is non-null and its data lies inside ctrl, written
    // unaligned.
    unsafe {
        h.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(h);
        if c.is_null() {
            h.msg_controllen = 0;
            return;
        }
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
    }
}

/// Sends the datagrams `bufs[r]`, one per range of `ranges` (at most N),
/// on a bound or connected socket with sendmmsg: as many per call as the
/// kernel takes, in order. `done(i, result)` hears of every datagram once,
/// in order: the bytes the kernel took, or the error that stopped it (the
/// kernel reports a datagram's error only when it is the first of a call,
/// so the call after a short one starts at the refused datagram and gets
/// its error). Returns the calls that took at least one datagram.
pub fn send_each<const N: usize>(
    fd: impl AsFd,
    bufs: &[u8],
    ranges: &[std::ops::Range<usize>],
    mut done: impl FnMut(usize, io::Result<usize>),
) -> usize {
    // SAFETY: all-zero is a valid iovec and mmsghdr.
    let mut iov: [libc::iovec; N] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; N] = unsafe { zeroed() };
    let n = ranges.len().min(N);
    for (r, v) in ranges.iter().zip(iov.iter_mut()).take(n) {
        // A range outside `bufs` stays an empty datagram (never read past).
        if let Some(d) = bufs.get(r.clone()) {
            *v = libc::iovec {
                // sendmmsg only reads the data.
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            };
        }
    }
    let iov_base = iov.as_mut_ptr();
    for (i, m) in msgs.iter_mut().take(n).enumerate() {
        m.msg_hdr.msg_iov = iov_base.wrapping_add(i);
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut calls = 0;
    let mut m = 0;
    let mut interrupted = 0;
    while m < n {
        // SAFETY: msgs[m..n] are initialised headers pointing at iovecs in
        // `iov` and data in `bufs`, alive and unmoved for the call; the
        // kernel only reads through them (and writes msg_len).
        let r = unsafe {
            libc::sendmmsg(
                fd.as_fd().as_raw_fd(),
                msgs[m..].as_mut_ptr(),
                (n - m) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            let took = (r as usize).min(n - m);
            for (i, h) in msgs.iter().enumerate().skip(m).take(took) {
                done(i, Ok(h.msg_len as usize));
            }
            calls += 1;
            m += took;
            continue;
        }
        let e = if r == 0 {
            io::Error::from(io::ErrorKind::WouldBlock)
        } else {
            io::Error::last_os_error()
        };
        // A signal before anything was sent: the same datagram again (a
        // few times at most, so a signal storm cannot hold the worker).
        if e.kind() == io::ErrorKind::Interrupted && interrupted < 3 {
            interrupted += 1;
            continue;
        }
        done(m, Err(e));
        m += 1;
    }
    calls
}
