"""stasis-dnd: "all operators are busy, press 1 for a callback" as an Asterisk
ARI (Stasis) application that files callback requests in BGCRM / BGERP.

Layers, each importing only those below it (tests/test_layers.py):

- `stasis_dnd.cli`: the `stasis-dnd` command and its subcommands.
- `stasis_dnd.runtime`: threads and lifecycle: the app, the per-call registry,
  dispatch, timers, a call's final commands.
- `stasis_dnd.ari` (speaks ARI) and `stasis_dnd.callbacks` (files callback
  requests in the CRM, through the outbox); neither imports the other.
- `stasis_dnd.core`: the call flow, a pure state machine (no I/O).
- Shared by all: `config`, `settings`, `sounds`, `logs`, `metrics`, `tls`,
  `backoff`, `guard`.

`stasis_dnd.testing` (the conversation kit, fake Asterisk, CRM emulator, the
simulated demo) sits beside them and is imported only by tests, benchmarks and
the `demo` subcommand.
"""

__version__ = "0.1.0"
