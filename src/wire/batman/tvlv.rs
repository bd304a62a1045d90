//! TVLV containers (`struct batadv_tvlv_hdr`: type, version, len be16) and the
//! payloads we read: translation table data (`batadv_tvlv_tt_data` with its
//! per-VLAN records and `batadv_tvlv_tt_change` entries) and roaming adverts.

use super::{be16_at, be32_at, mac_at, u8_at};
use crate::wire::{MacAddr, WireError, WireResult};

/// `enum batadv_tvlv_type`.
pub mod tvlv_type {
    pub const GW: u8 = 0x01;
    pub const DAT: u8 = 0x02;
    pub const NC: u8 = 0x03;
    pub const TT: u8 = 0x04;
    pub const ROAM: u8 = 0x05;
    pub const MCAST: u8 = 0x06;
    pub const MCAST_TRACKER: u8 = 0x07;
    /// Not batman-adv's: meshwire's neighbour-scope container (see
    /// [`super::ScopeData`]). Kernels skip TVLV types they have no handler
    /// for (`batadv_tvlv_call_handler` returns success for a missing
    /// handler; there is no "mandatory" bit), so it rides in OGMs they read
    /// and relay unchanged. Chosen far above the types batman-adv assigns.
    pub const MESHWIRE_SCOPE: u8 = 0xf0;
}

/// `enum batadv_tt_data_flags`.
pub mod tt_flags {
    pub const TYPE_MASK: u8 = 0x0f;
    pub const OGM_DIFF: u8 = 1 << 0;
    pub const REQUEST: u8 = 1 << 1;
    pub const RESPONSE: u8 = 1 << 2;
    pub const FULL_TABLE: u8 = 1 << 4;
}

/// `enum batadv_tt_client_flags`, the on-wire (low 8) bits.
pub mod tt_client {
    pub const DEL: u8 = 1 << 0;
    pub const ROAM: u8 = 1 << 1;
    pub const WIFI: u8 = 1 << 4;
    pub const ISOLA: u8 = 1 << 5;
    /// `BATADV_TT_SYNC_MASK`: the flags included in the TT CRC.
    pub const SYNC_MASK: u8 = 0xf0;
}

/// `BATADV_VLAN_HAS_TAG`: set in a TT vid when the client is on a tagged VLAN.
pub const VLAN_HAS_TAG: u16 = 1 << 15;

pub const TVLV_HDR_LEN: usize = 4;
pub const TT_DATA_LEN: usize = 4;
pub const TT_VLAN_LEN: usize = 8;
pub const TT_CHANGE_LEN: usize = 12;
pub const ROAM_ADV_LEN: usize = 8;

/// One container header.
#[derive(Debug, Clone)]
pub struct TvlvHdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TvlvHdr<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        TvlvHdr { buffer }
    }
    /// Header and value must both fit.
    pub fn new_checked(buffer: T) -> WireResult<Self> {
        let h = Self::new_unchecked(buffer);
        let n = h.buffer.as_ref().len();
        if n < TVLV_HDR_LEN || n < TVLV_HDR_LEN + usize::from(h.len()) {
            return Err(WireError::Truncated);
        }
        Ok(h)
    }
    pub fn tvlv_type(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0)
    }
    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 1)
    }
    pub fn len(&self) -> u16 {
        be16_at(self.buffer.as_ref(), 2)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn value(&self) -> &[u8] {
        let end = TVLV_HDR_LEN + usize::from(self.len());
        self.buffer.as_ref().get(TVLV_HDR_LEN..end).unwrap_or(&[])
    }
}

/// One parsed container: type, version, value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tvlv<'a> {
    pub tvlv_type: u8,
    pub version: u8,
    pub value: &'a [u8],
}

/// Iterates the containers of a TVLV region. A container that does not fit
/// yields one `Err(Truncated)` and ends the walk (as `batadv_tvlv_containers_process`).
pub struct TvlvIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> TvlvIter<'a> {
    pub fn new(region: &'a [u8]) -> Self {
        TvlvIter {
            rest: region,
            failed: false,
        }
    }
}

