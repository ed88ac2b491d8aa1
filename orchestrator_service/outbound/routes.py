"""The delivery log of outgoing webhooks, for admins: ``GET /v1/webhooks/deliveries``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from orchestrator_service.deps import PrincipalDep, StateDep
from orchestrator_service.openapi import error_responses
from orchestrator_service.outbound.delivery import LOG_SIZE, DeliveryRecord, DeliveryStatus

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class DeliveriesPage(BaseModel):
    """The delivery log: pending deliveries and the latest finished ones, newest first.

    Attributes:
        enabled: Whether any target is configured (``ROOMSCRIBE_WEBHOOK_URLS``).
        targets: The targets, without their queries.
        pending: Deliveries not yet made (lost if the orchestrator stops now).
        dropped: Deliveries dropped since the start because the queue was full.
        deliveries: The log entries asked for.
    """

    enabled: bool
    targets: list[str]
    pending: int
    dropped: int
    deliveries: list[DeliveryRecord]


@router.get(
    "/deliveries",
    response_model=DeliveriesPage,
    summary="Outgoing webhook deliveries (admin)",
    responses=error_responses(401, 403, 422),
)
async def list_deliveries(
    state: StateDep,
    principal: PrincipalDep,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=LOG_SIZE, description="Entries to list.")] = 100,
) -> DeliveriesPage:
    """What became of each outgoing event at each target: attempts, last answer, error.

    The log is held in memory: a restart empties it and loses the deliveries still
    pending. Rooms, tracks and summaries are always in the REST API, whatever the log says.
    """
    principal.require_admin()
    outbound = state.lifecycle.outbound
    return DeliveriesPage(
        enabled=outbound.enabled,
        targets=outbound.targets,
        pending=outbound.pending,
        dropped=outbound.dropped,
        deliveries=outbound.records(status=status, limit=limit),
    )
