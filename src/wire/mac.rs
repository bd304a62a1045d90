//! Ethernet (MAC) addresses.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Reads a MAC from the first six bytes; `None` when fewer are given.
    pub fn from_bytes(b: &[u8]) -> Option<MacAddr> {
        b.get(..6).map(|s| {
            let mut a = [0u8; 6];
            a.copy_from_slice(s);
            MacAddr(a)
        })
    }

    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Group bit: broadcast and multicast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// A unicast, locally administered address from arbitrary bytes.
    pub fn local_unicast(mut b: [u8; 6]) -> MacAddr {
        b[0] = (b[0] & 0xfc) | 0x02;
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMacError;

impl fmt::Display for ParseMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a MAC address like 02:00:00:00:00:01")
    }
}

impl std::error::Error for ParseMacError {}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or(ParseMacError)?;
            if p.len() != 2 {
                return Err(ParseMacError);
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(MacAddr(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let m: MacAddr = "02:00:00:00:0a:01".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0, 0, 0x0a, 1]);
        assert_eq!(m.to_string(), "02:00:00:00:0a:01");
        assert!(m.is_unicast());
        assert!(MacAddr::BROADCAST.is_multicast());
    }

    #[test]
    fn rejects_bad() {
        for s in [
            "",
            "02:00",
            "02:00:00:00:0a:01:02",
            "zz:00:00:00:00:00",
            "2:0:0:0:0:1",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s}");
        }
    }

    #[test]
    fn local_unicast_bits() {
        let m = MacAddr::local_unicast([0xff; 6]);
        assert!(m.is_unicast());
        assert_eq!(m.0[0] & 0x02, 0x02);
    }
}
