"""``/connectors/{id}/secrets``: fingerprints and references of a connector's stored secrets,
never their values (``docs/secrets.md``, "Fingerprints"): what ``export`` writes beside each
reference and ``apply --dry-run`` compares to tell a changed secret from an unchanged one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from connectord.api.deps import PathId, Reader, Writer
from connectord.api.docs import problems
from connectord.api.responses import json_response
from connectord.fingerprints import MAX_CANDIDATES

router = APIRouter(prefix="/api/v1/connectors", tags=["secrets"])


class SecretStateOut(BaseModel):
    """One stored secret, told without its value."""

    fingerprint: str = Field(description="hmac-sha256:<key id>:<hash>: a keyed hash of the value.")
    reference: str | None = Field(description="The reference (env:, file:, aws-sm:) when the secret is one.")


class SecretsOut(BaseModel):
    """Answer of ``GET /connectors/{id}/secrets``."""

    secrets: dict[str, SecretStateOut] = Field(description="By dotted field name.")


class FingerprintsIn(BaseModel):
    """Body of ``POST /connectors/{id}/secrets/fingerprints``."""

    model_config = ConfigDict(extra="forbid")

    values: Annotated[dict[str, str], Field(max_length=MAX_CANDIDATES)] = Field(
        description="Candidate values by dotted field name; fingerprinted, never stored."
    )


class FingerprintsOut(BaseModel):
    """Answer of ``POST /connectors/{id}/secrets/fingerprints``."""

    fingerprints: dict[str, str]


@router.get(
    "/{connector_id}/secrets",
    operation_id="connectorSecrets",
    response_model=SecretsOut,
    responses=problems(404),
    summary="Fingerprints and references of a connector's secrets",
)
async def connector_secrets(connector_id: PathId, who: Reader) -> Response:
    """Each stored secret's fingerprint, and its reference when it is one. A value is never
    answered; the fingerprint changes when the value (or the primary encryption key) does."""
    states = await who.facade.secret_states(connector_id, who.tenant_id, reach=who.reach)
    return json_response({"secrets": {name: state.to_dict() for name, state in states.items()}})


@router.post(
    "/{connector_id}/secrets/fingerprints",
    operation_id="fingerprintSecrets",
    response_model=FingerprintsOut,
    responses=problems(404, 413, 422),
    summary="Fingerprint candidate values as this connector's secrets",
)
async def fingerprint_secrets(connector_id: PathId, body: FingerprintsIn, who: Writer) -> Response:
    """The fingerprints the given values would have as this connector's secrets, to compare
    with ``GET /connectors/{id}/secrets`` without reading a secret back. Needs
    ``connectors:write`` (a key that may replace a secret), and each call is audited."""
    found = await who.facade.fingerprint_secrets(
        connector_id, who.tenant_id, body.values, reach=who.reach, actor=who.actor
    )
    return json_response({"fingerprints": found})
