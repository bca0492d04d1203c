"""Tools for testing IVR flows and the app: a conversation kit (no Asterisk
needed), a fake Asterisk and a BGCRM / BGERP emulator on loopback."""

from stasis_dnd.testing.conversation import Conversation
from stasis_dnd.testing.expectations import ConversationError

__all__ = ["Conversation", "ConversationError"]
