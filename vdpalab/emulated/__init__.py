"""Emulated labs: the parts of a real lab host that the seed's procedure finds already there.

``netns_lab`` builds the seed's topology from network namespaces, veth "cables", a private
Open vSwitch and private sshd daemons; ``control`` is what the CLI and the session fixture
call (infrastructure first, then the bring-up layers over SSH); ``snapshot`` proves the
machine is left as it was found.
"""
