"""The board link: everything between the board's UDP port and the data path's ring.

Enters: UDP datagrams from one board (data frames, command replies, monitoring frames).
Leaves: ring batches of data frames (:meth:`.receiver.Receiver.get_batch`), parsed command
replies, and the credit requests and commands sent back to the board.
Counts: every datagram dropped or rejected (ring full, malformed by kind, foreign, kernel drops) in
:class:`~agetdaq.readout.link.counters.ReceiverCounters`, credit events in ``CreditCounters``.

A datagram's path, module by module:

1. :mod:`.udp` -- the socket: one per board, connected, large receive buffer read back.
2. :mod:`.capture` -- the capture loop: one thread reads the socket (``recvmmsg`` in the numba
   kernel of :mod:`.mmsg`) straight into the ring and sorts what is not a clean data frame with
   the board type's classifier; :mod:`.counters` holds what it counts.
3. :mod:`.ring` -- the ring: preallocated slots, handed to the data path as views; and
   :mod:`.replies`, the reply queue beside it. :mod:`.receiver` wires 2 and 3 together.
4. :mod:`.credit` -- the credit loop: returns each frame's credit to the board, holds it while the
   ring fills, ignores tags further ahead than the board's window (``out_of_window``); its state
   (:mod:`.credit_state`) is shared with the GIL-free re-grant in :mod:`.credit_kernel`;
   settings in :mod:`.credit_config`.
5. :mod:`.board_link` -- the board commands: one command, one reply; start / pause of the data;
   :mod:`.script_runner` runs scripts, checked in full before anything is sent; every wait
   (reply, script ``sleep``) cut short by the caller's stop request (``BoardInterrupted``, with
   the link's other errors in :mod:`.errors`).
6. :mod:`.pcap_tap` -- the pcap tap: both directions into a capture file, never blocking.

What is particular to a board type (frame check, command set, credit request format, pause, port,
datagram size) is the Board contract, :mod:`.board`; :mod:`.feminos` is the one real board type.
"""
