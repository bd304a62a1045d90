//! The framing a kernel `gretap local A remote B` puts around an Ethernet
//! frame before `wg0` encrypts it: inner IP (protocol 47, DF, TTL 64, TOS 0)
//! then the 4-byte GRE header with protocol 0x6558.
//!
//! Outgoing, the headers are written in front of the frame inside one
//! reusable buffer; incoming, the checks are the ones wg's allowed-ips and
//! the gretap's local/remote addresses would make, and the frame is returned
//! as a slice of the decrypted buffer (no copy). `classify` tells whole
//! packets from inner IP fragments (checked the same way), which the
//! receive path hands to the peer's `Reassembly` and then to `decap_gre`.

use std::net::IpAddr;

use crate::wire::{gre, ipv4, ipv6, WireError};

/// TTL / hop limit of the inner header: the kernel's default for a gretap
/// carrying non-IP frames (batman-adv's 0x4305), as the capture shows.
pub const INNER_TTL: u8 = 64;
/// Smallest frame we carry: an Ethernet header.
pub const MIN_FRAME_LEN: usize = 14;

/// Bytes the inner headers take for a given inner address family.
pub const fn header_len(inner_v6: bool) -> usize {
    (if inner_v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    }) + gre::HEADER_LEN
}

/// Our end and the peer's end of one gretap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub local: IpAddr,
    pub remote: IpAddr,
}

/// Why an inner packet was not a gretap frame for us. Each reason is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// IPv4/IPv6 header truncated, wrong version, bad lengths.
    BadIpHeader,
    /// IPv4 header checksum wrong.
    BadIpChecksum,
    /// A piece of a fragmented datagram where nothing reassembles
    /// (`decap`); the receive path reassembles instead.
    Fragment,
    /// Another IP protocol (ICMP "protocol unreachable" from a GRE-less
    /// host, IPv6 extension headers, anything but 47).
    NotGre,
    /// Source is not the peer's inner address (wg allowed-ips would drop it).
    WrongSource,
    /// Destination is not our inner address.
    WrongDestination,
    /// GRE header truncated, version != 0, routing present, bad checksum.
    BadGre,
    /// GRE protocol other than transparent Ethernet bridging.
    NotTeb,
    /// Shorter than an Ethernet header.
    ShortFrame,
}

/// Writes the inner headers for `frame_len` bytes of Ethernet frame into the
/// front of `buf` (which must hold `header_len` bytes). `ident` is the IPv4
/// identification; the kernel uses a per-destination counter even with DF.
pub fn encap_headers(
    buf: &mut [u8],
    link: Link,
    frame_len: usize,
    ident: u16,
) -> Result<usize, WireError> {
    let gre_len = gre::HEADER_LEN + frame_len;
    let ip_len = match (link.local, link.remote) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let r = ipv4::Repr {
                src_addr: src,
                dst_addr: dst,
                protocol: ipv4::PROTO_GRE,
                payload_len: gre_len,
                ttl: INNER_TTL,
                tos: 0,
                ident,
                dont_frag: true,
            };
            r.emit(buf)?;
            ipv4::HEADER_LEN
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let r = ipv6::Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: ipv4::PROTO_GRE,
                payload_len: gre_len,
                hop_limit: INNER_TTL,
            };
            r.emit(buf)?;
            ipv6::HEADER_LEN
        }
        // The config check refuses mixed families; never build a lie.
        _ => return Err(WireError::Unsupported),
    };
    gre::emit_plain(
        buf.get_mut(ip_len..).ok_or(WireError::Truncated)?,
        gre::PROTO_TEB,
    )?;
    Ok(ip_len + gre::HEADER_LEN)
}

/// A decrypted inner packet that passed the link checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner<'a> {
    /// A whole packet: its GRE header and payload.
    Whole(&'a [u8]),
    /// A piece of a fragmented gretap packet (for `Reassembly`).
    Fragment(Fragment<'a>),
}

/// One IP fragment of a gretap packet from the link's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// IPv4 identification (widened) or IPv6 fragment identification.
    pub ident: u32,
    /// Where `data` starts in the reassembled IP payload, in bytes.
    pub offset: usize,
    /// More fragments follow (MF / M flag).
    pub more: bool,
    pub data: &'a [u8],
}

/// Checks a decrypted inner packet against the link and returns the
/// Ethernet frame inside it. Fragments are refused (`Drop::Fragment`):
/// reassembly needs state, which `classify` + `Reassembly` provide.
pub fn decap(packet: &[u8], link: Link) -> Result<&[u8], Drop> {
    match classify(packet, link)? {
        Inner::Whole(gre_bytes) => decap_gre(gre_bytes),
        Inner::Fragment(_) => Err(Drop::Fragment),
    }
}

