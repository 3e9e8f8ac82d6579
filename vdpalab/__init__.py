"""vdpa-lab: validation and benchmarking of vDPA datapaths (library part, no pytest)."""

__version__ = "0.1.0"
