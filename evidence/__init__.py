"""The evidence store: device registry, change control, alert lifecycle and audit trail.

Post-market evidence a regulator accepts lives here: which versions are registered with
which claims, which changes were made, what each alert was and how it was resolved, and an
append-only, hash-chained audit trail of every write. The store needs SQLAlchemy (the
worker extra), so this package imports nothing eagerly: import ``evidence.store``
for the database, and the pure modules (``audit``, ``lifecycle``, ``unregistered_change``)
wherever SQLAlchemy is not installed.
"""
