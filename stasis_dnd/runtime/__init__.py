"""Threads and lifecycle: the app's start and stop, the per-call registry that
feeds each call's flow and carries out its commands, dispatch to workers,
timers, a call's final commands (hang up, continue) and the sweep of parked
channels.

Every outcome of I/O is turned into an event for `stasis_dnd.core`; nothing
here decides what the caller hears.
"""
