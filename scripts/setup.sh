#!/usr/bin/env bash
# Idempotent setup on a Debian machine where you are root: apt packages, the .venv, an editable install.
# A second run installs nothing (it checks dpkg and a hash of pyproject.toml first).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # the emulated lab: namespaces, veths, OVS userspace datapath, sshd, traffic tools
  iproute2 ethtool procps psmisc util-linux openvswitch-switch openssh-server openssh-client iperf3 iputils-ping
  # NDR/PDR searches: tcpreplay is the exact-count, rate-accurate generator on the guests
  tcpreplay
  # the emulated-qemu lab: QEMU guests, OVS-DPDK with vhost-user, guest image parts
  qemu-system-x86 openvswitch-switch-dpdk librte-mempool-ring23 librte-net-af-packet23 librte-bus-vdev23 busybox-static dropbear-bin cpio xz-utils socat
  # reports and history: PostgreSQL for the shared-history self-tests, Chromium for the HTML screenshot test
  postgresql chromium fonts-dejavu-core
  # the toolchain for the venv
  python3 python3-venv python3-dev gcc make git
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: apt packages already installed"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.vdpalab-install-hash
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing the vdpalab package and its dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
else
  echo "setup: .venv is up to date"
fi
