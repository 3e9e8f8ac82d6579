"""The measure stage: traffic between the lab's guests and the counters that prove where it went.

``ping`` (flood or paced), ``iperf`` (a one-off iperf3 server on a free port, a bounded
client), ``counters`` (OVS port-counter symmetry), ``frames`` (scapy-built frames sent and
sniffed raw on the guests), ``noise`` (naming background frames), ``jobs`` (background
processes stopped by pid) and ``sandbox`` (two namespaces and a veth for the self-tests).
No pytest here: the tests in ``tests_datapath/`` call these and judge.
"""
