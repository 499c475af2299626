"""The board link: everything between the BEC's UDP port and the data path's ring.

Enters: UDP datagrams from one board (data frames, command replies, monitoring frames).
Leaves: ring batches of data frames (:meth:`Receiver.get_batch`), command replies, and the
credit requests and commands sent back to the board.
Counts: every datagram dropped or rejected (ring full, malformed, foreign, kernel drops) in
:class:`~agetdaq.readout.link.counters.ReceiverCounters`, credit events in ``CreditCounters``.
"""
