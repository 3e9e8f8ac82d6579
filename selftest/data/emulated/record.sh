#!/usr/bin/env bash
# Re-record the outputs in this folder from the real tools of this machine.
#
# Run as root from the repository root:  bash selftest/data/emulated/record.sh
# Traffic stays on 127.0.0.1 or inside the throwaway network namespaces made here
# (vdl-sw, vdl-ns1, vdl-ns2), which are deleted at the end; the OVS daemons are started
# directly under a private run directory and stopped by the pids they wrote.
set -euo pipefail

OUT="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d /tmp/vdpalab-record.XXXXXX)"
PIDS=()
cleanup() {
    set +e
    for pidfile in "$WORK/ovs-vswitchd.pid" "$WORK/ovsdb-server.pid"; do
        [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    mountpoint -q "$WORK/huge" && umount "$WORK/huge"
    for ns in vdl-ns1 vdl-ns2 vdl-sw; do ip netns del "$ns" 2>/dev/null; done
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- ping (iputils, busybox)
ping -c 5 127.0.0.1 > "$OUT/ping-iputils-c5-localhost.txt"
ping -f -c 2000 127.0.0.1 > "$OUT/ping-iputils-flood-c2000-localhost.txt"
busybox ping -c 3 127.0.0.1 > "$OUT/ping-busybox-c3-localhost.txt"

# ---------------------------------------------------------------- iperf3 -J over loopback
iperf3 -s -p 5301 -1 > /dev/null 2>&1 & PIDS+=($!)
sleep 0.5
iperf3 -c 127.0.0.1 -p 5301 -t 1 -J > "$OUT/iperf3-J-tcp-t1-localhost-json.txt"
wait "${PIDS[-1]}" || true
iperf3 -s -p 5302 -1 > /dev/null 2>&1 & PIDS+=($!)
sleep 0.5
iperf3 -c 127.0.0.1 -p 5302 -u -b 100M -t 1 -J > "$OUT/iperf3-J-udp-t1-localhost-json.txt"
wait "${PIDS[-1]}" || true
# nothing listens on 5399: a failed run, as iperf3 reports it
iperf3 -c 127.0.0.1 -p 5399 -t 1 -J > "$OUT/iperf3-J-refused-localhost-json.txt" || true

# ---------------------------------------------------------------- namespaces + veth
ip netns add vdl-sw
ip netns add vdl-ns1
ip netns add vdl-ns2
ip link add vdl-h1 netns vdl-sw type veth peer name vdl-n1 netns vdl-ns1
ip link add vdl-h2 netns vdl-sw type veth peer name vdl-n2 netns vdl-ns2
for ns in vdl-sw vdl-ns1 vdl-ns2; do ip -n "$ns" link set lo up; done
ip -n vdl-sw link set vdl-h1 up
ip -n vdl-sw link set vdl-h2 up
ip -n vdl-ns1 addr add 10.250.0.1/24 dev vdl-n1
ip -n vdl-ns2 addr add 10.250.0.2/24 dev vdl-n2
ip -n vdl-ns1 link set vdl-n1 up
ip -n vdl-ns2 link set vdl-n2 up

ip -n vdl-ns1 link show > "$OUT/ip-link-show-ns.txt"
ip -n vdl-ns1 -d link show > "$OUT/ip-d-link-show-ns.txt"
ip -n vdl-ns1 -j link show > "$OUT/ip-j-link-show-ns-json.txt"
ip -n vdl-ns1 -j -d link show lo > "$OUT/ip-j-d-link-show-lo-json.txt"
ip netns exec vdl-ns1 ethtool -k vdl-n1 > "$OUT/ethtool-k-veth.txt"
ip netns exec vdl-ns1 ethtool -k lo > "$OUT/ethtool-k-lo.txt"
ip netns exec vdl-ns1 ethtool -i vdl-n1 > "$OUT/ethtool-i-veth.txt"

# ---------------------------------------------------------------- OVS (userspace datapath)
export OVS_RUNDIR="$WORK" OVS_LOGDIR="$WORK" OVS_DBDIR="$WORK" OVS_SYSCONFDIR="$WORK"
DB="unix:$WORK/db.sock"
ovsdb-tool create "$WORK/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ip netns exec vdl-sw ovsdb-server "$WORK/conf.db" --remote="punix:$WORK/db.sock" \
    --remote=db:Open_vSwitch,Open_vSwitch,manager_options \
    --pidfile="$WORK/ovsdb-server.pid" --unixctl="$WORK/ovsdb-server.ctl" \
    --log-file="$WORK/ovsdb-server.log" --detach
VSCTL=(ovs-vsctl --db="$DB" --timeout=10)
"${VSCTL[@]}" --no-wait init
ip netns exec vdl-sw ovs-vswitchd "$DB" --pidfile="$WORK/ovs-vswitchd.pid" \
    --unixctl="$WORK/ovs-vswitchd.ctl" --log-file="$WORK/ovs-vswitchd.log" --detach
APPCTL=(ovs-appctl -t "$WORK/ovs-vswitchd.ctl")
"${VSCTL[@]}" set Open_vSwitch . other_config:tc-policy=none other_config:max-idle=30000 \
    other_config:vhost-iommu-support=true other_config:dpdk-socket-mem=1024,1024
"${VSCTL[@]}" add-br br-vdl -- set bridge br-vdl datapath_type=netdev
"${VSCTL[@]}" add-port br-vdl vdl-h1
"${VSCTL[@]}" add-port br-vdl vdl-h2
"${VSCTL[@]}" add-port br-vdl vdl-int -- set Interface vdl-int type=internal
"${VSCTL[@]}" add-port br-vdl vdl-bad -- set Interface vdl-bad type=dpdk \
    options:dpdk-devargs=0000:07:00.0,representor=[0]
sleep 1
ip netns exec vdl-ns1 ping -c 20 -i 0.05 10.250.0.2 > "$OUT/ping-iputils-c20-veth-through-ovs.txt"
ip netns exec vdl-ns1 ping -c 3 -i 0.2 10.250.0.9 > "$OUT/ping-iputils-unreachable-ns.txt" || true

"${VSCTL[@]}" show > "$OUT/ovs-vsctl-show-netdev.txt"
"${VSCTL[@]}" get Open_vSwitch . other_config > "$OUT/ovs-vsctl-get-other-config.txt"
ovs-ofctl -O OpenFlow14 dump-ports br-vdl > "$OUT/ovs-ofctl-of14-dump-ports.txt"
ovs-ofctl dump-ports br-vdl > "$OUT/ovs-ofctl-of10-dump-ports.txt"
ovs-ofctl -O OpenFlow15 dump-ports br-vdl > "$OUT/ovs-ofctl-of15-dump-ports.txt"
# a Manager (ovsdb-server listening on the namespace's loopback) and a Controller nobody answers:
# `show` read through the manager's own TCP listener, so that manager is connected while it prints
"${VSCTL[@]}" set-manager ptcp:16640:127.0.0.1
"${VSCTL[@]}" set-controller br-vdl tcp:127.0.0.1:16653
sleep 2
ip netns exec vdl-sw ovs-vsctl --db=tcp:127.0.0.1:16640 --timeout=10 show > "$OUT/ovs-vsctl-show-manager-controller.txt"
"${VSCTL[@]}" del-controller br-vdl
"${VSCTL[@]}" del-manager
"${APPCTL[@]}" dpctl/dump-flows -m > "$OUT/ovs-appctl-dpctl-dump-flows-m.txt"
"${APPCTL[@]}" dpctl/dump-flows > "$OUT/ovs-appctl-dpctl-dump-flows.txt"
"${APPCTL[@]}" dpctl/dump-flows -m type=offloaded > "$OUT/ovs-appctl-dpctl-dump-flows-m-offloaded-empty.txt"
ovs-vsctl --db="unix:$WORK/nonexistent.sock" --timeout=2 get Open_vSwitch . other_config \
    > /dev/null 2> "$OUT/ovs-vsctl-get-other-config-no-db-stderr.txt" || true
ovs-vswitchd --version | head -1 > "$OUT/ovs-version.txt"

# ---------------------------------------------------------------- host info
grep Huge /proc/meminfo > "$OUT/meminfo-grep-huge.txt"
cat /proc/meminfo > "$OUT/meminfo-full.txt"
mkdir -p "$WORK/huge"
mount -t hugetlbfs -o pagesize=2M nodev "$WORK/huge"
grep hugetlbfs /proc/mounts | sed "s#$WORK/huge#/dev/hugepages-vdl#" > "$OUT/proc-mounts-hugetlbfs.txt"
umount "$WORK/huge"
if command -v lshw > /dev/null; then lshw -businfo -c network > "$OUT/lshw-businfo-network.txt" 2>/dev/null; fi
vdpa mgmtdev show > /dev/null 2> "$OUT/vdpa-mgmtdev-show-no-netlink-stderr.txt" || true

# ---------------------------------------------------------------- kernel logs
# only the lines this recording caused (the boot lines carry the sandbox's own arguments)
dmesg | grep -E 'vdl-|br-vdl|ovs-netdev' > "$OUT/dmesg-ovs-veth.txt"
dmesg -T | grep -E 'vdl-|br-vdl|ovs-netdev' > "$OUT/dmesg-T-ovs-veth.txt"

# journald formats: the seed's /var/log/messages records fed to systemd-journal-remote in
# journal export format, then rendered by this machine's journalctl.
python3 - "$WORK/export.txt" <<'EOF'
import sys, datetime
recs = [
    ("2021-04-08 10:38:21.100000", "kernel", None, "mlx5_core 0000:07:00.2: mlx5_vdpa_set_status:1786:(pid 5077): performing device reset"),
    ("2021-04-08 10:38:21.200000", "kvm", "5088", "1 guest now active"),
    ("2021-04-08 10:38:46.300000", "kernel", None, "mlx5_core 0000:07:00.2: mlx5_vdpa_handle_set_map:473:(pid 5086): memory map update"),
    ("2021-04-08 10:38:51.400000", "ovs-vswitchd", "4998", "ovs|00001|dpif_netdev(revalidator17)|ERR|internal error parsing flow key skb_priority(0),skb_mark(0),ct_state(0),ct_zone(0),ct_mark(0),ct_label(0),recirc_id(0),dp_hash(0),in_port(6),packet_type(ns=0,id=0),eth(src=00:11:22:33:44:00,dst=01:00:5e:00:00:16),eth_type(0x0800),ipv4(src=192.168.30.153,dst=224.0.0.22,proto=2,tos=0xc0,ttl=1,frag=no)"),
    ("2021-04-08 10:41:52.500000", "kernel", None, "mlx5_core 0000:07:01.2: mlx5_vdpa_set_status:1786:(pid 5370): performing device reset"),
    ("2021-04-08 10:42:16.600000", "kernel", None, "mlx5_core 0000:07:01.2: mlx5_vdpa_handle_set_map:473:(pid 5381): memory map update"),
]
with open(sys.argv[1], "w") as f:
    for i, (ts, ident, pid, msg) in enumerate(recs):
        t = datetime.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
        us = int(t.timestamp() * 1_000_000)
        f.write(f"__CURSOR=s=0;i={i + 1}\n__REALTIME_TIMESTAMP={us}\n__MONOTONIC_TIMESTAMP={1000000 + i}\n")
        f.write("_BOOT_ID=6b8a2e4b9f2c4a34a0c1f7d9e2b5c001\n_HOSTNAME=c83g155\n")
        f.write(f"SYSLOG_IDENTIFIER={ident}\n")
        f.write("_TRANSPORT=kernel\nPRIORITY=6\n" if ident == "kernel" else f"_PID={pid}\n_TRANSPORT=syslog\nPRIORITY=3\n")
        f.write(f"MESSAGE={msg}\n\n")
EOF
mkdir -p "$WORK/j"
/lib/systemd/systemd-journal-remote --output="$WORK/j/remote.journal" "$WORK/export.txt" 2>/dev/null
JF=(journalctl --file="$WORK/j/remote.journal" --no-pager --utc)
"${JF[@]}" -o short > "$OUT/journalctl-short-seed-records.txt"
"${JF[@]}" -o short-iso > "$OUT/journalctl-short-iso-seed-records.txt"
"${JF[@]}" -o short-precise > "$OUT/journalctl-short-precise-seed-records.txt"
"${JF[@]}" -o json > "$OUT/journalctl-json-seed-records-json.txt"

echo "recorded into $OUT"
