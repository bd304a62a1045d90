use super::*;

/// An Ethernet + IPv4 (router alert) frame around the IGMP message `msg`,
/// its checksum filled in. Shared with the bridge's snooping tests.
pub(crate) fn igmp_frame(src: MacAddr, dst: Ipv4Addr, msg: &[u8]) -> Vec<u8> {
    let mut m = msg.to_vec();
    m[2] = 0;
    m[3] = 0;
    let ck = checksum::checksum(&m);
    m[2..4].copy_from_slice(&ck.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(group_mac(IpAddr::V4(dst)).as_bytes());
    f.extend_from_slice(src.as_bytes());
    f.extend_from_slice(&ethertype::IPV4.to_be_bytes());
    let ip = f.len();
    let total = (24 + m.len()) as u16;
    f.extend_from_slice(&[0x46, 0xc0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 1, PROTO_IGMP, 0, 0, 198, 19, 0, 2]);
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&[0x94, 4, 0, 0]);
    let ck = checksum::checksum(&f[ip..]);
    f[ip + 10..ip + 12].copy_from_slice(&ck.to_be_bytes());
    f.extend_from_slice(&m);
    f
}

/// An Ethernet + IPv6 + hop-by-hop frame around the MLD message `msg`.
pub(crate) fn mld_frame(src: MacAddr, dst: Ipv6Addr, msg: &[u8]) -> Vec<u8> {
    let src_ip = crate::bridge::policy::link_local(src);
    let mut m = msg.to_vec();
    m[2] = 0;
    m[3] = 0;
    let ph = checksum::pseudo_header_v6(src_ip, dst, PROTO_ICMPV6, m.len() as u32);
    let ck = checksum::finish(checksum::combine(&[ph, checksum::sum(&m)]));
    m[2..4].copy_from_slice(&ck.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(group_mac(IpAddr::V6(dst)).as_bytes());
    f.extend_from_slice(src.as_bytes());
    f.extend_from_slice(&ethertype::IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((8 + m.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1]);
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&[PROTO_ICMPV6, 0, 5, 2, 0, 0, 1, 0]);
    f.extend_from_slice(&m);
    f
}

pub(crate) fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub(crate) fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// An IGMPv2 report (join) or leave for `group`.
pub(crate) fn igmp_v2(src: MacAddr, group: Ipv4Addr, join: bool) -> Vec<u8> {
    let t = if join {
        igmp_type::V2_REPORT
    } else {
        igmp_type::LEAVE
    };
    let mut m = vec![t, 0, 0, 0];
    m.extend_from_slice(&group.octets());
    let dst = if join { group } else { v4("224.0.0.2") };
    igmp_frame(src, dst, &m)
}

/// An IGMPv3 report with one record per (type, group, sources).
pub(crate) fn igmp_v3(src: MacAddr, records: &[(u8, Ipv4Addr, u16)]) -> Vec<u8> {
    let mut m = vec![igmp_type::V3_REPORT, 0, 0, 0, 0, 0];
    m.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for (t, g, nsrc) in records {
        m.extend_from_slice(&[*t, 0]);
        m.extend_from_slice(&nsrc.to_be_bytes());
        m.extend_from_slice(&g.octets());
        for i in 0..*nsrc {
            m.extend_from_slice(&[198, 19, 9, i as u8]);
        }
    }
    igmp_frame(src, v4("224.0.0.22"), &m)
}

/// An MLDv2 report with one record per (type, group).
pub(crate) fn mld_v2(src: MacAddr, records: &[(u8, Ipv6Addr)]) -> Vec<u8> {
    let mut m = vec![mld_type::V2_REPORT, 0, 0, 0, 0, 0];
    m.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for (t, g) in records {
        m.extend_from_slice(&[*t, 0, 0, 0]);
        m.extend_from_slice(&g.octets());
    }
    mld_frame(src, v6("ff02::16"), &m)
}

/// An MLDv1 report or done.
pub(crate) fn mld_v1(src: MacAddr, group: Ipv6Addr, join: bool) -> Vec<u8> {
    let t = if join {
        mld_type::V1_REPORT
    } else {
        mld_type::V1_DONE
    };
    let mut m = vec![t, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&group.octets());
    mld_frame(src, if join { group } else { v6("ff02::2") }, &m)
}

const VM: MacAddr = MacAddr([2, 0, 0, 0x77, 0, 1]);

fn collect(frame: &[u8]) -> (WireResult<Option<Kind>>, Vec<(IpAddr, Change)>) {
    let mut got = Vec::new();
    let r = parse(frame, |g, c| got.push((g, c)));
    (r, got)
}

#[test]
fn igmp_v2_join_and_leave() {
    let g = v4("239.1.2.3");
    let (r, got) = collect(&igmp_v2(VM, g, true));
    assert_eq!(r, Ok(Some(Kind::Report)));
    assert_eq!(got, vec![(IpAddr::V4(g), Change::Join)]);
    let (_, got) = collect(&igmp_v2(VM, g, false));
    assert_eq!(got, vec![(IpAddr::V4(g), Change::Leave)]);
}

#[test]
fn igmp_v3_records() {
    let (a, b, c) = (v4("239.1.2.3"), v4("239.1.2.4"), v4("232.1.1.1"));
    // EXCLUDE{} = join, TO_IN{} = leave, ALLOW{S} = join (SSM), BLOCK = nothing
    let f = igmp_v3(VM, &[(4, a, 0), (3, b, 0), (5, c, 2), (6, a, 1)]);
    let (r, got) = collect(&f);
    assert_eq!(r, Ok(Some(Kind::Report)));
    assert_eq!(
        got,
        vec![
            (IpAddr::V4(a), Change::Join),
            (IpAddr::V4(b), Change::Leave),
            (IpAddr::V4(c), Change::Join),
        ]
    );
}

#[test]
fn mld_v1_and_v2() {
    let g = v6("ff0e::1234");
    let (r, got) = collect(&mld_v2(VM, &[(2, g), (1, v6("ff05::9"))]));
    assert_eq!(r, Ok(Some(Kind::Report)));
    assert_eq!(
        got,
        vec![
            (IpAddr::V6(g), Change::Join),
            (IpAddr::V6(v6("ff05::9")), Change::Leave)
        ]
    );
    let (_, got) = collect(&mld_v1(VM, g, true));
    assert_eq!(got, vec![(IpAddr::V6(g), Change::Join)]);
    let (_, got) = collect(&mld_v1(VM, g, false));
    assert_eq!(got, vec![(IpAddr::V6(g), Change::Leave)]);
}

#[test]
fn our_queries_parse_as_queries() {
    let mut buf = Vec::new();
    igmp_general_query(VM, &mut buf);
    assert_eq!(collect(&buf).0, Ok(Some(Kind::Query { v6: false })));
    mld_general_query(VM, crate::bridge::policy::link_local(VM), &mut buf);
    assert_eq!(collect(&buf).0, Ok(Some(Kind::Query { v6: true })));
}

#[test]
fn hostile_reports_are_refused_whole() {
    let g = v4("239.1.2.3");
    // a bad checksum
    let mut f = igmp_v2(VM, g, true);
    let last = f.len() - 1;
    f[last] ^= 1;
    let (r, got) = collect(&f);
    assert!(r.is_err());
    assert!(got.is_empty());
    // a v3 report whose record count lies: no record is believed
    let mut f = igmp_v3(VM, &[(4, g, 0)]);
    let at = f.len() - 8 - 2;
    f[at + 1] = 9;
    let ip = ethernet::HEADER_LEN + 24;
    f[ip + 2] = 0;
    f[ip + 3] = 0;
    let ck = checksum::checksum(&f[ip..]);
    f[ip + 2..ip + 4].copy_from_slice(&ck.to_be_bytes());
    let (r, got) = collect(&f);
    assert_eq!(r, Err(WireError::Truncated));
    assert!(got.is_empty());
    // every truncation of a valid report fails or reads as no report
    let f = mld_v2(VM, &[(2, v6("ff0e::1")), (4, v6("ff0e::2"))]);
    for n in 0..f.len() {
        let (r, _) = collect(&f[..n]);
        assert!(r != Ok(Some(Kind::Report)), "cut at {n}");
    }
}

#[test]
fn other_frames_are_not_membership() {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(VM.as_bytes());
    f.extend_from_slice(&ethertype::ARP.to_be_bytes());
    f.extend_from_slice(&[0; 28]);
    assert_eq!(collect(&f).0, Ok(None));
}

#[test]
fn destinations_as_the_kernel_sees_them() {
    let udp4 = |dst: &str| {
        let mut f = igmp_v2(VM, v4(dst), true);
        f[ethernet::HEADER_LEN + 9] = 17;
        f
    };
    let d = mcast_dst(&udp4("239.1.2.3")).unwrap();
    assert!(!d.v6 && !d.unsnoopable && d.routable);
    let d = mcast_dst(&udp4("224.0.0.251")).unwrap();
    assert!(d.unsnoopable && !d.routable);
    // a report goes as broadcast
    assert_eq!(mcast_dst(&igmp_v2(VM, v4("239.1.2.3"), true)), None);
    assert_eq!(mcast_dst(&mld_v1(VM, v6("ff0e::1"), true)), None);
}

#[test]
fn group_macs() {
    assert_eq!(
        group_mac(IpAddr::V4(v4("239.129.2.3"))),
        MacAddr([1, 0, 0x5e, 1, 2, 3])
    );
    assert_eq!(
        group_mac(IpAddr::V6(v6("ff02::1:ff00:2"))),
        MacAddr([0x33, 0x33, 0xff, 0, 0, 2])
    );
}
