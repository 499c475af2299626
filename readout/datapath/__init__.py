"""The data path of one board: a pipeline of stages over batches taken from the link's ring.

Enters: batches of up to ``daq.batch`` raw data datagrams, as views of the link's ring
(:class:`~agetdaq.readout.datapath.path.DataPath`, one thread). Leaves: the run file's raw record,
event rows and kept channel waveforms; monitor-stream messages; the pedestal table of a pedestal
run (``outputs["pedestals"]``); the 55Fe gain trend of a calibration run.

Stages, in the default order (``[pipeline] stages``; contract: stage.py, order and names:
registry.py, one module each in stages/); a stage gets a
:class:`~agetdaq.readout.datapath.batch.Batch`, adds to it and passes it on:

1. ``sequence``    ring views -> link counters (sequence of the datagrams decode took: missing,
                   late, duplicate; the ones it refused: rejected)
2. ``record_raw``  ring views -> the run file's raw record (every datagram as received)
3. ``decode``      ring views -> ``decoded`` flat tables; each frame judged as a whole first
                   (card, sequence window, grammar: a bad one dropped whole); the ring slots go
                   back right after
4. ``build``       ``decoded`` -> ``built`` (event id, build flags; duplicates dropped)
5. ``shed``        ``built`` -> chunks of ``chunk_events``, ``shed`` while the ring fills
6. ``process``     ``built`` -> ``dense`` waveforms, ``processed`` features / hits / class / trigger
7. ``pedcheck``    ``built`` -> do the pedestals in use fit the data? (a run notice if not)
8. ``pedestal``    ``dense`` -> pedestal table (pedestal runs; nothing is shed in them)
9. ``rows``        ``built`` (+ ``processed``) -> ``rows`` of the event table
10. ``record``     ``rows`` + kept channels -> the run file (store mode ``hits|events|all|none``;
                   exactly ``max_events`` of a run with an event limit, the rest counted)
11. ``calibration`` ``rows`` -> the 55Fe gain trend (calibration runs)
12. ``publish``    ``rows`` (+ hits, sampled waveforms) -> the monitor feed

Counted where something is dropped, per stage (``DataPath.stage_counters()``): datagrams outside
a run (the path), lost / late / duplicate / rejected datagrams (sequence), decoder errors by kind
including the frames dropped whole (decode),
missing / duplicate / damaged events and board restarts (build), events shed, i.e. recorded
NOT_PROCESSED (shed), channel rows the scatter could not place (process), events past the run's
limit (record), writer errors: the first ends the run's recording, the run then stops
(record_raw, record), calibration-fit errors
(calibration). ``DataPath.counters`` sums them into the totals the acquisition watches. What needs
the operator (pedestals that do not fit the data: pedcheck) goes into ``run.notices``
(``DataPath.notices``): the acquisition logs it and makes it its status message.
"""
