"""The launcher: what composes the sides and starts them, at the top of the layers.

The ``postmarket`` command (:mod:`launcher.cli`, which mounts each side's own command group),
the demo (:mod:`launcher.demo`, its standard test database gate and its summary), a worker
process for the demo, the benchmarks and the tests (:mod:`launcher.local_worker`), and the
local stack that starts Kafka, Prometheus and PostgreSQL on this machine
(:mod:`launcher.stack`). It may import every layer; none imports it back.
"""
