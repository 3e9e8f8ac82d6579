"""lab.toml -> frozen, validated models (the way DPDK's DTS loads its config).

A lab file describes one host, its NIC ports, the seed's layers and the two
guests. ``load_lab`` turns every problem into one ``LabConfigError`` line
naming the file, the key path and the problem; nothing here prints a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, overload

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from vdpalab.errors import LabConfigError

_PCI_RE = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_IFNAME_RE = re.compile(r"^[^\s/:]{1,15}$")
_VERSION_RE = re.compile(r"^\d+(\.\d+){0,3}$")
_SIZE_RE = re.compile(r"^(\d+)\s*([KMG])i?B?$", re.IGNORECASE)


def _pci(value: str) -> str:
    if not _PCI_RE.match(value):
        raise ValueError(f"{value!r} is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:07:00.0)")
    return value.lower()


def _mac(value: str) -> str:
    if not _MAC_RE.match(value):
        raise ValueError(f"{value!r} is not a MAC address (expected xx:xx:xx:xx:xx:xx)")
    return value.lower()


def _ipv4_interface(value: str) -> str:
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 interface (expected ADDRESS/PREFIX, e.g. 192.168.30.153/24)")
    if "/" not in value:
        raise ValueError(f"{value!r} is not an IPv4 interface (the /PREFIX is missing)")
    return str(iface)


def _ifname(value: str) -> str:
    if not _IFNAME_RE.match(value):
        raise ValueError(f"{value!r} is not a network interface name (1-15 characters, no '/', ':' or spaces)")
    return value


def _version(value: str) -> str:
    if not _VERSION_RE.match(value):
        raise ValueError(f"{value!r} is not a version (expected numbers with dots, e.g. 5.11)")
    return value


PciAddress = Annotated[str, AfterValidator(_pci)]
MacAddress = Annotated[str, AfterValidator(_mac)]
IPv4Iface = Annotated[str, AfterValidator(_ipv4_interface)]
IfName = Annotated[str, AfterValidator(_ifname)]
Version = Annotated[str, AfterValidator(_version)]
PositiveFloat = Annotated[float, Field(gt=0)]


class Model(BaseModel):
    """Frozen, strict about unknown keys: a typo in lab.toml is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LabInfo(Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,23}$")]
    kind: Literal["hardware", "emulated"]
    description: str = ""


class SSHSettings(Model):
    """How to reach a machine. ``netns`` opens the TCP socket inside a network namespace (emulated labs)."""

    address: str
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: str = "root"
    key_file: str | None = None
    password_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    proxy_command: str | None = None
    netns: str | None = None
    host_key_policy: Literal["strict", "accept-new", "ignore"] = "strict"
    known_hosts: str | None = None
    connect_timeout_s: PositiveFloat = 10.0
    command_timeout_s: PositiveFloat = 120.0
    quick_timeout_s: PositiveFloat = 10.0  # a quick read (ss, kill -0, cat): a nested TCG guest needs more
    keepalive_s: Annotated[float, Field(ge=0)] = 15.0
    # a guest whose sshd is reachable only from the lab host (a VM's port forward on its loopback): the TCP
    # connection is a channel of the lab host's SSH connection (``ssh -J`` without a second process)
    via_lab_host: bool = False


class HostSettings(SSHSettings):
    """The lab host (the seed's c83g155). ``address = "local"`` runs commands without SSH."""

    name: str = "host"
    sudo: bool = False
    allow_management_pf: bool = False


class KernelSettings(Model):
    min_version: Version = "5.7"
    required_cmdline: list[str] = Field(default_factory=list)


class HugepagesSettings(Model):
    size: Literal["2M", "1G"] = "1G"
    count: Annotated[int, Field(ge=0)] = 0
    mount: str = "/dev/hugepages"
    reserve_at_runtime: bool = False
    private_mount: bool = False

    @property
    def size_kb(self) -> int:
        return 2048 if self.size == "2M" else 1048576


class PFSettings(Model):
    """One physical function (a NIC port), with its VFs and their representors."""

    name: IfName
    pci: PciAddress | None = None  # None only in emulated labs, where the "PF" is a veth
    num_vfs: Annotated[int, Field(ge=0, le=256)] = 0
    vf_macs: list[MacAddress] = Field(default_factory=list)
    vf_pcis: list[PciAddress] = Field(default_factory=list)
    vf_netdevs: list[IfName] = Field(default_factory=list)
    representors: list[IfName] = Field(default_factory=list)
    switchdev: bool = False


_MGMTDEV_RE = re.compile(r"^(pci/[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]|[a-z][a-z0-9_]{0,31})$")


def _mgmtdev(value: str) -> str:
    if not _MGMTDEV_RE.match(value):
        raise ValueError(
            f"{value!r} is not a vdpa management device (expected pci/DDDD:BB:DD.F or a name such as vduse, "
            "as `vdpa mgmtdev show` prints it)"
        )
    return value.lower()


MgmtDev = Annotated[str, AfterValidator(_mgmtdev)]


