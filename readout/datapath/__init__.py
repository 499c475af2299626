"""The data path of one board: stages over batches taken from the link's ring.

Enters: ring batches of raw data datagrams. Leaves: raw records and event rows for the run file,
stream messages for the monitor, pedestal tables, calibration points.
Counts: decoder errors, builder flags (gaps, duplicates, damaged), events processed and shed,
writer errors, each where it happens.
"""
