//! Packet formats: zero-copy views over byte slices, in the style of smoltcp's
//! `wire` module. Every view has a `new_checked` (or `check_len`) after which
//! its accessors cannot panic; nothing here does I/O or allocates.

#![forbid(unsafe_code)]

pub mod arp;
pub mod batman;
pub mod bytes;
pub mod checksum;
pub mod dhcp;
pub mod ethernet;
pub mod gre;
pub mod igmp;
pub mod ipv4;
pub mod ipv6;
pub mod mac;
pub mod mss;
pub mod mtu;
pub mod ndisc;
pub mod tcp;
pub mod udp;
pub mod vnet;
pub mod wireguard;

pub use mac::MacAddr;

/// Why a view refused a buffer. Callers drop the packet and count the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// Shorter than the fixed header or than a length field claims.
    Truncated,
    /// A field holds a value this format does not allow (version, type, flags).
    Malformed,
    /// Valid, but not something we handle (another GRE protocol, IP option...).
    Unsupported,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated",
            WireError::Malformed => "malformed",
            WireError::Unsupported => "unsupported",
        })
    }
}

impl std::error::Error for WireError {}

pub type WireResult<T> = Result<T, WireError>;
