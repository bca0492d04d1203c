"""Callback requests: the CRM client, the SQLite outbox, intake (a worker
stores a request or sends it directly) and delivery (the background loop that
files stored requests in the CRM).

Imports only `stasis_dnd.core` and the shared top-level helpers.
"""
