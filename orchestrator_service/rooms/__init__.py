"""The room lifecycle: what webhooks, the agent and the reconciler make happen.

Layers, each using only those before it: :mod:`.core` (state, LiveKit calls with retries),
:mod:`.completion` (finalize, complete, summarize), :mod:`.egress` (recording each track),
:mod:`.events` (webhooks, registration, meetings) and :mod:`.reconciler`, whose
:class:`RoomLifecycle` is the whole.
"""

from orchestrator_service.rooms.core import PermanentLiveKitError, recording_span
from orchestrator_service.rooms.reconciler import RoomLifecycle

__all__ = ["PermanentLiveKitError", "RoomLifecycle", "recording_span"]
