"""Everything that speaks ARI: the REST client over a keep-alive HTTP pool, the
event WebSocket, and the translation of ARI's JSON into core events.

Imports only `stasis_dnd.core` and the shared top-level helpers.
"""