/// The IP-level checks (header, checksum, protocol 47, the link's
/// addresses) for a whole packet or a fragment of one.
pub fn classify(packet: &[u8], link: Link) -> Result<Inner<'_>, Drop> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => classify_v4(packet, link),
        Some(6) => classify_v6(packet, link),
        _ => Err(Drop::BadIpHeader),
    }
}

/// The GRE checks on a whole (or reassembled) IP payload; returns the frame.
pub fn decap_gre(gre_bytes: &[u8]) -> Result<&[u8], Drop> {
    let g = gre::Packet::new_checked(gre_bytes).map_err(|_| Drop::BadGre)?;
    if !g.verify_checksum() {
        return Err(Drop::BadGre);
    }
    if g.protocol_type() != gre::PROTO_TEB {
        return Err(Drop::NotTeb);
    }
    // Re-slice from the original borrow so the frame outlives the view.
    let frame = gre_bytes.get(g.header_len()..).ok_or(Drop::BadGre)?;
    if frame.len() < MIN_FRAME_LEN {
        return Err(Drop::ShortFrame);
    }
    Ok(frame)
}

fn classify_v4(packet: &[u8], link: Link) -> Result<Inner<'_>, Drop> {
    let ip = ipv4::Packet::new_checked(packet).map_err(|_| Drop::BadIpHeader)?;
    if !ip.verify_checksum() {
        return Err(Drop::BadIpChecksum);
    }
    // Every fragment carries the protocol and addresses, so all checks
    // apply before anything is held for reassembly.
    if ip.protocol() != ipv4::PROTO_GRE {
        return Err(Drop::NotGre);
    }
    if IpAddr::V4(ip.src_addr()) != link.remote {
        return Err(Drop::WrongSource);
    }
    if IpAddr::V4(ip.dst_addr()) != link.local {
        return Err(Drop::WrongDestination);
    }
    // Re-slice from the original borrow so the frame outlives the view.
    let (start, end) = (ip.header_len(), usize::from(ip.total_len()));
    let payload = packet.get(start..end).ok_or(Drop::BadIpHeader)?;
    if !ip.is_fragment() {
        return Ok(Inner::Whole(payload));
    }
    Ok(Inner::Fragment(Fragment {
        ident: u32::from(ip.ident()),
        offset: usize::from(ip.frag_offset()),
        more: ip.more_frags(),
        data: payload,
    }))
}

