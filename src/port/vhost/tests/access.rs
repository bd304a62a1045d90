//! The socket file qemu connects to gets the port's group and mode when
//! the port opens and again when they change, and goes with the port (and
//! only its own file: the same path may be a new port's by then).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::super::{SocketAccess, VhostDev};

fn mode_and_gid(p: &std::path::Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).expect("the socket file");
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
    (m.permissions().mode() & 0o777, m.gid())
}

#[test]
fn the_socket_file_gets_the_ports_group_and_mode() {
    let dir = std::env::temp_dir().join(format!("mw-vhost-access-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sock = dir.join("guest.sock");
    // Our own group: a group any user may give a file it owns.
    let (_, gid) = crate::sys::cred::effective_ids();

    let dev = VhostDev::open(&sock, SocketAccess::default(), 1500, false).unwrap();
    assert_eq!(mode_and_gid(&sock).0, 0o660, "the default mode");
    // The port goes and comes back at once on the same path (`ctl port
    // del` + `port add`): the old listener's thread must not remove the
    // new port's socket as it winds down (it did, before `stop` removed
    // only the file it bound).
    drop(dev);

    let access = SocketAccess {
        gid: Some(gid),
        mode: 0o640,
    };
    let dev = VhostDev::open(&sock, access, 1500, false).unwrap();
    assert_eq!(mode_and_gid(&sock), (0o640, gid));
    // A reload changes them on the open port.
    dev.set_access(SocketAccess {
        gid: None,
        mode: 0o600,
    })
    .unwrap();
    assert_eq!(mode_and_gid(&sock), (0o600, gid));
    // qemu connects (we are the socket's owner).
    std::os::unix::net::UnixStream::connect(&sock).expect("the owner connects");
    drop(dev);
    assert!(!sock.exists(), "the socket file goes with the port");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let _ = std::fs::remove_dir_all(&dir);
}