class VdpaDevice(Model):
    """One vDPA device: ``vdpa dev add name NAME mgmtdev MGMTDEV [mac MAC]``.

    ``mgmtdev`` is the management device as ``vdpa mgmtdev show`` names it: ``pci/0000:07:00.2`` for a VF
    (mlx5_vdpa; the default when only ``vf_pci`` is given) or ``vduse`` for a VDUSE device whose datapath is a
    userspace process. ``vf_pci`` additionally pins the sysfs parent the device must sit on.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
    vf_pci: PciAddress | None = None
    mgmtdev: MgmtDev | None = None
    mac: MacAddress | None = None
    chardev: str | None = None  # /dev/vhost-vdpa-N, derived when absent

    @property
    def management_device(self) -> str:
        """The mgmtdev the device must be on (``pci/<vf_pci>`` unless the lab names one)."""
        if self.mgmtdev:
            return self.mgmtdev
        return f"pci/{self.vf_pci}" if self.vf_pci else ""


class VdpaSettings(Model):
    """The vdpa layer (seed 7-3).

    ``backend`` says what carries each device's datapath: ``nic`` (a VF of the NIC: mlx5_vdpa makes the device
    from hardware, the seed) or ``vduse`` (a userspace dataplane: OVS-DPDK's ``dpdkvhostuserclient`` port with
    ``vhost-server-path = "/dev/vduse/NAME"`` creates the VDUSE device NAME, which ``vdpa dev add ... mgmtdev
    vduse`` then puts on the vDPA bus). With ``vduse`` the OVS port must exist first, so the vdpa layer runs
    after the ovs layer (``layer_order``) and its ``down`` deletes the devices before the OVS ports go.
    ``modules`` are the management device's kernel modules the host must have loaded (``mlx5_vdpa``,
    ``vduse``); the layer checks them and loads the bus driver itself. ``bus_driver`` is written to each
    device's ``driver_override`` so that it binds to that driver whichever vdpa bus driver loaded first.
    """

    enabled: bool = True
    bus_driver: Literal["vhost_vdpa", "virtio_vdpa"] = "vhost_vdpa"
    create: Literal["auto", "vdpa-dev-add"] = "auto"
    backend: Literal["nic", "vduse"] = "nic"
    modules: list[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]] = Field(default_factory=list)
    devices: list[VdpaDevice] = Field(default_factory=list)


class OvsSettings(Model):
    """Open vSwitch settings: the seed's other_config keys plus anything extra."""

    dpdk: bool = False
    hw_offload: bool = False
    tc_policy: Literal["none", "skip_sw", "skip_hw"] | None = None
    socket_mem: Annotated[str, Field(pattern=r"^\d+(,\d+)*$")] | None = None
    vhost_iommu_support: bool | None = None
    dpdk_devargs: list[str] = Field(default_factory=list)
    dpdk_extra_args: list[str] = Field(default_factory=list)
    dpdk_allow_flag: Literal["auto", "-a", "-w"] = "auto"
    other_config: dict[str, str] = Field(default_factory=dict)
    restart_command: str | None = None
    vswitchd_binary: str | None = None


class PortSettings(Model):
    name: IfName
    type: str | None = None
    options: dict[str, str] = Field(default_factory=dict)


class BridgeSettings(Model):
    name: IfName
    datapath_type: Literal["netdev", "system"] = "netdev"
    uplink: PortSettings
    representors: list[PortSettings] = Field(default_factory=list)

    @property
    def ports(self) -> list[PortSettings]:
        return [self.uplink, *self.representors]


class LibvirtSettings(Model):
    """How a libvirt guest's domain comes to be: the seed's own way or one the suite defines (seed 7 "B. libvirtd").

    ``domain = "existing"``: a domain that already exists on the lab host (the seed made it with virt-manager); for
    the run the suite adds ``<interface type='vdpa'><source dev='/dev/vhost-vdpa-N'/></interface>`` to it as
    ``virsh edit`` would, and afterwards defines its original XML again (kept in the journal).
    ``domain = "define"``: the suite writes a whole domain from the guest's fields, defines it and undefines it after.
    ``name`` is the domain's name (default: the guest's); ``uri`` is passed as ``virsh -c URI`` when set.
    """

    domain: Literal["existing", "define"] = "define"
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")] | None = None
    uri: Annotated[str, Field(pattern=r"^[a-z0-9+]+://\S*$")] | None = None


class GuestBase(Model):
    """What every guest has, whatever runs it (the seed's c77g153 / c77g159): a data NIC and an SSH way in.

    A guest kind is a subclass with ``kind: Literal["..."]`` and its own fields, added to ``GuestSettings``
    below; ``own_problems`` holds the checks that need more than one of its fields. Its driver (how to start,
    reach and stop it) lives in ``vdpalab.guests`` (see ``vdpalab.guests.base.GuestDriver``).
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")]
    representor: IfName | None = None
    interface: IfName = "eth0"
    mac: MacAddress
    ip: IPv4Iface
    mtu: Annotated[int, Field(ge=68, le=9216)] = 1500
    boot_timeout_s: PositiveFloat = 180.0
    ssh: SSHSettings

    @property
    def address(self) -> str:
        return self.ip.split("/")[0]

    @property
    def data_device(self) -> str | None:
        """The vDPA device (``/dev/vhost-vdpa-N`` or a [[vdpa.devices]] name) the guest's data NIC uses, if any."""
        return None

    def own_problems(self) -> list[tuple[str, str]]:
        """Checks across this guest's own fields: (key below ``guest[N]``, problem)."""
        return []


class VmGuest(GuestBase):
    """A virtual machine on the lab host (QEMU run by the suite, or by libvirt) with a vDPA or vhost-user NIC."""

    image: str | None = None
    memory_mib: Annotated[int, Field(ge=64)] = 8192
    vcpus: Annotated[int, Field(ge=1)] = 1
    vdpa_device: str | None = None
    vhost_user_socket: str | None = None
    qemu_binary: str = "qemu-system-x86_64"
    accel: Literal["kvm", "tcg"] = "kvm"
    cpu: str = "host"
    device_options: list[str] = Field(
        default_factory=lambda: ["page-per-vq=on", "iommu_platform=on", "disable-legacy=on"]
    )
    extra_qemu_args: list[str] = Field(default_factory=list)
    # direct kernel boot instead of a disk image (the emulated-qemu lab's guest image: -kernel/-initrd/-append)
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    # a management NIC: QEMU user networking (restrict=on) forwarding 127.0.0.1:PORT on the lab host to the guest's
    # port 22 (the seed reached its guests over the serial console); the guest's ssh settings then name that port
    mgmt_ssh_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    mgmt_mac: MacAddress | None = None
    # guest RAM: None = QEMU's own RAM for vhost-vdpa (the seed), a hugetlbfs file for vhost-user; "memfd" = a
    # shared memfd (vhost-user without hugepages), "file" = a file in hugepages.mount, "none" = QEMU's own RAM
    memory_backend: Literal["memfd", "file", "none"] | None = None
    # the data NIC's device offers no MAC (a VDUSE device has no VIRTIO_NET_F_MAC, so the guest's driver makes up
    # a random one): the guests layer sets the lab's MAC inside the guest, as it does for namespace guests
    set_mac: bool = False
    # where the guests layer keeps console log, pidfile and QMP socket on the lab host (default /run/vdpalab/LAB)
    runtime_dir: str | None = None

    @property
    def data_device(self) -> str | None:
        return self.vdpa_device

    def own_problems(self) -> list[tuple[str, str]]:
        return [
            (key, f"{key} is used only with kernel (direct kernel boot)")
            for key in ("initrd", "append")
            if getattr(self, key) is not None and self.kernel is None
        ]


