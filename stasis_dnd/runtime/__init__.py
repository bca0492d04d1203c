"""The I/O shell: ARI over HTTP and WebSocket, the CRM, the outbox, dispatch.

Every outcome of I/O is turned into an event for `stasis_dnd.core`; the shell
never decides what the caller hears.
"""
