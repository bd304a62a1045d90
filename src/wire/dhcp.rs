//! Just enough of DHCPv4 (RFC 2131) and DHCPv6 (RFC 8415) to tell who is
//! speaking: the port guard drops server messages from ports that are not
//! DHCP servers, and a VM port may learn its IPv4 address from the ACK it
//! receives. No option is interpreted beyond the message type.

use std::net::Ipv4Addr;

use super::bytes::get_be16;

pub const V4_SERVER_PORT: u16 = 67;
pub const V4_CLIENT_PORT: u16 = 68;
pub const V6_CLIENT_PORT: u16 = 546;
pub const V6_SERVER_PORT: u16 = 547;

/// BOOTP op: a reply (server or relay to client).
pub const BOOTREPLY: u8 = 2;
/// The fixed BOOTP header before the magic cookie and options.
pub const BOOTP_LEN: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const OPT_PAD: u8 = 0;
const OPT_END: u8 = 255;
const OPT_MESSAGE_TYPE: u8 = 53;
/// DHCPv4 message type ACK.
pub const DHCPACK: u8 = 5;

/// DHCPv6 message types only a server (or relay) sends.
pub mod v6_type {
    pub const ADVERTISE: u8 = 2;
    pub const REPLY: u8 = 7;
    pub const RECONFIGURE: u8 = 10;
    pub const RELAY_REPL: u8 = 13;
}

/// Whether a UDP datagram (ports and payload) over IPv4 is a DHCP server's
/// message: anything addressed to the client port (clients accept offers
/// and acks there whatever the source port), or a BOOTREPLY from the
/// server port (to a relay).
pub fn is_v4_server_message(src_port: u16, dst_port: u16, payload: &[u8]) -> bool {
    dst_port == V4_CLIENT_PORT
        || (src_port == V4_SERVER_PORT && payload.first() == Some(&BOOTREPLY))
}

/// Whether a UDP datagram over IPv6 is a DHCPv6 server's (or relay's)
/// message: anything to the client port, or a server-only message type
/// from the server port.
pub fn is_v6_server_message(src_port: u16, dst_port: u16, payload: &[u8]) -> bool {
    use v6_type::*;
    dst_port == V6_CLIENT_PORT
        || (src_port == V6_SERVER_PORT
            && matches!(
                payload.first(),
                Some(&(ADVERTISE | REPLY | RECONFIGURE | RELAY_REPL))
            ))
}

/// What a DHCPv4 ACK grants: the address (`yiaddr`) for the client
/// hardware address `chaddr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub chaddr: [u8; 6],
    pub yiaddr: Ipv4Addr,
}

/// The ACK in a BOOTP payload, if it is one (Ethernet hardware type,
/// magic cookie, message type option 53 = 5). Never panics.
pub fn parse_ack(payload: &[u8]) -> Option<Ack> {
    let hdr = payload.get(..BOOTP_LEN + 4)?;
    // op, htype 1 (Ethernet), hlen 6.
    if hdr[0] != BOOTREPLY || hdr[1] != 1 || hdr[2] != 6 || hdr[BOOTP_LEN..] != MAGIC {
        return None;
    }
    if message_type(payload.get(BOOTP_LEN + 4..)?)? != DHCPACK {
        return None;
    }
    let y = hdr.get(16..20)?;
    let mut chaddr = [0u8; 6];
    chaddr.copy_from_slice(hdr.get(28..34)?);
    Some(Ack {
        chaddr,
        yiaddr: Ipv4Addr::new(y[0], y[1], y[2], y[3]),
    })
}

/// Option 53 among the options (pad and end honoured, lengths bounded).
fn message_type(mut opts: &[u8]) -> Option<u8> {
    while let Some(&code) = opts.first() {
        match code {
            OPT_PAD => opts = &opts[1..],
            OPT_END => return None,
            _ => {
                let len = usize::from(*opts.get(1)?);
                let value = opts.get(2..2 + len)?;
                if code == OPT_MESSAGE_TYPE {
                    return value.first().copied();
                }
                opts = &opts[2 + len..];
            }
        }
    }
    None
}

/// The UDP ports at the front of a datagram.
pub fn udp_ports(udp: &[u8]) -> Option<(u16, u16)> {
    Some((get_be16(udp, 0)?, get_be16(udp, 2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BOOTP reply with the given message type option.
    pub(crate) fn bootp(op: u8, msg_type: u8) -> Vec<u8> {
        let mut b = vec![0u8; BOOTP_LEN];
        b[0] = op;
        b[1] = 1;
        b[2] = 6;
        b[16..20].copy_from_slice(&[198, 19, 1, 77]);
        b[28..34].copy_from_slice(&[2, 0, 0, 1, 1, 1]);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&[OPT_PAD, 61, 2, 9, 9, OPT_MESSAGE_TYPE, 1, msg_type, OPT_END]);
        b
    }

    #[test]
    fn server_messages() {
        assert!(is_v4_server_message(67, 68, &bootp(2, 2)));
        assert!(is_v4_server_message(4000, 68, &[]), "to the client port");
        assert!(
            is_v4_server_message(67, 67, &bootp(2, 5)),
            "reply to a relay"
        );
        assert!(
            !is_v4_server_message(68, 67, &bootp(1, 3)),
            "a client request"
        );
        assert!(
            !is_v4_server_message(67, 67, &bootp(1, 3)),
            "relayed request"
        );
        assert!(is_v6_server_message(547, 546, &[7]));
        assert!(is_v6_server_message(547, 547, &[13]));
        assert!(!is_v6_server_message(546, 547, &[1]), "a solicit");
        assert!(!is_v6_server_message(547, 547, &[12]), "relay-forward");
    }

    #[test]
    fn ack_and_not() {
        let a = parse_ack(&bootp(2, DHCPACK)).unwrap();
        assert_eq!(a.yiaddr, Ipv4Addr::new(198, 19, 1, 77));
        assert_eq!(a.chaddr, [2, 0, 0, 1, 1, 1]);
        assert_eq!(parse_ack(&bootp(2, 2)), None, "an offer");
        assert_eq!(parse_ack(&bootp(1, DHCPACK)), None, "a request");
        let full = bootp(2, DHCPACK);
        for n in 0..full.len() {
            let _ = parse_ack(&full[..n]);
        }
        // An option whose length runs past the end.
        let mut bad = bootp(2, DHCPACK);
        bad.truncate(BOOTP_LEN + 4);
        bad.extend_from_slice(&[61, 200, 1]);
        assert_eq!(parse_ack(&bad), None);
    }
}