class QemuGuest(VmGuest):
    """A QEMU process the guests layer starts itself (the seed's 7-7 command line, in the background)."""

    kind: Literal["qemu"]

    def own_problems(self) -> list[tuple[str, str]]:
        problems = []
        if not (self.vdpa_device or self.vhost_user_socket):
            problems.append(("vdpa_device", "a qemu guest needs vdpa_device or vhost_user_socket"))
        return problems + super().own_problems()


class LibvirtGuest(VmGuest):
    """A libvirt domain with the seed's ``<interface type='vdpa'>``: an existing one edited for the run, or one the
    suite defines from the fields above (``libvirt.domain``)."""

    kind: Literal["libvirt"]
    # the seed's existing domain, or one the suite defines (the default)
    libvirt: LibvirtSettings | None = None

    def own_problems(self) -> list[tuple[str, str]]:
        own = [(key.removeprefix("."), problem) for key, problem in libvirt_problems(self, "")]
        return super().own_problems() + own


class NetnsGuest(GuestBase):
    """A network namespace with its own sshd, made by an emulated lab's infrastructure (nothing to start)."""

    kind: Literal["netns"]


class VdpaNetnsGuest(GuestBase):
    """A vDPA device's kernel netdev (``virtio_vdpa``) in its own network namespace on the lab host.

    The guests layer moves the netdev of ``vdpa_device`` into the namespace ``netns`` (default: the guest's name)
    as ``interface`` and starts the guest's own sshd on the lab host, listening on ``sshd_port`` and running
    every session inside that namespace; ``ssh`` says how the suite reaches that port (the emulated-vdpa lab:
    QEMU's port forward of the lab VM). Nothing crosses the OVS bridges but the data interface.
    """

    kind: Literal["vdpa-netns"]
    vdpa_device: str
    netns: IfName | None = None
    sshd_port: Annotated[int, Field(ge=1, le=65535)]

    @property
    def namespace(self) -> str:
        return self.netns or self.name


#: every guest kind; pydantic picks the model by ``kind`` and each validates its own fields
GuestSettings = Annotated[QemuGuest | LibvirtGuest | NetnsGuest | VdpaNetnsGuest, Field(discriminator="kind")]


class PingProfile(Model):
    count: Annotated[int, Field(ge=1)] = 20000
    deadline_s: PositiveFloat = 60.0
    flood: bool = True
    interval_s: PositiveFloat | None = None
    payload_sizes: list[Annotated[int, Field(ge=0, le=65507)]] = Field(default_factory=lambda: [56])
    symmetry_count: Annotated[int, Field(ge=1)] = 2000


class Iperf3Profile(Model):
    duration_s: PositiveFloat = 5.0
    omit_s: Annotated[float, Field(ge=0)] = 1.0
    streams: list[Annotated[int, Field(ge=1, le=128)]] = Field(default_factory=lambda: [1, 4])
    reverse: bool = True
    udp_rate: Annotated[str, Field(pattern=r"^\d+(\.\d+)?[KMG]?$")] = "100M"
    udp_length: Annotated[int, Field(ge=64, le=65507)] = 1400
    symmetry_udp_rate: Annotated[str, Field(pattern=r"^\d+(\.\d+)?[KMG]?$")] = "20M"
    symmetry_duration_s: PositiveFloat = 2.0
    timeout_s: PositiveFloat = 60.0
    binary: str = "iperf3"


class BenchmarkProfile(Model):
    """The benchmarks: repeated trials after one unmeasured warm-up trial (as CSIT and LNST do)."""

    trials: Annotated[int, Field(ge=1, le=100)] = 3
    warmup: bool = True
    duration_s: PositiveFloat = 5.0
    protocols: list[Literal["tcp", "udp"]] = ["tcp", "udp"]
    latency_count: Annotated[int, Field(ge=10)] = 2000
    latency_interval_s: PositiveFloat = 0.002


class TcpreplayGenerator(Model):
    """tcpreplay on the sending guest: exact packet counts at a paced rate (any Linux guest, over SSH)."""

    kind: Literal["tcpreplay"] = "tcpreplay"
    binary: str = "tcpreplay"
    cpu: Annotated[int, Field(ge=0)] | None = None  # pin it with taskset: less spread on a small machine
    rate_tolerance: Annotated[float, Field(gt=0, le=0.5)] = 0.02  # slower than duration x (1 + this): not held


# One variant per generator (a TRex or testpmd generator for hardware labs is added here and in
# vdpalab.traffic.ndr.GENERATORS); the ``kind`` key picks it.
NdrGenerator = Annotated[TcpreplayGenerator, Field(discriminator="kind")]



def _frame_size(value: Any) -> Any:
    """A frame size in bytes with the FCS, as CSIT counts (64 = 60 bytes on the wire plus FCS), or "imix"."""
    if value == "imix" or (isinstance(value, int) and not isinstance(value, bool) and 64 <= value <= 9018):
        return value
    raise ValueError(f"{value!r} is not a frame size (64-9018 bytes including the FCS, or \"imix\")")


FrameSize = Annotated[int | str, BeforeValidator(_frame_size)]

#: [traffic.ndr] defaults by what the lab file declares (``[lab] kind``): a small, noisy emulated lab gets a
#: coarse, short search; hardware gets FD.io CSIT's settings (width 0.005, duration sum 21 s).
NDR_DEFAULTS: dict[str, dict[str, Any]] = {
    "emulated": {"relative_width": 0.02, "duration_sum_s": 3.0, "time_budget_s": 120.0, "min_load_pps": 1000.0},
    "hardware": {"relative_width": 0.005, "duration_sum_s": 21.0, "time_budget_s": 1200.0, "min_load_pps": 9001.0},
}