fn classify_v6(packet: &[u8], link: Link) -> Result<Inner<'_>, Drop> {
    let ip = ipv6::Packet::new_checked(packet).map_err(|_| Drop::BadIpHeader)?;
    let fragmented = ip.next_header() == ipv6::PROTO_FRAGMENT;
    if ip.next_header() != ipv4::PROTO_GRE && !fragmented {
        return Err(Drop::NotGre);
    }
    if IpAddr::V6(ip.src_addr()) != link.remote {
        return Err(Drop::WrongSource);
    }
    if IpAddr::V6(ip.dst_addr()) != link.local {
        return Err(Drop::WrongDestination);
    }
    let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
    let payload = packet.get(ipv6::HEADER_LEN..end).ok_or(Drop::BadIpHeader)?;
    if !fragmented {
        return Ok(Inner::Whole(payload));
    }
    let fh = ipv6::FragHeader::new_checked(payload).map_err(|_| Drop::BadIpHeader)?;
    // Only GRE directly behind the fragment header (no further extension
    // headers, as for whole packets).
    if fh.next_header() != ipv4::PROTO_GRE {
        return Err(Drop::NotGre);
    }
    let data = payload
        .get(ipv6::FRAG_HEADER_LEN..)
        .ok_or(Drop::BadIpHeader)?;
    let (offset, more) = (usize::from(fh.frag_offset()), fh.more_frags());
    if offset == 0 && !more {
        // An "atomic fragment" (RFC 6946): a whole packet.
        return Ok(Inner::Whole(data));
    }
    Ok(Inner::Fragment(Fragment {
        ident: fh.ident(),
        offset,
        more,
        data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::captures;
    use std::net::Ipv4Addr;

    fn a_to_b() -> Link {
        Link {
            local: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
            remote: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)),
        }
    }

    fn b_from_a() -> Link {
        Link {
            local: a_to_b().remote,
            remote: a_to_b().local,
        }
    }

    /// Our headers around the captured Ethernet frames are byte-identical to
    /// what the kernel's gretap + wg0 produced (given the kernel's IP ident).
    #[test]
    fn encap_matches_kernel_bytes() {
        for cap in captures::ALL {
            let frame = &cap[24..];
            let ident = u16::from_be_bytes([cap[4], cap[5]]);
            let mut buf = vec![0u8; 24 + frame.len()];
            let hl = encap_headers(&mut buf, a_to_b(), frame.len(), ident).unwrap();
            assert_eq!(hl, header_len(false));
            buf[hl..].copy_from_slice(frame);
            assert_eq!(&buf[..], cap);
        }
    }

    #[test]
    fn decap_kernel_bytes() {
        for cap in captures::ALL {
            assert_eq!(decap(cap, b_from_a()), Ok(&cap[24..]));
            // From A's own point of view the addresses are reversed.
            assert_eq!(decap(cap, a_to_b()), Err(Drop::WrongSource));
        }
        // WireGuard padding after the IP total length is not frame.
        let mut padded = captures::BATMAN_ICMP.to_vec();
        padded.extend_from_slice(&[0u8; 6]);
        assert_eq!(decap(&padded, b_from_a()).unwrap().len(), 58 - 24);
    }

    #[test]
    fn decap_drop_reasons() {
        let l = b_from_a();
        let ogm = captures::OGM.to_vec();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = ogm.clone();
            f(&mut v);
            v
        };
        let refill = |v: &mut Vec<u8>| {
            let mut p = ipv4::Packet::new_unchecked(&mut v[..]);
            p.fill_checksum();
        };
        assert_eq!(decap(&[], l), Err(Drop::BadIpHeader));
        assert_eq!(decap(&ogm[..19], l), Err(Drop::BadIpHeader));
        assert_eq!(decap(&with(&|v| v[11] ^= 1), l), Err(Drop::BadIpChecksum));
        // ICMP protocol unreachable instead of GRE.
        let icmp = with(&|v| {
            v[9] = 1;
            refill(v)
        });
        assert_eq!(decap(&icmp, l), Err(Drop::NotGre));
        let frag = with(&|v| {
            v[6] = 0x20;
            refill(v)
        });
        assert_eq!(decap(&frag, l), Err(Drop::Fragment));
        let spoofed = with(&|v| {
            v[15] = 9;
            refill(v)
        });
        assert_eq!(decap(&spoofed, l), Err(Drop::WrongSource));
        let other_dst = with(&|v| {
            v[19] = 9;
            refill(v)
        });
        assert_eq!(decap(&other_dst, l), Err(Drop::WrongDestination));
        assert_eq!(decap(&with(&|v| v[21] = 1), l), Err(Drop::BadGre));
        assert_eq!(decap(&with(&|v| v[22] = 0x08), l), Err(Drop::NotTeb));
        let short = with(&|v| {
            v.truncate(24 + 13);
            v[2..4].copy_from_slice(&37u16.to_be_bytes());
            refill(v)
        });
        assert_eq!(decap(&short, l), Err(Drop::ShortFrame));
    }

    /// 100k mutated captures and random buffers through decap: no panic,
    /// and a delivered frame is always a slice of the input.
    #[test]
    fn hostile_inner_packets_never_panic() {
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let links = [b_from_a(), a_to_b()];
        let mut delivered = 0;
        for i in 0..100_000usize {
            let cap = captures::ALL[i % captures::ALL.len()];
            let mut v = cap.to_vec();
            for _ in 0..1 + rnd() % 3 {
                let at = (rnd() as usize) % v.len().min(64);
                v[at] = rnd() as u8;
            }
            v.truncate((rnd() as usize) % (cap.len() + 1));
            if i % 7 == 0 {
                v[..].iter_mut().for_each(|b| *b = rnd() as u8);
            }
            if let Ok(f) = decap(&v, links[i % 2]) {
                assert!(f.len() >= MIN_FRAME_LEN && f.len() <= v.len());
                delivered += 1;
            }
        }
        assert!(delivered > 0);
    }

    #[test]
    fn ipv6_inner_roundtrip() {
        let link = Link {
            local: "fd00::1".parse().unwrap(),
            remote: "fd00::2".parse().unwrap(),
        };
        let back = Link {
            local: link.remote,
            remote: link.local,
        };
        let frame = &captures::OGM[24..];
        let mut buf = vec![0u8; header_len(true) + frame.len() + 10];
        let hl = encap_headers(&mut buf, link, frame.len(), 0).unwrap();
        assert_eq!(hl, 44);
        buf[hl..hl + frame.len()].copy_from_slice(frame);
        assert_eq!(buf[7], 64);
        assert_eq!(decap(&buf, back), Ok(frame));
        assert_eq!(decap(&buf, link), Err(Drop::WrongSource));
        buf[6] = 0; // hop-by-hop options header: unsupported
        assert_eq!(decap(&buf, back), Err(Drop::NotGre));
        let mixed = Link {
            local: a_to_b().local,
            remote: link.remote,
        };
        assert_eq!(
            encap_headers(&mut buf, mixed, 10, 0),
            Err(WireError::Unsupported)
        );
    }
}
