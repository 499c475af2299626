"""The run file: its layout, the crash-safe writer, the one reader, conversions and ROOT export.

Enters: raw datagrams, event rows, channel waveforms, status snapshots and metadata from the
data path. Leaves: HDF5 run files (docs/FILE_FORMAT.md), events read back from .h5, .aqs and
.pcap files, and .aqs, .h5 and .root conversions.
"""
