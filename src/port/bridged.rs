//! A port whose TAP is a port of a Linux bridge (`[[port]] bridge`), the
//! layout where the VMs' own TAPs sit in a bridge and meshwire's port is
//! its uplink.
//!
//! The bridge, not meshwire, is what the VMs hang off, so meshwire's part
//! must survive meshwire: the TAP is made persistent, so when the daemon
//! stops or crashes the device stays, still a port of the bridge, with the
//! bridge's FDB and the VMs' links untouched; the next start opens the
//! same TAP and sets the bridge again (a no-op, or a repair after someone
//! removed it). A restart then costs only the time the daemon is away. We
//! chose a persistent TAP over keeping fds in systemd's store
//! (`FileDescriptorStoreMax`): it works without systemd, after `kill -9`
//! and across an upgrade that changes the binary, and the device is the
//! state that matters to the bridge; the UDP socket has no such state
//! (WireGuard re-handshakes in one round trip).
//!
//! Before `ctl announce` says a VM is here now, the bridge must forget
//! that the VM's MAC was behind the uplink (it learned that while the VM
//! was elsewhere): until the VM sends, the bridge would hand frames for it
//! back to meshwire. [`forget`] removes that FDB entry, as `bridge fdb del
//! MAC dev PORT master` does.

use std::io;

use tracing::warn;

use super::ports::Ports;
use super::{Device, PortId};
use crate::sys::{ifreq, rtnl};
use crate::wire::MacAddr;

impl Ports {
    /// Makes port `id`'s TAP persistent and a port of `bridge`.
    pub fn join_bridge(&mut self, id: PortId, bridge: &str) -> io::Result<()> {
        let port = self
            .get_mut(id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let Device::Tap(tap) = &port.dev else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only a TAP meshwire opens can be bridged",
            ));
        };
        let master = ifreq::ifindex_of(bridge)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("bridge {bridge} does not exist (create it first: ip link add {bridge} type bridge)"),
            )
        })?;
        let dev = tap
            .ifindex()
            .ok_or_else(|| io::Error::other("the TAP has no ifindex"))?;
        tap.set_persist(true)?;
        rtnl::set_master(dev, master).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot make it a port of {bridge}: {e}"))
        })?;
        port.bridge = Some(bridge.to_owned());
        Ok(())
    }

    /// Port `id`'s bridge forgets `macs` (in `vlan`, for a VLAN-filtering
    /// bridge; the untagged entry too); returns how many entries went.
    /// Nothing to do for a port that is not bridged.
    pub fn forget_in_bridge(&self, id: PortId, macs: &[MacAddr], vlan: Option<u16>) -> usize {
        let Some(port) = self.get(id) else {
            return 0;
        };
        let (Some(bridge), Some(dev)) = (&port.bridge, port.dev.ifindex()) else {
            return 0;
        };
        let mut gone = 0;
        for mac in macs {
            let vids = match vlan {
                Some(v) => vec![Some(v), None],
                None => vec![None],
            };
            for v in vids {
                match rtnl::bridge_fdb_del(dev, mac.0, v) {
                    Ok(true) => gone += 1,
                    Ok(false) => {}
                    Err(e) => {
                        warn!(port = %port.name, %bridge, %mac, "bridge fdb del: {e}")
                    }
                }
            }
        }
        gone
    }
}

/// A bridged port that is removed (reload, `ctl port del`) stops being
/// persistent, so the TAP goes when its last fd closes.
pub(super) fn release(dev: &Device) {
    if let Device::Tap(tap) = dev {
        if let Err(e) = tap.set_persist(false) {
            warn!(port = %tap.name(), "cannot make the TAP non-persistent: {e}");
        }
    }
}
