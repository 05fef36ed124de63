"""The fleet simulator: seeded hospitals, scanners and AI devices feeding the real pipeline.

A scenario (TOML) describes sites, acquisition devices, AI devices with their registered
claims, and injected changes; :mod:`simulator.heterogeneity` gives each site its own true
performance inside the registered confidence intervals and its own prevalence when the
scenario asks for a realistic fleet. :mod:`simulator.fleet` turns it into cases in simulated
event time, :mod:`simulator.headers` writes each case a DICOM header full of PHI, and
:mod:`simulator.collector_path` sends them through the collectors' own de-identification,
pseudonymisation, outbox and Kafka delivery. :mod:`simulator.ground_truth` records what
was injected, where and when, so detections can be scored afterwards;
:mod:`simulator.monitor_replay` runs the records through the stream monitors without Kafka.
"""