class NdrProfile(Model):
    """NDR/PDR searches with MLRsearch (FD.io CSIT's search); defaults filled from ``NDR_DEFAULTS`` by lab kind."""

    goals: Annotated[list[Literal["ndr", "pdr"]], Field(min_length=1)] = ["ndr", "pdr"]
    pdr_loss_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.005
    exceed_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.5
    relative_width: Annotated[float, Field(gt=0, lt=1)]
    initial_trial_duration_s: PositiveFloat = 1.0
    trial_duration_s: PositiveFloat = 1.0
    duration_sum_s: PositiveFloat
    warmup_s: Annotated[float, Field(ge=0)] = 1.0  # one discarded trial at max load (OVS installs its flows)
    min_load_pps: PositiveFloat
    max_load_pps: PositiveFloat | None = None  # a cap; the generator's calibrated rate caps it anyway
    calibration_s: PositiveFloat = 1.0
    calibration_fraction: Annotated[float, Field(gt=0, le=1)] = 0.9  # max load = this x the calibrated rate
    time_budget_s: PositiveFloat
    settle_s: Annotated[float, Field(ge=0, le=5)] = 0.1  # wait after a trial before reading the counters
    frame_sizes: Annotated[list[FrameSize], Field(min_length=1)] = [64, 1400]
    directions: Annotated[list[Literal["forward", "reverse"]], Field(min_length=1)] = ["forward", "reverse"]
    generator: NdrGenerator = Field(default_factory=TcpreplayGenerator)

    @model_validator(mode="after")
    def _consistent(self) -> NdrProfile:
        for key in ("goals", "frame_sizes", "directions"):
            values = getattr(self, key)
            if len(set(values)) != len(values):
                raise ValueError(f"{key} lists a value twice: {values}")
        if self.trial_duration_s < self.initial_trial_duration_s:
            raise ValueError(
                f"trial_duration_s ({self.trial_duration_s:g}) is shorter than initial_trial_duration_s "
                f"({self.initial_trial_duration_s:g})"
            )
        if self.duration_sum_s < self.trial_duration_s:
            raise ValueError(
                f"duration_sum_s ({self.duration_sum_s:g}) is shorter than trial_duration_s ({self.trial_duration_s:g})"
            )
        if self.max_load_pps is not None and self.max_load_pps <= self.min_load_pps:
            raise ValueError(
                f"max_load_pps ({self.max_load_pps:g}) is not above min_load_pps ({self.min_load_pps:g})"
            )
        return self


def _ndr_defaults(data: Any) -> Any:
    """Fill [traffic.ndr] from ``NDR_DEFAULTS`` for the declared lab kind; what the file says wins."""
    if not isinstance(data, dict):
        return data
    lab_info = data.get("lab")
    kind = lab_info.get("kind") if isinstance(lab_info, dict) else None
    traffic = data.get("traffic", {})
    if not isinstance(traffic, dict):
        return data
    if kind not in NDR_DEFAULTS:
        kind = "hardware"  # the bad or missing kind is reported on its own; no echo of it under traffic.ndr
    ndr = traffic.get("ndr", {})
    if not isinstance(ndr, dict):
        return data
    return {**data, "traffic": {**traffic, "ndr": {**NDR_DEFAULTS[kind], **ndr}}}


class TrafficSettings(Model):
    ping: PingProfile = Field(default_factory=PingProfile)
    iperf3: Iperf3Profile = Field(default_factory=Iperf3Profile)
    benchmark: BenchmarkProfile = Field(default_factory=BenchmarkProfile)
    ndr: NdrProfile = Field(default_factory=lambda: NdrProfile(**NDR_DEFAULTS["hardware"]))


class Thresholds(Model):
    ping_loss_pct_max: Annotated[float, Field(ge=0, le=100)] = 0.0
    ping_rtt_avg_ms_max: PositiveFloat = 1.0
    ping_rtt_max_ms_max: PositiveFloat = 50.0
    tcp_throughput_gbps_min: Annotated[float, Field(ge=0)] = 0.1
    udp_loss_pct_max: Annotated[float, Field(ge=0, le=100)] = 1.0


class ChecksSettings(Model):
    """Checks a lab turns off because its guests cannot run them; otherwise a missing tool is an ERROR.

    ``iperf3``: the iperf3 tests and the UDP counter symmetry need iperf3 on both guests.
    ``crafted_frames``: the crafted-frame tests need python3 on both guests (raw sockets).
    """

    iperf3: bool = True
    crafted_frames: bool = True


class ReportSettings(Model):
    dir: str = "reports"
    history_url: str = "sqlite:///reports/history.sqlite"
    # How far a metric may move between two runs and still be "within noise" when there are no
    # trials to measure the spread from (percent of the baseline; compare, summary and report).
    default_noise_pct: Annotated[float, Field(ge=0, le=100)] = 5.0
    noise_pct: dict[str, Annotated[float, Field(ge=0, le=100)]] = Field(default_factory=dict)
    # An absolute band in the metric's own unit, for metrics whose baseline is often 0 (loss_pct: a percent
    # of 0 is no band at all); the larger of it and the relative band applies.
    noise_abs: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)


class LabVmSettings(Model):
    """The emulated-vdpa lab's host: a QEMU (TCG) VM booted from Debian's 6.12 kernel (``[emulated.vm]``).

    Its image is built from Debian packages of ``suite`` (``vdpalab.emulated.vm_image``) and cached by package
    list in ``emulated.image_cache`` (default ``/var/cache/vdpalab``). ``extra_packages`` widens the list, e.g.
    ``["qemu-system-x86", "libvirt-daemon-system"]`` for nested guests on vhost_vdpa; a new list builds a new
    image beside the old one. The VM's sshd is reached as the lab's ``[host]`` through QEMU's port forward of
    ``host.port`` (and of each vdpa-netns guest's ``sshd_port``) on 127.0.0.1 inside ``emulated.host_netns``.
    """

    memory_mib: Annotated[int, Field(ge=1024)] = 3072
    vcpus: Annotated[int, Field(ge=1, le=16)] = 2
    accel: str = "tcg,thread=multi"
    cpu: str = "max"  # DPDK 24.11 needs SSE4.2
    suite: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,30}$")] = "trixie"
    mirror: str = "http://deb.debian.org/debian"
    extra_packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]] = Field(default_factory=list)
    boot_timeout_s: PositiveFloat = 180.0
    qemu_binary: str = "qemu-system-x86_64"


