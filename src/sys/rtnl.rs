//! The two rtnetlink requests a bridged port needs (`[[port]] bridge`):
//! make a device a port of a Linux bridge (`ip link set DEV master BR`)
//! and drop a MAC the bridge learned on it (`bridge fdb del MAC dev DEV
//! master`). The messages are built and parsed by the rust-netlink crates;
//! this file only sends one request and waits for its acknowledgement.
//! Neither is on a packet path: ports are made at start and reload, and
//! the FDB entry goes before a `ctl announce`.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Makes `dev` (an ifindex) a port of the bridge `master` (an ifindex).
/// Setting the bridge a port already has is a no-op for the kernel.
pub fn set_master(dev: u32, master: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = dev;
    msg.attributes.push(LinkAttribute::Controller(master));
    request(RouteNetlinkMessage::SetLink(msg))
}

/// Removes what the bridge above `dev` learned about `mac` on `dev`
/// (`vlan`: the entry of that VLAN, for a VLAN-filtering bridge). Ok(false)
/// when there was no such entry.
pub fn bridge_fdb_del(dev: u32, mac: [u8; 6], vlan: Option<u16>) -> io::Result<bool> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = dev;
    msg.header.state = NeighbourState::Noarp;
    msg.header.flags = NeighbourFlags::Controller;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    if let Some(vid) = vlan {
        msg.attributes.push(NeighbourAttribute::Vlan(vid));
    }
    match request(RouteNetlinkMessage::DelNeighbour(msg)) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sends one request and waits for the kernel's acknowledgement (or the
/// error it answers with).
fn request(inner: RouteNetlinkMessage) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut rx = Vec::with_capacity(8192);
    loop {
        rx.clear();
        let n = socket.recv(&mut rx, 0)?;
        let mut at = 0;
        while at < n {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[at..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = reply.header.length as usize;
            if reply.header.sequence_number == 1 {
                if let NetlinkPayload::Error(e) = reply.payload {
                    return match e.code {
                        None => Ok(()),
                        Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                    };
                }
            }
            if len == 0 {
                break;
            }
            at += len;
        }
    }
}
