//! WireGuard keys (base64, interchangeable with `wg genkey`/`wg pubkey`) and
//! the addresses derived from them.
//!
//! The originator MAC and each per-peer "hard interface" MAC are derived from
//! the node's key, so a restarted node is the same originator to the mesh and
//! the same neighbour on each link: a restart must not look like new nodes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use blake2::{Blake2s256, Digest};
use boringtun::x25519::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::wire::MacAddr;

/// A 32-byte key as WireGuard writes it: standard base64, 44 characters.
pub fn decode_key(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    // A private key passes here too: the decoded copy is wiped.
    let raw = Zeroizing::new(
        B64.decode(s)
            .map_err(|e| format!("not valid base64 ({e})"))?,
    );
    <[u8; 32]>::try_from(raw.as_slice())
        .map_err(|_| format!("a key is 32 bytes, this one is {}", raw.len()))
}

pub fn encode_key(k: &[u8; 32]) -> String {
    B64.encode(k)
}

/// A fresh private key, clamped as curve25519 wants (as `wg genkey` does).
pub fn generate_private() -> [u8; 32] {
    let mut k = [0u8; 32];
    getrandom::getrandom(&mut k).expect("the kernel's random source is unavailable");
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

pub fn public_from_private(private: &[u8; 32]) -> [u8; 32] {
    // x25519-dalek's StaticSecret wipes itself on drop (its `zeroize`
    // feature, on by default and so in boringtun's build).
    let secret = StaticSecret::from(*private);
    PublicKey::from(&secret).to_bytes()
}

/// What `check` and `run` say about a file that holds the private key
/// (`private_key_file`, or the config itself with an inline key) when its
/// mode lets others than its owner read or write it. A warning, not a
/// refusal: as `wg` does, because the key is exposed already by the time
/// we look (refusing would add an outage to the leak, on a node that ran
/// yesterday), and because configuration management often makes the file
/// before it sets the mode. The log line names the fix.
pub fn file_mode_warning(path: &Path, what: &str) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    let mut who = Vec::new();
    if mode & 0o044 != 0 {
        who.push(match mode & 0o044 {
            0o004 => "readable by every user",
            0o040 => "readable by its group",
            _ => "readable by its group and every user",
        });
    }
    if mode & 0o022 != 0 {
        who.push("writable by others than its owner");
    }
    if who.is_empty() {
        return None;
    }
    Some(format!(
        "{what} {} is {} (mode {mode:04o}): the private key should be the owner's alone \
         (chmod 600 {})",
        path.display(),
        who.join(" and "),
        path.display()
    ))
}

/// `genkey`/`wg genkey`: stdout redirected to a regular file that every
/// user may read. Same words as wg(8).
pub fn genkey_output_warning() -> Option<&'static str> {
    let m = std::fs::metadata("/proc/self/fd/1").ok()?;
    (m.is_file() && m.permissions().mode() & 0o004 != 0).then_some(
        "Warning: writing to world accessible file.\nConsider setting the umask to 077 and trying again.",
    )
}

fn derive_mac(label: &[u8], parts: &[&[u8; 32]]) -> MacAddr {
    let mut h = Blake2s256::new();
    h.update(b"meshwire mac v1 ");
    h.update(label);
    for p in parts {
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 6];
    b.copy_from_slice(&d[..6]);
    MacAddr::local_unicast(b)
}

/// The node's originator address (batman's primary interface address).
/// Derived from the public key: it is public anyway, and `meshwire ctl`
/// users on other nodes can compute it from the config.
pub fn originator_mac(own_public: &[u8; 32]) -> MacAddr {
    derive_mac(b"originator", &[own_public])
}

/// The MAC of this node's hard interface towards one peer (the MAC a kernel
/// node would give its gretap to that peer).
pub fn hardif_mac(own_public: &[u8; 32], peer_public: &[u8; 32]) -> MacAddr {
    derive_mac(b"hardif", &[own_public, peer_public])
}

/// The MAC of the node's own mesh interface (the source of frames the node
/// itself sends into the mesh, as bat0's MAC is for a kernel node).
pub fn mesh_if_mac(own_public: &[u8; 32]) -> MacAddr {
    derive_mac(b"meshif", &[own_public])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // RFC 7748 section 6.1 (Alice).
        let private: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let public = public_from_private(&private);
        assert_eq!(
            encode_key(&public),
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
        );
    }

    #[test]
    fn roundtrip_and_errors() {
        let k = generate_private();
        assert_eq!(decode_key(&encode_key(&k)).unwrap(), k);
        assert!(decode_key("abc").is_err());
        assert!(decode_key("AAAA").unwrap_err().contains("32 bytes"));
    }

    #[test]
    fn key_file_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mw-keymode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("key");
        std::fs::write(&f, "x").unwrap();
        let set = |m| std::fs::set_permissions(&f, std::fs::Permissions::from_mode(m)).unwrap();
        for (mode, want) in [
            (0o600, None),
            (0o400, None),
            (0o640, Some("readable by its group (mode 0640)")),
            (0o604, Some("readable by every user")),
            (0o644, Some("readable by its group and every user")),
            (0o620, Some("writable by others")),
        ] {
            set(mode);
            let w = file_mode_warning(&f, "node.private_key_file");
            match want {
                None => assert_eq!(w, None, "{mode:o}"),
                Some(s) => {
                    let w = w.unwrap();
                    assert!(w.contains(s) && w.contains("chmod 600"), "{mode:o}: {w}");
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn macs_stable_and_distinct() {
        let a = public_from_private(&generate_private());
        let b = public_from_private(&generate_private());
        assert_eq!(originator_mac(&a), originator_mac(&a));
        assert_ne!(originator_mac(&a), originator_mac(&b));
        assert_ne!(hardif_mac(&a, &b), hardif_mac(&b, &a));
        assert!(originator_mac(&a).is_unicast());
    }
}