class EmulatedSettings(Model):
    """How the emulated lab builds the parts a real host already has (namespaces, cables, daemons, a VM)."""

    flavour: Literal["netns", "qemu", "vdpa-vm"] = "netns"
    prefix: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,11}$")] = "vdpalab"
    state_dir: str = ".state"
    host_netns: str | None = None
    image_cache: str | None = None  # qemu, vdpa-vm flavours: where images are built and cached (e.g. .state/images)
    vm: LabVmSettings | None = None  # vdpa-vm flavour: the lab host VM
    # netns flavour: the MTU of every emulated port and cable (hardware labs keep their own MTUs), so the
    # datapath carries the 8972-byte pings of a guest whose MTU is 9000
    datapath_mtu: Annotated[int, Field(ge=1280, le=65535)] = 9000


class Lab(Model):
    """A whole lab file. Cross-field checks run after the fields are valid."""

    lab: LabInfo
    host: HostSettings
    kernel: KernelSettings = Field(default_factory=KernelSettings)
    hugepages: HugepagesSettings = Field(default_factory=HugepagesSettings)
    pf: list[PFSettings] = Field(default_factory=list)
    vdpa: VdpaSettings = Field(default_factory=VdpaSettings)
    ovs: OvsSettings = Field(default_factory=OvsSettings)
    bridge: list[BridgeSettings] = Field(default_factory=list)
    guest: list[GuestSettings] = Field(default_factory=list)
    traffic: TrafficSettings = Field(default_factory=TrafficSettings)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    checks: ChecksSettings = Field(default_factory=ChecksSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    emulated: EmulatedSettings | None = None
    source: str = Field(default="", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        return _ndr_defaults(data)

    @model_validator(mode="after")
    def _cross_checks(self) -> Lab:
        problems = cross_field_problems(self)
        if problems:
            raise CrossFieldProblem(problems)
        return self

    # --- convenience lookups used by layers and tests ---
    def guest_by_name(self, name: str) -> GuestBase | None:
        return next((g for g in self.guest if g.name == name), None)

    def vdpa_device_name(self, ref: str) -> str:
        """The [[vdpa.devices]] name a guest's ``vdpa_device`` means (it may give the chardev), else ``ref``."""
        dev = _vdpa_device_of(self, ref)
        return dev.name if dev is not None else ref

    @property
    def state_dir(self) -> Path:
        """Where the lab keeps journals, keys and session files: ``[emulated] state_dir``, else ``.state/NAME``."""
        if self.emulated is not None:
            resolved = self.resolve(self.emulated.state_dir)
            assert resolved is not None
            return resolved.absolute()
        return (Path(".state") / self.lab.name).absolute()

    @property
    def representor_names(self) -> set[str]:
        return {rep for pf in self.pf for rep in pf.representors}

    @property
    def boot_waits_s(self) -> float:
        """The longest bring-up may wait for things to boot: the lab VM, then each VM guest in turn (the guests
        layer waits for them one after the other, each with its own ``boot_timeout_s``)."""
        vm = self.emulated.vm if self.emulated is not None else None
        return (vm.boot_timeout_s if vm is not None else 0.0) + sum(
            g.boot_timeout_s for g in self.guest if isinstance(g, VmGuest)
        )

    @property
    def nested_guests(self) -> bool:
        """Whether VM guests run inside an emulated lab VM (nested TCG: minutes per boot, seconds per SSH login)."""
        return self.emulated is not None and self.emulated.vm is not None and any(
            isinstance(g, VmGuest) for g in self.guest
        )

    @overload
    def resolve(self, path: str) -> Path: ...
    @overload
    def resolve(self, path: str | None) -> Path | None: ...

    def resolve(self, path: str | None) -> Path | None:
        """Paths in a lab file are relative to the file's directory."""
        if path is None:
            return None
        p = Path(path).expanduser()
        if p.is_absolute() or not self.source:
            return Path(os.path.normpath(p))
        return Path(os.path.normpath(Path(self.source).parent / p))  # no "..": paths are compared with /proc/mounts


class CrossFieldProblem(Exception):
    """Raised from the model validator with every (key, problem); not a ValueError so pydantic passes
    it through unchanged."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {problem}" for key, problem in problems))


def cross_field_problems(lab: Lab) -> list[tuple[str, str]]:
    """Checks that need more than one field; each has its own message. Every problem is reported."""
    problems: list[tuple[str, str]] = []
    if lab.host.via_lab_host:
        problems.append(("host.via_lab_host", "only a guest can be reached through the lab host"))
    for g, guest in enumerate(lab.guest):
        if guest.ssh.via_lab_host and lab.host.address == "local":
            problems.append((f"guest[{g}].ssh.via_lab_host", "the lab host is local: reach the guest directly"))
    pf_names = [pf.name for pf in lab.pf]
    known_ports = set(pf_names) | lab.representor_names
    for i, name in enumerate(pf_names):
        if name in pf_names[:i]:
            problems.append((f"pf[{i}].name", f"PF {name!r} is declared twice"))
    for i, pf in enumerate(lab.pf):
        if len(pf.vf_macs) > pf.num_vfs:
            problems.append((f"pf[{i}].vf_macs", f"{len(pf.vf_macs)} VF MACs given but num_vfs is {pf.num_vfs}"))
        if len(pf.vf_pcis) > pf.num_vfs:
            problems.append(
                (f"pf[{i}].vf_pcis", f"{len(pf.vf_pcis)} VF PCI addresses given but num_vfs is {pf.num_vfs}")
            )
        if len(pf.representors) > max(pf.num_vfs, 0) and lab.lab.kind == "hardware":
            problems.append(
                (f"pf[{i}].representors", f"{len(pf.representors)} representors given but num_vfs is {pf.num_vfs}")
            )
    if lab.lab.kind == "hardware":
        for i, pf in enumerate(lab.pf):
            if pf.pci is None:
                problems.append((f"pf[{i}].pci", "a hardware PF needs its PCI address (see `ethtool -i`)"))
    for b, bridge in enumerate(lab.bridge):
        if bridge.uplink.name not in known_ports:
            problems.append(
                (f"bridge[{b}].uplink.name", f"port {bridge.uplink.name!r} is not a declared PF or representor")
            )
        for r, port in enumerate(bridge.representors):
            if port.name not in known_ports:
                problems.append(
                    (f"bridge[{b}].representors[{r}].name", f"port {port.name!r} is not a declared PF or representor")
                )
    bridge_names = [br.name for br in lab.bridge]
    for b, name in enumerate(bridge_names):
        if name in bridge_names[:b]:
            problems.append((f"bridge[{b}].name", f"bridge {name!r} is declared twice"))
    seen_dev: set[str] = set()
    for d, dev in enumerate(lab.vdpa.devices):
        if dev.name in seen_dev:
            problems.append((f"vdpa.devices[{d}].name", f"vdpa device {dev.name!r} is declared twice"))
        seen_dev.add(dev.name)
    problems += vdpa_device_problems(lab)
    vf_pcis = [dev.vf_pci for dev in lab.vdpa.devices]
    for d, pci in enumerate(vf_pcis):
        if pci is not None and pci in vf_pcis[:d]:
            problems.append((f"vdpa.devices[{d}].vf_pci", f"VF {pci} backs two vdpa devices"))
    guest_devices: dict[str, int] = {}
    guest_ips: dict[str, int] = {}
    guest_names: dict[str, int] = {}
    for g, guest in enumerate(lab.guest):
        if guest.name in guest_names:
            problems.append(
                (f"guest[{g}].name", f"guest name {guest.name!r} is also used by guest[{guest_names[guest.name]}]")
            )
        guest_names.setdefault(guest.name, g)
        device = guest.data_device
        if device:
            if device in guest_devices:
                owner = guest_devices[device]
                problems.append(
                    (f"guest[{g}].vdpa_device", f"vdpa device {device!r} is already used by guest[{owner}]")
                )
            guest_devices.setdefault(device, g)
        if guest.address in guest_ips:
            problems.append((f"guest[{g}].ip", f"IP {guest.address} is also used by guest[{guest_ips[guest.address]}]"))
        guest_ips.setdefault(guest.address, g)
        problems += [(f"guest[{g}].{key}", problem) for key, problem in guest.own_problems()]
        if guest.representor and guest.representor not in lab.representor_names:
            problems.append((f"guest[{g}].representor", f"{guest.representor!r} is not a declared representor"))
    if lab.lab.kind == "emulated" and lab.emulated is None:
        problems.append(("emulated", "an emulated lab needs an [emulated] table"))
    if lab.lab.kind == "hardware" and lab.emulated is not None:
        problems.append(("emulated", "a hardware lab must not have an [emulated] table"))
    if lab.hugepages.count and lab.ovs.socket_mem:
        need_mb = sum(int(x) for x in lab.ovs.socket_mem.split(","))
        have_mb = lab.hugepages.count * lab.hugepages.size_kb // 1024
        if need_mb > have_mb:
            problems.append(
                ("ovs.socket_mem", f"dpdk-socket-mem asks for {need_mb} MiB but hugepages give only {have_mb} MiB")
            )
    for check in CROSS_REFERENCE_CHECKS:
        problems += check(lab)
    return problems

# ------------------------------------------------------------------- cross-references between sections
# Each check is a small function lab -> [(key, problem)], listed in CROSS_REFERENCE_CHECKS.
def _lab_vf_pcis(lab: Lab) -> dict[str, tuple[int, int]]:
    """VF PCI address -> (pf index, VF index) over every PF of the lab."""
    return {pci: (p, v) for p, pf in enumerate(lab.pf) for v, pci in enumerate(pf.vf_pcis)}


def check_vdpa_vf_is_a_lab_vf(lab: Lab) -> list[tuple[str, str]]:
    """A vdpa device sits on one of the VFs the lab declares (pf[].vf_pcis)."""
    vfs = _lab_vf_pcis(lab)
    if not vfs:
        return []  # the lab lists no VF addresses (they are made at runtime): nothing to compare against
    return [(f"vdpa.devices[{d}].vf_pci", f"VF {dev.vf_pci} of vdpa device {dev.name!r} is not one of the lab's "
             f"VFs ({', '.join(sorted(vfs))})")
            for d, dev in enumerate(lab.vdpa.devices) if dev.vf_pci not in vfs]


_DEVARGS_PCI = re.compile(r"^([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])(?:,|$)")


def _devargs_problem(lab: Lab, devargs: str) -> str | None:
    m = _DEVARGS_PCI.match(devargs.strip())
    if not m:
        return None  # a vdev (net_af_packet0,iface=...) or a name: no PCI address to check
    pfs = {pf.pci for pf in lab.pf if pf.pci}
    if m.group(1).lower() in pfs:
        return None
    return f"dpdk-devargs PCI address {m.group(1)} is not a declared PF ({', '.join(sorted(pfs)) or 'none declared'})"


def check_dpdk_devargs_name_a_pf(lab: Lab) -> list[tuple[str, str]]:
    """Every PCI address in dpdk-devargs (ovs.dpdk_devargs and bridge port options) is a declared PF's."""
    problems = []
    for i, devargs in enumerate(lab.ovs.dpdk_devargs):
        if why := _devargs_problem(lab, devargs):
            problems.append((f"ovs.dpdk_devargs[{i}]", why))
    for b, bridge in enumerate(lab.bridge):
        for key, port in _bridge_port_keys(b, bridge):
            if "dpdk-devargs" in port.options and (why := _devargs_problem(lab, port.options["dpdk-devargs"])):
                problems.append((f"{key}.options.dpdk-devargs", why))
    return problems


def _bridge_port_keys(b: int, bridge: BridgeSettings) -> list[tuple[str, PortSettings]]:
    return [(f"bridge[{b}].uplink", bridge.uplink),
            *((f"bridge[{b}].representors[{r}]", port) for r, port in enumerate(bridge.representors))]


def check_port_in_one_bridge(lab: Lab) -> list[tuple[str, str]]:
    """A port belongs to one bridge only (OVS would move it silently; the seed never does)."""
    owner: dict[str, str] = {}
    problems = []
    for b, bridge in enumerate(lab.bridge):
        for key, port in _bridge_port_keys(b, bridge):
            if port.name in owner and owner[port.name] != bridge.name:
                problems.append((f"{key}.name", f"port {port.name!r} is already in bridge {owner[port.name]!r}"))
            elif port.name in owner:
                problems.append((f"{key}.name", f"port {port.name!r} appears twice in bridge {bridge.name!r}"))
            owner.setdefault(port.name, bridge.name)
    return problems


def check_traffic_guests_share_a_subnet(lab: Lab) -> list[tuple[str, str]]:
    """The two guests that exchange traffic (the first two) are in one IPv4 subnet, as in the seed."""
    if len(lab.guest) < 2:
        return []
    a, b = (ipaddress.IPv4Interface(g.ip) for g in lab.guest[:2])
    if a.network == b.network:
        return []
    return [("guest[1].ip", f"{b} is not in guest[0]'s subnet {a.network} (the two traffic guests must share one)")]


def _vdpa_device_of(lab: Lab, ref: str) -> VdpaDevice | None:
    """A guest's vdpa_device names a [[vdpa.devices]] entry by name or by its chardev (/dev/vhost-vdpa-N)."""
    for dev in lab.vdpa.devices:
        if ref in (dev.name, dev.chardev, f"/dev/vhost-{dev.name}"):
            return dev
    return None


def check_guest_mac_is_its_vfs(lab: Lab) -> list[tuple[str, str]]:
    """A guest's MAC is the one its VF was given (the seed sets the VF MAC so the guest sees it),
    unless the lab sets the vdpa device's own MAC ([[vdpa.devices]] mac), which the guest then sees."""
    vfs = _lab_vf_pcis(lab)
    problems = []
    for g, guest in enumerate(lab.guest):
        dev = _vdpa_device_of(lab, guest.data_device) if guest.data_device else None
        if dev is None:
            continue
        if dev.mac is not None:
            expected, source = dev.mac, f"vdpa device {dev.name!r} mac"
        elif dev.vf_pci in vfs:
            p, v = vfs[dev.vf_pci]
            macs = lab.pf[p].vf_macs
            if v >= len(macs):
                continue
            expected, source = macs[v], f"pf[{p}].vf_macs[{v}] (VF {dev.vf_pci})"
        else:
            continue
        if guest.mac != expected:
            problems.append((f"guest[{g}].mac", f"{guest.mac} differs from {expected}, the MAC of {source}; set the "
                                                f"vdpa device's mac if the guest is meant to use another"))
    return problems


def check_referenced_names_exist(lab: Lab) -> list[tuple[str, str]]:
    """Every name one section gives to another exists: a guest's vdpa device, PF VF netdevs vs representors."""
    problems = []
    if lab.vdpa.devices:
        for g, guest in enumerate(lab.guest):
            if guest.data_device and _vdpa_device_of(lab, guest.data_device) is None:
                known = ", ".join(d.chardev or d.name for d in lab.vdpa.devices)
                problems.append((f"guest[{g}].vdpa_device", f"{guest.data_device!r} is no declared vdpa device "
                                                            f"({known})"))
    pf_names = {pf.name for pf in lab.pf}
    for i, pf in enumerate(lab.pf):
        for r, rep in enumerate(pf.representors):
            if rep in pf_names:
                problems.append((f"pf[{i}].representors[{r}]", f"{rep!r} is the name of a PF, not a representor"))
    return problems


def check_guest_macs_unique(lab: Lab) -> list[tuple[str, str]]:
    """Two guests with one MAC on one L2 segment cannot both be reached."""
    seen: dict[str, int] = {}
    problems = []
    for g, guest in enumerate(lab.guest):
        if guest.mac in seen:
            problems.append((f"guest[{g}].mac", f"MAC {guest.mac} is also used by guest[{seen[guest.mac]}]"))
        seen.setdefault(guest.mac, g)
    return problems


CROSS_REFERENCE_CHECKS = (
    check_vdpa_vf_is_a_lab_vf,
    check_dpdk_devargs_name_a_pf,
    check_port_in_one_bridge,
    check_traffic_guests_share_a_subnet,
    check_guest_mac_is_its_vfs,
    check_referenced_names_exist,
    check_guest_macs_unique,
)


#: The seed's ``-device virtio-net-pci`` options in libvirt's ``<interface>``: option -> (element, attribute, value)
LIBVIRT_DEVICE_OPTIONS: dict[str, tuple[str, str, str]] = {
    "page-per-vq=on": ("driver", "page_per_vq", "on"),
    "page-per-vq=off": ("driver", "page_per_vq", "off"),
    "iommu_platform=on": ("driver", "iommu", "on"),
    "iommu_platform=off": ("driver", "iommu", "off"),
    "disable-legacy=on": ("model", "type", "virtio-non-transitional"),
    "disable-legacy=off": ("model", "type", "virtio-transitional"),
}
#: Fields that shape a domain the suite defines; an existing domain's own XML decides them instead.
LIBVIRT_DEFINE_ONLY = (
    "image", "memory_mib", "vcpus", "accel", "cpu", "device_options", "extra_qemu_args",
    "kernel", "initrd", "append", "mgmt_ssh_port", "mgmt_mac", "memory_backend", "runtime_dir",
)


def defines_libvirt_domain(guest: GuestBase) -> bool:
    """A libvirt guest whose domain the suite writes (``libvirt.domain = "define"``, the default)."""
    return isinstance(guest, LibvirtGuest) and (guest.libvirt is None or guest.libvirt.domain == "define")


def libvirt_problems(guest: LibvirtGuest, where: str) -> list[tuple[str, str]]:
    """What a libvirt guest's fields cannot mean: each one a (key, problem) line."""
    problems: list[tuple[str, str]] = []
    if guest.vdpa_device is None:
        problems.append((f"{where}.vdpa_device", "a libvirt guest needs vdpa_device (its <interface type='vdpa'>)"))
    if guest.vhost_user_socket is not None:
        problems.append((f"{where}.vhost_user_socket", "libvirt guests here use vdpa_device, not vhost-user"))
    if not defines_libvirt_domain(guest):
        for key in LIBVIRT_DEFINE_ONLY:
            if key in guest.model_fields_set:
                problems.append(
                    (f"{where}.{key}", 'the existing domain\'s own XML decides this (libvirt.domain = "existing")')
                )
        return problems
    for option in guest.device_options:
        if option not in LIBVIRT_DEVICE_OPTIONS:
            known = ", ".join(sorted(LIBVIRT_DEVICE_OPTIONS))
            problems.append((f"{where}.device_options", f"{option!r} has no libvirt <interface> form (known: {known})"))
    if guest.mgmt_ssh_port is None and guest.mgmt_mac is not None:
        problems.append((f"{where}.mgmt_mac", "mgmt_mac needs mgmt_ssh_port (the management NIC)"))
    return problems


GUEST_MODELS: dict[str, type[GuestBase]] = {
    get_args(model.model_fields["kind"].annotation)[0]: model
    for model in (QemuGuest, LibvirtGuest, NetnsGuest, VdpaNetnsGuest)
}


def _without_tag(loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str | None]:
    """pydantic puts the union's tag in the location (``guest.0.qemu.kernel``); the lab file has no such key."""
    for i in range(2, len(loc)):
        if loc[i - 2] == "guest" and isinstance(loc[i - 1], int) and loc[i] in GUEST_MODELS:
            return loc[:i] + loc[i + 1 :], str(loc[i])
    return loc, None


VDUSE_DIR = "/dev/vduse"


def vdpa_device_problems(lab: Lab) -> list[tuple[str, str]]:
    """Each device names its management device; a VDUSE device needs the OVS port that creates it."""
    problems: list[tuple[str, str]] = []
    server_paths = {
        port.options.get("vhost-server-path") for bridge in lab.bridge for port in bridge.ports if port.options
    }
    for d, dev in enumerate(lab.vdpa.devices):
        key = f"vdpa.devices[{d}]"
        if not dev.management_device:
            problems.append((f"{key}.mgmtdev", "give mgmtdev (e.g. vduse, pci/0000:07:00.2) or vf_pci"))
        elif dev.vf_pci and dev.mgmtdev and dev.mgmtdev.startswith("pci/") and dev.mgmtdev != f"pci/{dev.vf_pci}":
            problems.append((f"{key}.mgmtdev", f"{dev.mgmtdev} is not the VF {dev.vf_pci} given in vf_pci"))
        if lab.vdpa.backend == "vduse":
            if dev.management_device != "vduse":
                problems.append((f"{key}.mgmtdev", "with vdpa.backend = \"vduse\" every device's mgmtdev is vduse"))
            if f"{VDUSE_DIR}/{dev.name}" not in server_paths:
                problems.append((
                    f"{key}.name",
                    f"no OVS port has vhost-server-path = \"{VDUSE_DIR}/{dev.name}\" (with vdpa.backend = \"vduse\" "
                    "a dpdkvhostuserclient port creates the VDUSE device)",
                ))
    if lab.emulated is not None and (lab.emulated.flavour == "vdpa-vm") != (lab.emulated.vm is not None):
        problems.append(("emulated.vm", "[emulated.vm] describes the lab VM: give it exactly with flavour vdpa-vm"))
    return problems


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("function-after"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _format_pydantic_error(err: dict[str, Any]) -> tuple[str, str]:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "constrained-"))))
    loc, tag = _without_tag(loc)
    key = _format_loc(loc)
    kind = err["type"]
    if kind == "union_tag_invalid":
        expected = ", ".join(repr(k) for k in GUEST_MODELS)
        return f"{key}.kind", f"{err.get('ctx', {}).get('tag')!r} is not allowed: expected one of {expected}"
    if kind == "union_tag_not_found":
        return f"{key}.kind", "required key is missing (" + ", ".join(repr(k) for k in GUEST_MODELS) + ")"
    if kind == "extra_forbidden":
        if tag is not None:
            name = str(loc[-1])
            others = [k for k, model in GUEST_MODELS.items() if name in model.model_fields]
            return key, f"not a key of {tag} guests" + (f" (it is for {' and '.join(others)} guests)" if others else "")
        return key, "unknown key (not part of the lab schema; check the spelling)"
    if kind == "missing":
        return key, "required key is missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind in ("literal_error", "enum"):
        return key, f"{err.get('input')!r} is not allowed: {msg[0].lower()}{msg[1:]}"
    if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], dict | list):
        return key, f"{msg[0].lower()}{msg[1:]} (got {err['input']!r})"
    return key, msg


