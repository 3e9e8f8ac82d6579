"""Re-record this folder's outputs with a real virsh and libvirt's built-in test driver (test:///default).

Not a test: run by hand, e.g. with virsh 9.0.0 unpacked from Debian bookworm's libvirt-clients, libvirt0,
libyajl2 and libssh-4 packages (``apt-get download``, ``dpkg -x``; nothing installed):

    LD_LIBRARY_PATH=ROOT/usr/lib/x86_64-linux-gnu python selftest/data/recorded/12_virsh_test_driver/record.py \
        ROOT/usr/bin/virsh

The test driver keeps its domains only for one connection, so each scenario is one virsh session whose commands
are separated by ``echo`` markers; the outputs between markers are stored as they came.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from vdpalab.config import load_lab  # noqa: E402
from vdpalab.guests.libvirt_domain import DomainFiles, add_vdpa_interface, suite_domain_xml  # noqa: E402


def session(virsh: str, commands: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Run ``name: command`` pairs in one virsh session; return name -> (stdout part, stderr of the session)."""
    script = "; ".join(f"echo @@{name}@@; {cmd}" for name, cmd in commands)
    proc = subprocess.run([virsh, "-c", "test:///default", script], capture_output=True, text=True, check=False)
    parts: dict[str, tuple[str, str]] = {}
    chunks = proc.stdout.split("@@")
    for i in range(1, len(chunks) - 1, 2):
        parts[chunks[i]] = (chunks[i + 1].lstrip("\n"), proc.stderr)
    return parts


def main(virsh: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="virsh-record-"))
    original_input = HERE / "c77g153-virt-manager-input-xml.txt"
    first = session(
        virsh, [("define", f"define {original_input}"), ("dumpxml", "dumpxml --inactive --security-info c77g153")]
    )
    original = first["dumpxml"][0].rstrip("\n") + "\n"
    (HERE / "virsh-dumpxml-inactive-c77g153-xml.txt").write_text(original)
    edited = work / "c77g153.xml"
    edited.write_text(add_vdpa_interface(original, "/dev/vhost-vdpa-0", "00:11:22:33:44:00"))
    restore = work / "c77g153-original.xml"
    restore.write_text(original)
    run = session(
        virsh,
        [
            ("define-original", f"define {original_input}"),
            ("domstate-shut-off", "domstate c77g153"),
            ("define-edited", f"define {edited}"),
            ("dumpxml-edited", "dumpxml --inactive --security-info c77g153"),
            ("start", "start c77g153"),
            ("domstate-running", "domstate c77g153"),
            ("dumpxml-live", "dumpxml c77g153"),
            ("destroy", "destroy c77g153"),
            ("define-restore", f"define {restore}"),
            ("dumpxml-restored", "dumpxml --inactive --security-info c77g153"),
            ("undefine", "undefine c77g153"),
        ],
    )
    names = {
        "define-edited": "virsh-define-c77g153.txt",
        "domstate-shut-off": "virsh-domstate-shut-off.txt",
        "dumpxml-edited": "virsh-dumpxml-inactive-c77g153-with-vdpa-xml.txt",
        "start": "virsh-start-c77g153.txt",
        "domstate-running": "virsh-domstate-running.txt",
        "dumpxml-live": "virsh-dumpxml-live-c77g153-with-vdpa-xml.txt",
        "destroy": "virsh-destroy-c77g153.txt",
        "dumpxml-restored": "virsh-dumpxml-inactive-c77g153-restored-xml.txt",
        "undefine": "virsh-undefine-c77g153.txt",
    }
    for key, filename in names.items():
        (HERE / filename).write_text(run[key][0].rstrip("\n") + "\n")
    missing = subprocess.run(
        [virsh, "-c", "test:///default", "domstate", "c77g153"], capture_output=True, text=True, check=False
    )
    (HERE / "virsh-domstate-missing-stderr.txt").write_text(f"rc={missing.returncode}\n{missing.stderr}")
    # the suite's own domain for the vDPA lab's libvirt guest, as libvirt parses and formats it
    lab = load_lab(HERE.parents[3] / "selftest/data/labs/libvirt-both-ways.toml")
    guest = lab.guest[1]
    files = DomainFiles(xml=str(work / "c77g159.xml"), console_log="/run/vdpalab/lab/c77g159.console.log",
                        kernel="/var/cache/vdpalab/guest/vmlinuz", initrd="/var/cache/vdpalab/guest/initrd.img")
    Path(files.xml).write_text(suite_domain_xml(guest, files))
    (HERE / "suite-domain-c77g159-input-xml.txt").write_text(Path(files.xml).read_text())
    made = session(virsh, [("define", f"define {files.xml}"), ("dumpxml", "dumpxml --inactive c77g159")])
    (HERE / "virsh-dumpxml-inactive-c77g159-suite-defined-xml.txt").write_text(
        made["dumpxml"][0].rstrip("\n") + "\n" if made["dumpxml"][0].strip() else made["define"][1]
    )


if __name__ == "__main__":
    main(sys.argv[1])