impl<'a> Iterator for TvlvIter<'a> {
    type Item = WireResult<Tvlv<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let rest = self.rest;
        match TvlvHdr::new_checked(rest) {
            Ok(h) => {
                let end = TVLV_HDR_LEN + usize::from(h.len());
                self.rest = rest.get(end..).unwrap_or(&[]);
                Some(Ok(Tvlv {
                    tvlv_type: h.tvlv_type(),
                    version: h.version(),
                    value: rest.get(TVLV_HDR_LEN..end).unwrap_or(&[]),
                }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Appends one container (header + value) to `out`. Values over 65535 bytes
/// cannot be encoded and are refused.
pub fn emit(out: &mut Vec<u8>, tvlv_type: u8, version: u8, value: &[u8]) -> WireResult<()> {
    let len = u16::try_from(value.len()).map_err(|_| WireError::Malformed)?;
    out.push(tvlv_type);
    out.push(version);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// The value of a TT TVLV (version 1).
#[derive(Debug, Clone)]
pub struct TtData<T: AsRef<[u8]>> {
    buffer: T,
}

/// One per-VLAN record of a TT TVLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtVlan {
    pub crc: u32,
    pub vid: u16,
}

/// One `batadv_tvlv_tt_change`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtChange {
    pub flags: u8,
    pub addr: MacAddr,
    pub vid: u16,
}

impl TtChange {
    fn parse(b: &[u8]) -> TtChange {
        TtChange {
            flags: u8_at(b, 0),
            addr: mac_at(b, 4),
            vid: be16_at(b, 10),
        }
    }
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.flags, 0, 0, 0]);
        out.extend_from_slice(self.addr.as_bytes());
        out.extend_from_slice(&self.vid.to_be_bytes());
    }
}

impl<T: AsRef<[u8]>> TtData<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        TtData { buffer }
    }
    /// The fixed part and all announced VLAN records must fit.
    pub fn new_checked(buffer: T) -> WireResult<Self> {
        let d = Self::new_unchecked(buffer);
        if d.buffer.as_ref().len() < TT_DATA_LEN || d.buffer.as_ref().len() < d.changes_offset() {
            return Err(WireError::Truncated);
        }
        Ok(d)
    }
    pub fn flags(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0)
    }
    pub fn ttvn(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 1)
    }
    pub fn num_vlan(&self) -> u16 {
        be16_at(self.buffer.as_ref(), 2)
    }
    fn changes_offset(&self) -> usize {
        TT_DATA_LEN + TT_VLAN_LEN * usize::from(self.num_vlan())
    }
    pub fn vlans(&self) -> impl Iterator<Item = TtVlan> + '_ {
        let b = self.buffer.as_ref();
        let region = b.get(TT_DATA_LEN..self.changes_offset()).unwrap_or(&[]);
        region.chunks_exact(TT_VLAN_LEN).map(|c| TtVlan {
            crc: be32_at(c, 0),
            vid: be16_at(c, 4),
        })
    }
    /// The raw per-VLAN region (what a TT_REQUEST echoes back).
    pub fn vlan_bytes(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(TT_DATA_LEN..self.changes_offset())
            .unwrap_or(&[])
    }
    /// Number of whole change entries (a trailing partial entry is ignored,
    /// as `batadv_tt_entries` does).
    pub fn num_changes(&self) -> usize {
        self.buffer
            .as_ref()
            .len()
            .saturating_sub(self.changes_offset())
            / TT_CHANGE_LEN
    }
    pub fn changes(&self) -> impl Iterator<Item = TtChange> + '_ {
        let region = self
            .buffer
            .as_ref()
            .get(self.changes_offset()..)
            .unwrap_or(&[]);
        region.chunks_exact(TT_CHANGE_LEN).map(TtChange::parse)
    }
}

/// Builds a TT TVLV value: header, VLAN records, changes.
pub fn emit_tt_data(
    out: &mut Vec<u8>,
    flags: u8,
    ttvn: u8,
    vlans: &[TtVlan],
    changes: &[TtChange],
) {
    out.push(flags);
    out.push(ttvn);
    out.extend_from_slice(&u16::try_from(vlans.len()).unwrap_or(0).to_be_bytes());
    for v in vlans {
        out.extend_from_slice(&v.crc.to_be_bytes());
        out.extend_from_slice(&v.vid.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    for c in changes {
        c.emit(out);
    }
}

/// Roaming advertisement (`batadv_tvlv_roam_adv`, ROAM TVLV version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoamAdv {
    pub client: MacAddr,
    pub vid: u16,
}

impl RoamAdv {
    pub fn parse(value: &[u8]) -> WireResult<RoamAdv> {
        if value.len() < ROAM_ADV_LEN {
            return Err(WireError::Truncated);
        }
        Ok(RoamAdv {
            client: mac_at(value, 0),
            vid: be16_at(value, 6),
        })
    }
}

/// Version of the [`tvlv_type::MESHWIRE_SCOPE`] container.
pub const SCOPE_VERSION: u8 = 1;
/// Fixed part of a scope value: flags, reserved, count (be16), hash (be64).
pub const SCOPE_LEN: usize = 12;
/// `ScopeData::flags`: the node knows more originators it does not hear
/// directly than the list carries (the list is then empty).
pub const SCOPE_OVERFLOW: u8 = 1 << 0;

/// The value of a meshwire scope container: which originators the sender
/// hears on their own direct link, as a count and an order-independent hash
/// of that set, plus the originators it knows but does not hear directly
/// ("missing"). 12 bytes + 6 per missing originator.
#[derive(Debug, Clone)]
pub struct ScopeData<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ScopeData<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        ScopeData { buffer }
    }
    /// The fixed part must fit and the list be whole MACs.
    pub fn new_checked(buffer: T) -> WireResult<Self> {
        let n = buffer.as_ref().len();
        if n < SCOPE_LEN || (n - SCOPE_LEN) % 6 != 0 {
            return Err(WireError::Truncated);
        }
        Ok(ScopeData { buffer })
    }
    pub fn flags(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0)
    }
    pub fn count(&self) -> u16 {
        be16_at(self.buffer.as_ref(), 2)
    }
    pub fn hash(&self) -> u64 {
        let b = self.buffer.as_ref();
        (u64::from(be32_at(b, 4)) << 32) | u64::from(be32_at(b, 8))
    }
    pub fn missing(&self) -> impl Iterator<Item = MacAddr> + '_ {
        let b = self.buffer.as_ref().get(SCOPE_LEN..).unwrap_or(&[]);
        (0..b.len() / 6).map(move |i| mac_at(b, i * 6))
    }
}

/// Appends a scope container (header and value) to `out`.
pub fn emit_scope(out: &mut Vec<u8>, flags: u8, count: u16, hash: u64, missing: &[MacAddr]) {
    let len = (SCOPE_LEN + 6 * missing.len()) as u16;
    out.extend_from_slice(&[tvlv_type::MESHWIRE_SCOPE, SCOPE_VERSION]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[flags, 0]);
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&hash.to_be_bytes());
    for m in missing {
        out.extend_from_slice(m.as_bytes());
    }
}
