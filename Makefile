# vdpa-lab. Two commands do everything on a fresh Debian machine (as root):
#   make datapath   bring up the default (emulated) lab, run `pytest -m datapath --lab lab.toml`, write reports/
#   make test       the self-tests, then the lab suites on the emulated labs (netns, qemu, vdpa, the seed's nested guests)
SHELL := /bin/bash
PYTEST := scripts/pytest-expecting-tests
LAB ?= lab.toml

.PHONY: setup datapath test selftest lab-tests qemu-tests vdpa-tests seed-tests seed-smoke bench-suite lint typecheck clean-state

setup:
	@scripts/setup.sh

datapath: setup
	$(PYTEST) -m datapath --lab $(LAB)

# `nested` self-tests boot the seed's guests inside the vDPA lab VM (nested TCG, ~10 min each): make seed-tests.
# -n auto: the pure self-tests on every core; those that change or watch machine-wide state run one at a time on
# one worker (xdist_group "machine", selftest/conftest.py)
SELFTEST_RUN := selftest -m "not nested" -n auto

selftest: setup
	$(PYTEST) $(SELFTEST_RUN)

lab-tests: setup
	$(PYTEST) -m "bringup or datapath or benchmark" --lab lab.toml

qemu-tests: setup
	$(PYTEST) -m "bringup or datapath" --lab labs/emulated-qemu.toml

seed-tests: setup
	$(PYTEST) -m "bringup or datapath" --lab labs/emulated-vdpa-seed-libvirt.toml
	$(PYTEST) selftest -m nested

# the seed's QEMU and libvirt guests on vhost_vdpa, nested in the vDPA lab VM, CI-sized (6-13 min here): bring-up and
# vDPA evidence, ping and iperf3 (TCP and UDP, forward) between the two guests; seed-tests adds the reverse
# directions, the counter checks and the existing-domain self-test. The last step of `make test`: the longest, and
# the one whose time varies most (the nested boot alone from 3.0 to 5.6 min)
SEED_RUN := -m "bringup or datapath" --lab labs/emulated-vdpa-seed-libvirt.toml tests_bringup \
	tests_datapath/test_ping.py tests_datapath/test_vdpa_evidence.py tests_datapath/test_iperf3.py -k "not reverse"

# bring-up, datapath and the CI-sized NDR/PDR search of labs/emulated-vdpa.toml (about 13 s of the run)
VDPA_RUN := -m "bringup or datapath or benchmark" --lab labs/emulated-vdpa.toml tests_bringup tests_datapath benchmarks/test_ndr.py

vdpa-tests: setup
	$(PYTEST) $(VDPA_RUN)

test: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	$(PYTEST) $(SELFTEST_RUN)
	$(PYTEST) benchmarks/test_python_speed.py
	$(PYTEST) -m "bringup or datapath or benchmark" --lab lab.toml
	@if [ -f labs/emulated-qemu.toml ]; then $(PYTEST) -m "bringup or datapath" --lab labs/emulated-qemu.toml; fi
	$(PYTEST) $(VDPA_RUN)
	$(PYTEST) $(SEED_RUN)

seed-smoke: setup
	$(PYTEST) $(SEED_RUN)

bench-suite: setup
	.venv/bin/python -m benchmarks.suite
	$(PYTEST) benchmarks/test_python_speed.py

lint: setup
	.venv/bin/ruff check .

# also the second step of `make test` (settings in pyproject.toml [tool.mypy])
typecheck: setup
	.venv/bin/mypy
