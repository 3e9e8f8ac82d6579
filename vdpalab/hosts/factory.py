"""Turn lab.toml host and guest settings into connected ``Host`` objects.

``HostPool`` opens each host on first use and closes them all at the end, so a
guest that does not exist yet (it is booted by the guests layer) is not dialled
before it is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from functools import partial

from vdpalab.config import GuestBase, Lab, SSHSettings
from vdpalab.hosts.base import Host
from vdpalab.hosts.local import LocalHost
from vdpalab.hosts.ssh import SSHHost


def _path(lab: Lab, value: str | None) -> str | None:
    resolved = lab.resolve(value)
    return str(resolved) if resolved is not None else None


def ssh_host(lab: Lab, name: str, settings: SSHSettings, *, sudo: bool = False) -> SSHHost:
    """An SSHHost for one machine of the lab (paths in the lab file are relative to it); ``via_lab_host`` gives it
    its own connection to the lab host to tunnel through (closed with it)."""
    via = ssh_host(lab, lab.host.name, lab.host) if settings.via_lab_host else None
    host = SSHHost(
        name,
        settings.address,
        port=settings.port,
        user=settings.user,
        key_file=_path(lab, settings.key_file),
        password_env=settings.password_env,
        proxy_command=settings.proxy_command,
        netns=settings.netns,
        connect_timeout=settings.connect_timeout_s,
        command_timeout=settings.command_timeout_s,
        keepalive=settings.keepalive_s,
        host_key_policy=settings.host_key_policy,
        known_hosts=_path(lab, settings.known_hosts),
        sudo=sudo,
        via=via,
    )
    host.quick_timeout = settings.quick_timeout_s
    return host


def open_host(lab: Lab) -> Host:
    """The lab host (the seed's c83g155): SSH, or LocalHost when address is "local"."""
    settings = lab.host
    if settings.address == "local":
        local = LocalHost(settings.name, command_timeout=settings.command_timeout_s, sudo=settings.sudo)
        local.quick_timeout = settings.quick_timeout_s
        return local
    return ssh_host(lab, settings.name, settings, sudo=settings.sudo)


def open_guest(lab: Lab, guest: GuestBase) -> Host:
    """A guest, always over SSH (a vDPA guest has no other way in), at the address its driver gives."""
    from vdpalab.guests import driver_for

    return ssh_host(lab, guest.name, driver_for(guest).address())


class HostPool(Mapping[str, Host]):
    """Lazily opened hosts of one lab: ``"host"`` plus one entry per guest name."""

    def __init__(self, lab: Lab, openers: Mapping[str, Callable[[], Host]] | None = None) -> None:
        self.lab = lab
        self._openers: dict[str, Callable[[], Host]] = dict(openers or {})
        self._openers.setdefault("host", lambda: open_host(lab))
        for guest in lab.guest:
            self._openers.setdefault(guest.name, partial(open_guest, lab, guest))
        self._open: dict[str, Host] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> Host:
        with self._lock:
            if key not in self._open:
                if key not in self._openers:
                    raise KeyError(key)
                self._open[key] = self._openers[key]()
            return self._open[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._openers)

    def __len__(self) -> int:
        return len(self._openers)

    def opened(self) -> dict[str, Host]:
        with self._lock:
            return dict(self._open)

    def reset(self, key: str) -> None:
        """Forget one connection (e.g. after a guest was restarted)."""
        with self._lock:
            host = self._open.pop(key, None)
        if host is not None:
            host.close()

    def close(self) -> None:
        with self._lock:
            hosts, self._open = list(self._open.values()), {}
        for host in hosts:
            host.close()