def parse_lab(data: dict[str, Any], source: str = "<lab>", display: str | None = None) -> Lab:
    """Validate an already-parsed TOML document; errors name ``display`` (the path as the user gave it)."""
    shown = display or source
    try:
        return Lab.model_validate({**data, "source": source})
    except CrossFieldProblem as found:
        (key, problem), *more = found.problems
        raise LabConfigError(shown, key, problem, more)
    except ValidationError as exc:
        (key, problem), *more = [_format_pydantic_error(dict(err)) for err in exc.errors()]
        raise LabConfigError(shown, key, problem, more)


def load_lab(path: str | Path) -> Lab:
    """Read and validate a lab file; every failure is one LabConfigError line."""
    shown = str(path)
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise LabConfigError(shown, "", "file not found")
    except OSError as exc:
        raise LabConfigError(shown, "", f"cannot read: {exc.strerror}")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise LabConfigError(shown, "", "not UTF-8 text")
    except tomllib.TOMLDecodeError as exc:
        raise LabConfigError(shown, "", f"not valid TOML: {exc}")
    placeholder = data.get("placeholder")
    if placeholder:
        raise LabConfigError(shown, "placeholder", str(placeholder))
    if "source" in data:
        raise LabConfigError(shown, "source", "unknown key (not part of the lab schema; check the spelling)")
    return parse_lab(data, source=str(p.resolve()), display=shown)
