"""The DAQ of one detector line: one subpackage per stage a datagram passes through, in order.

1. :mod:`~agetdaq.readout.link` -- the board link: UDP socket, capture ring, credit loop, board
   commands, pcap tap. Datagrams from the BEC in; ring batches of data frames and replies out.
2. :mod:`~agetdaq.readout.datapath` -- the data path: a chain of stages (decode, build, shed,
   process, record, publish, pedestal, calibration) over batches taken from the ring.
3. :mod:`~agetdaq.readout.store` -- the run file: layout, writer, the one reader (``open_run``),
   conversions (.aqs, .pcap, ROOT).
4. :mod:`~agetdaq.readout.transport` -- the ZeroMQ stream and run control shared with the GUI.
5. :mod:`~agetdaq.readout.analysis` -- what is computed from events for people: the monitor's
   summaries and histograms, the 55Fe calibration. The GUI and the DAQ run the same code.
6. :mod:`~agetdaq.readout.acquisition` -- the acquisition: run states, supervision, settings,
   run log, metrics; it wires 1-5 together for ``agetdaq run`` and ``agetdaq serve``.
7. :mod:`~agetdaq.readout.simulation` -- simulated boards: the BEC emulator and capture replay.
8. :mod:`~agetdaq.readout.cli` -- the ``agetdaq`` command.

:mod:`agetdaq.readout.schema` is the one definition of the record and the stream messages.
"""
