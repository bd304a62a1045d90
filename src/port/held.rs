//! Whether a TAP that already exists is held by another process (a VM's
//! TAP, made by libvirt or qemu), before `ctl port add` opens it.
//!
//! A TAP's carrier is on exactly while some fd is attached to one of its
//! queues (the tun driver turns it on at attach and off when the last
//! queue is closed). A multi-queue TAP would let us attach one more queue
//! to a running VM's device and take part of its traffic, and rewrite its
//! MTU and offloads; a single-queue one would be refused by the kernel
//! (EBUSY) only after a wait. The carrier is read from sysfs's transition
//! counts, which (unlike `carrier`) answer while the device is down: a
//! device starts with carrier on and every change counts once, so the
//! carrier is on iff the up and down counts are equal.

use std::io;
use std::path::Path;

/// What is at a device name before we open a TAP of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// No device: we create the TAP.
    None,
    /// A TAP nobody holds (persistent, `ip tuntap add`): we attach to it.
    FreeTap,
    /// A TAP some process holds.
    HeldTap,
    /// A device that is not a TAP (TUNSETIFF will refuse it).
    Other,
}

/// Looks at `/sys/class/net/NAME` (sysfs of our network namespace).
pub fn existing(name: &str) -> io::Result<Existing> {
    existing_in(Path::new("/sys/class/net"), name)
}

fn existing_in(sys: &Path, name: &str) -> io::Result<Existing> {
    let dir = sys.join(name);
    let Some(index) = crate::sys::ifreq::ifindex_of(name)? else {
        return Ok(Existing::None);
    };
    let sys_index = std::fs::read_to_string(dir.join("ifindex"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if sys_index != Some(index) {
        // This sysfs is another network namespace's (a daemon put in a
        // namespace without remounting /sys): the device's flags, from
        // our namespace, tell the carrier only while it is up.
        return running(name);
    }
    if !dir.join("tun_flags").exists() {
        return Ok(Existing::Other);
    }
    let count = |f: &str| -> io::Result<u64> {
        std::fs::read_to_string(dir.join(f))?
            .trim()
            .parse()
            .map_err(|_| io::Error::other(format!("{name}: {f} is not a number")))
    };
    let (up, down) = (count("carrier_up_count")?, count("carrier_down_count")?);
    Ok(if up == down {
        Existing::HeldTap
    } else {
        Existing::FreeTap
    })
}

/// Up with carrier: held (for a TAP). Down: we cannot tell, and leave it
/// to TUNSETIFF (a held single-queue TAP is refused there).
fn running(name: &str) -> io::Result<Existing> {
    use crate::sys::ifreq::{ctl_socket, ifreq, IfReq, IfReqOp};
    let sock = ctl_socket()?;
    let mut r = IfReq::new(name);
    ifreq(&sock, IfReqOp::GetFlags, &mut r)?;
    let f = r.short() as libc::c_int;
    let up_running = libc::IFF_UP | libc::IFF_RUNNING;
    Ok(if f & up_running == up_running {
        Existing::HeldTap
    } else {
        Existing::FreeTap
    })
}

/// Before opening a TAP of our own named `name`: Ok, or why not (a TAP
/// another process holds: a running VM's).
pub fn refuse_held(name: &str) -> Result<(), String> {
    match existing(name) {
        Ok(Existing::HeldTap) => Err(format!(
            "the TAP {name} exists and another process holds it (a VM's?): switch that VM \
             from the network side (`attach = \"{name}\"` in its [[port]], or \
             `ctl port add PORT --attach {name}`), or give the port a free name"
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_is_none() {
        assert_eq!(existing("mwnosuch0").unwrap(), Existing::None);
    }

    #[test]
    fn loopback_is_not_a_tap_and_a_foreign_sysfs_falls_back_to_flags() {
        assert_eq!(existing("lo").unwrap(), Existing::Other);
        // A sysfs that does not show our `lo`: lo is up and running.
        let empty = std::env::temp_dir().join(format!("mw-nosys-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(existing_in(&empty, "lo").unwrap(), Existing::HeldTap);
        std::fs::remove_dir_all(&empty).unwrap();
    }
}
