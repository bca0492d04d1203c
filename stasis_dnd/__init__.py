"""stasis-dnd: "all operators are busy, press 1 for a callback" as an Asterisk
ARI (Stasis) application that files callback requests in BGCRM / BGERP.

- `stasis_dnd.core`: the call flow, a pure state machine (no I/O).
- `stasis_dnd.shell`: everything that talks to Asterisk, the CRM and the disk.
- `stasis_dnd.testing`: tools to test an IVR flow like a conversation.
"""

__version__ = "0.1.0"
