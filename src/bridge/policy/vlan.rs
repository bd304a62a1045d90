//! Isolated networks. A port belongs to one network: untagged (batman vid
//! 0) or VLAN `vlan`, which the VM sees untagged while the mesh carries it
//! tagged, exactly as a kernel node's `bat0.N` does (802.1Q tag inside the
//! batman payload, translation-table entries with vid `0x8000 | N`). The
//! switch and the translation table key every client by (MAC, vid), so a
//! tagged frame can only reach a port of its own network; this module
//! puts the tag on at ingress, takes it off at egress, and refuses frames
//! of other networks both ways.
//!
//! - A VM port (with `mac`) sends untagged only; a tagged frame from it is
//!   an attempt to reach another network and is dropped.
//! - An uplink with `trunk` carries those VLANs tagged, and its own
//!   network (`vlan`, or untagged) untagged.
//! - An uplink with neither `vlan` nor `trunk` carries everything as it
//!   comes, as a kernel `bat0` does (the behaviour before policies).

use crate::wire::bytes::get_be16;
use crate::wire::ethernet::{ethertype, BATMAN_VLAN_HAS_TAG, HEADER_LEN, VID_MASK, VLAN_TAG_LEN};

/// A port's place in the networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Network {
    pub vlan: Option<u16>,
    pub trunk: Vec<u16>,
    /// A VM port: untagged frames only.
    pub vm: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum In {
    Pass,
    /// Untagged from the VM: tag it with this VLAN id.
    Push(u16),
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Out {
    Pass,
    /// The port's own VLAN: the VM gets it untagged.
    Strip,
    Drop,
}

/// The outer tag's VLAN id, if the frame is tagged (802.1Q or 802.1ad);
/// Err for a frame too short to say.
fn tag(frame: &[u8]) -> Result<Option<(u16, u16)>, ()> {
    let et = get_be16(frame, HEADER_LEN - 2).ok_or(())?;
    if et != ethertype::VLAN && et != ethertype::QINQ {
        return Ok(None);
    }
    let tci = get_be16(frame, HEADER_LEN).ok_or(())?;
    Ok(Some((et, tci & VID_MASK)))
}

impl Network {
    /// Carries every network as it comes (no `vlan`, no `trunk`, no `mac`).
    pub fn open(&self) -> bool {
        !self.vm && self.vlan.is_none() && self.trunk.is_empty()
    }

    /// The batman vid of the port's untagged network.
    pub fn vid(&self) -> u16 {
        self.vlan.map_or(0, |v| v | BATMAN_VLAN_HAS_TAG)
    }

    pub fn ingress(&self, frame: &[u8]) -> In {
        if self.open() {
            return In::Pass;
        }
        match tag(frame) {
            // Too short: the switch drops and counts runts.
            Err(()) => In::Pass,
            Ok(None) => self.vlan.map_or(In::Pass, In::Push),
            Ok(Some((ethertype::VLAN, id))) if !self.vm && self.trunk.contains(&id) => In::Pass,
            Ok(Some(_)) => In::Drop,
        }
    }

    /// `vid`: the frame's batman vid (what the switch keyed it by).
    pub fn egress(&self, vid: u16) -> Out {
        if self.open() {
            return Out::Pass;
        }
        if vid == self.vid() {
            return if self.vlan.is_some() {
                Out::Strip
            } else {
                Out::Pass
            };
        }
        let id = vid & VID_MASK;
        if !self.vm && vid & BATMAN_VLAN_HAS_TAG != 0 && self.trunk.contains(&id) {
            Out::Pass
        } else {
            Out::Drop
        }
    }
}

/// `frame` with an 802.1Q tag of VLAN `id` after its addresses, into `out`.
pub(super) fn push_tag(frame: &[u8], id: u16, out: &mut Vec<u8>) {
    out.clear();
    let (addrs, rest) = frame.split_at(12.min(frame.len()));
    out.extend_from_slice(addrs);
    out.extend_from_slice(&ethertype::VLAN.to_be_bytes());
    out.extend_from_slice(&(id & VID_MASK).to_be_bytes());
    out.extend_from_slice(rest);
}

/// `frame` without its outer tag, into `out` (a frame too short for the
/// tag is copied as it is).
pub(super) fn strip_tag(frame: &[u8], out: &mut Vec<u8>) {
    out.clear();
    match (frame.get(..12), frame.get(12 + VLAN_TAG_LEN..)) {
        (Some(addrs), Some(rest)) => {
            out.extend_from_slice(addrs);
            out.extend_from_slice(rest);
        }
        _ => out.extend_from_slice(frame),
    }
}
