//! End-to-end tests: three hypervisor namespaces on one underlay bridge, VMs
//! behind TAP ports, real `meshwire` daemons, real traffic.

mod arp_nd;
mod attach;
mod bridged;
mod common;
mod control;
mod ctl_mesh;
mod flap;
mod hostile;
mod mcast;
mod migration;
mod mtu;
mod node;
mod policy;
mod policy_guard;
mod policy_storm;
mod policy_vlan;
mod reload;
mod reroute;
mod scale;
mod service;
mod workers;
