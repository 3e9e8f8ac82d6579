"""``kind = "libvirt"``: the seed's section 7 "B. libvirtd", either way a domain gets its vDPA interface.

An existing domain edited for the run (``libvirt.domain = "existing"``, the seed's way) or one the suite defines
from the guest's fields (``"define"``, the default); :class:`vdpalab.guests.libvirt_domain.LibvirtDomain` does the
``virsh`` work and keeps what ``stop`` needs in the layer's journal. This driver is its face to the guests layer.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from vdpalab.config import defines_libvirt_domain
from vdpalab.guests.base import GuestNeeds, GuestRun
from vdpalab.guests.libvirt_domain import LIBVIRT_LOG_DIR, DomainFiles, DomainState, LibvirtDomain, suite_domain_xml
from vdpalab.guests.vm import VmDriver, console_markers

if TYPE_CHECKING:
    from vdpalab.config import LibvirtGuest
    from vdpalab.layers.base import PlannedCommand


class LibvirtDriver(VmDriver):
    kind: ClassVar[str] = "libvirt"
    runtime_files: ClassVar[str] = "guest runtime files: console logs, domain XML"
    guest: LibvirtGuest

    def needs(self) -> GuestNeeds:
        return replace(super().needs(), libvirt=True)

    def files(self) -> DomainFiles:
        """The suite's files for the domain: its XML, its console log, a direct-boot kernel (absolute paths)."""
        guest = self.guest
        return DomainFiles(
            xml=self.path("xml"),
            console_log=self.path("console.log"),
            kernel=str(self.lab_path(guest.kernel)) if guest.kernel else None,
            initrd=str(self.lab_path(guest.initrd)) if guest.initrd else None,
        )

    def domain_xml(self) -> str:
        """The domain the suite defines around the seed's ``<interface type='vdpa'>`` (libvirt.domain = "define")."""
        return suite_domain_xml(self.guest, self.files())

    def domain(self) -> LibvirtDomain:
        return LibvirtDomain(self.ctx, self.guest, self.files())

    def probe(self) -> GuestRun:
        domain = self.domain().probe()
        return GuestRun(domain.running, defined=domain.defined, domain=domain)

    def fresh(self) -> GuestRun:
        """Nothing started: an existing domain is there, shut off and without the vDPA interface."""
        existing = not defines_libvirt_domain(self.guest)
        return GuestRun(False, defined=existing, domain=DomainState(defined=existing))

    def start_plan(self, run: GuestRun) -> list[PlannedCommand]:
        assert run.domain is not None
        return self.domain().plan(run.domain)  # raises when the domain must not be touched

    def start(self, run: GuestRun) -> bool:
        assert run.domain is not None
        if not run.running:
            self.started_at = time.monotonic()
        return self.domain().up(run.domain)  # the same commands start_plan listed, with the XML put first

    def watches_boot(self) -> bool:
        return self.started_at is not None

    def boot_problem(self) -> str | None:
        domain = self.domain()
        if not domain.running():
            return f"libvirt domain {domain.name} is no longer running"
        return console_markers(self.ctx, self.console_log())

    def console_log(self) -> str:
        return self.domain().console_log()

    def started_here(self) -> bool:
        return self.domain().started_here()

    def stop_plan(self) -> list[PlannedCommand]:
        return self.domain().down_plan()

    def stop(self) -> None:
        self.domain().down()

    def datapath_evidence(self, run: GuestRun) -> tuple[list[str], list[str]]:
        return self.domain().evidence()

    def log_files(self) -> list[tuple[str, str]]:
        return [("libvirt log", f"{LIBVIRT_LOG_DIR}/{self.domain().name}.log")]
