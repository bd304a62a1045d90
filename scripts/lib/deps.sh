# Installs the packages the tests and the demo need, when they are missing.
# Debian package names; apt-get update only when something must be installed.

_apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

need_test_deps() {
    # dnsmasq-base, radvd, busybox (udhcpc): the rogue servers and the client of the policy tests.
    # curl, prometheus (promtool), systemd (systemd-analyze): the service tests.
    _apt_install iproute2 iputils-ping iputils-arping iperf3 procps wireguard-tools kmod bc \
        dnsmasq-base radvd busybox curl prometheus systemd
    command -v cargo >/dev/null || { echo "cargo is missing (the machine's Rust toolchain)" >&2; exit 1; }
    rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt
}
