"""Which profile serves a call: the one the dialplan names (`profile=NAME`
among the Stasis() arguments), else the one that lists the call's queue,
else the default profile ([ivr] and [crm] themselves).

Pure: the registry asks when a call starts, with what the dialplan passed;
delivery asks with the name stored beside a request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from stasis_dnd.settings import DEFAULT_PROFILE, Profile, Settings


@dataclass(frozen=True, slots=True)
class Choice:
    """The profile for a call; `unknown` is a name the dialplan gave that no
    profile has (the default serves the call then), else ""."""

    profile: Profile
    unknown: str = ""


class Profiles:
    """The profiles of one configuration, looked up by name and by queue."""

    def __init__(self, settings: Settings) -> None:
        self.default = settings.default_profile
        self._named = {profile.name: profile for profile in settings.profiles}
        # Asterisk compares queue names without regard to case.
        self._by_queue = {
            queue.casefold(): profile for profile in settings.profiles for queue in profile.queues
        }

    def __iter__(self) -> Iterator[Profile]:
        yield self.default
        yield from self._named.values()

    def named(self, name: str) -> Profile | None:
        """The profile of this name ("" and "default": the default), or None."""
        key = name.strip().lower()
        if key in ("", DEFAULT_PROFILE):
            return self.default
        return self._named.get(key)

    def choose(self, *, named: str = "", queue: str = "") -> Choice:
        """The profile for a call whose dialplan passed `profile=named` (or
        nothing: "") and `queue=queue`."""
        if named.strip():
            found = self.named(named)
            if found is None:
                return Choice(self.default, named.strip())
            return Choice(found)
        return Choice(self._by_queue.get(queue.strip().casefold(), self.default))
