"""Register and edit forms, generated from each type's config JSON Schema
(:mod:`connectord.console.forms`), with "Test before saving".

A post either saves (``action=save``) or tests the unsaved definition
(``action=test``: the facade's ``test_definition`` for a new connector,
``test_changes`` for an edit, which uses the stored secrets the form leaves
empty). The facade's field-level errors are shown beside their fields; what the
person typed is shown again, except secrets, which are never written into a page.
With the page's script, "Test before saving" posts in the background and only
the result is swapped in, so the typed secrets stay in the form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from connectord.console.formdata import (
    FormState,
    parse_config,
    place_errors,
    state_from_config,
    state_from_form,
)
from connectord.console.forms import FormSpec
from connectord.console.web import View
from connectord.errors import (
    DuplicateNameError,
    FieldError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
    VersionConflictError,
)
from connectord.lifecycle import USER_TRANSITIONS
from connectord.model import ConnectorInfo, Scope, TestResult

#: The form's own fields, outside the config.
TOP_FIELDS = (
    "name",
    "endpoint",
    "metadata",
    "check_interval",
    "failure_threshold",
    "status",
    "connector_type",
)
#: Header the page's script sends to get the test result alone.
PARTIAL_HEADER = "x-console-partial"


@dataclass
class Submission:
    """A posted connector form, read: what the facade gets, and what could not be read."""

    name: str
    endpoint: str
    metadata: dict[str, Any]
    config: dict[str, Any]
    check_interval: float | None
    failure_threshold: int | None
    status: str | None
    errors: dict[str, list[str]] = field(default_factory=dict)


def _number(view: View, name: str, kind: type, errors: dict[str, list[str]]) -> Any:
    text = view.field(name, 64).strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        errors.setdefault(name, []).append("must be a whole number" if kind is int else "must be a number")
        return None


def metadata_text(metadata: dict[str, Any]) -> str:
    """Metadata as the form shows it: one ``key: value`` per line (non-text values as JSON)."""
    return "\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in metadata.items())


def parse_metadata(text: str, stored: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
    """The metadata of the form's ``key: value`` lines. Values are text; a stored value
    that is not text stays as it is when its line still shows it unchanged."""
    found: dict[str, Any] = {}
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            errors.setdefault("metadata", []).append(f"line {number} is not 'key: value'")
            continue
        kept = stored.get(key)
        found[key] = (
            kept if not isinstance(kept, str) and key in stored and json.dumps(kept) == value else value
        )
    return found


def read_form(view: View, spec: FormSpec, stored: ConnectorInfo | None) -> Submission:
    """The posted connector form."""
    errors: dict[str, list[str]] = {}
    assert view.form is not None  # a post
    config, config_errors = parse_config(spec, view.form, stored.config if stored else None)
    errors.update(config_errors)
    status = view.field("status", 32) or None
    return Submission(
        name=view.field("name", 400).strip(),
        endpoint=view.field("endpoint").strip(),
        metadata=parse_metadata(view.field("metadata", 20000), stored.metadata if stored else {}, errors),
        config=config,
        check_interval=_number(view, "check_interval", float, errors),
        failure_threshold=_number(view, "failure_threshold", int, errors),
        status=status,
        errors=errors,
    )


def _action(view: View) -> str:
    """What the post asks: ``save`` or ``test`` (the button pressed; Enter presses Save)."""
    action = view.field("action", 16)
    if action not in ("save", "test"):
        raise ValidationError("unknown action", [FieldError(("action",), "must be save or test")])
    return action


def _statuses(info: ConnectorInfo | None) -> list[str]:
    """The statuses a person may set this connector to now."""
    if info is None:
        return []
    return [str(s) for s, allowed in USER_TRANSITIONS.items() if info.status in allowed and s != info.status]


@dataclass
class FormPage:
    """What the form template shows."""

    spec: FormSpec
    state: FormState
    info: ConnectorInfo | None
    top: dict[str, str]
    result: TestResult | None = None
    tested: bool = False


def _render(view: View, form: FormPage, status: int = 200) -> Response:
    if form.tested and view.request.headers.get(PARTIAL_HEADER) == "1":
        partial = view.render("_test_result.html", status, result=form.result, heading="Test before saving")
        partial.headers[PARTIAL_HEADER] = "1"  # tells the script this is the result alone
        return partial
    ctype = view.facade.registry.get(form.spec.connector_type)
    return view.render(
        "connector_form.html",
        status,
        spec=form.spec,
        state=form.state,
        info=form.info,
        top=form.top,
        description=ctype.description,
        statuses=_statuses(form.info),
        result=form.result,
        tested=form.tested,
    )


def _top_from_info(info: ConnectorInfo) -> dict[str, str]:
    return {
        "name": info.name,
        "endpoint": info.endpoint or "",
        "metadata": metadata_text(info.metadata),
        "check_interval": "" if info.check_interval is None else f"{info.check_interval:g}",
        "failure_threshold": "" if info.failure_threshold is None else str(info.failure_threshold),
        "status": "",
        "version": str(info.version),
    }


def _top_from_form(view: View) -> dict[str, str]:
    names = ("name", "endpoint", "metadata", "check_interval", "failure_threshold", "status", "version")
    return {name: view.field(name, 20000) for name in names}


def _with_errors(form: FormPage, errors: list[FieldError] | dict[str, list[str]]) -> FormPage:
    if isinstance(errors, dict):
        for key, messages in errors.items():
            form.state.errors.setdefault(key, []).extend(messages)
        return form
    placed, general = place_errors(form.spec, errors, TOP_FIELDS)
    for key, messages in placed.items():
        form.state.errors.setdefault(key, []).extend(messages)
    form.state.general.extend(general)
    return form


# --- register ------------------------------------------------------------------------------


async def new_page(view: View) -> Response:
    """Pick a type, then its form."""
    type_name = view.query("type", 64)
    registry = view.facade.registry
    if type_name is None or type_name not in registry.types():
        described = [registry.describe(t) for t in registry.types().values()]
        return view.render("pick_type.html", types=described, unknown=type_name)
    spec = view.services.spec(type_name)
    top = {"name": "", "endpoint": "", "metadata": "", "check_interval": "", "failure_threshold": ""}
    return _render(view, FormPage(spec, state_from_config(spec, {}, ()), None, top))


async def new_post(view: View) -> Response:
    """Register the connector, or test it unsaved."""
    type_name = view.field("connector_type", 64)
    if type_name not in view.facade.registry.types():
        raise NotFoundError("no such connector type")
    spec = view.services.spec(type_name)
    sub = read_form(view, spec, None)
    assert view.form is not None  # a post
    form = FormPage(spec, state_from_form(spec, view.form), None, _top_from_form(view))
    if sub.errors:
        return _render(view, _with_errors(form, sub.errors), 422)
    facade, tenant_id = view.facade, view.tenant_id
    try:
        if _action(view) == "test":
            _require(view, Scope.TEST)
            form.result = await facade.test_definition(
                tenant_id,
                sub.name,
                type_name,
                sub.endpoint or None,
                sub.config,
                sub.metadata,
                actor=view.actor,
            )
            form.tested = True
            return _render(view, form)
        info = await facade.register_connector(
            tenant_id,
            sub.name,
            type_name,
            sub.endpoint or None,
            sub.config,
            sub.metadata,
            actor=view.actor,
            check_interval=sub.check_interval,
            failure_threshold=sub.failure_threshold,
        )
    except ValidationError as exc:
        return _render(view, _with_errors(form, exc.errors or [FieldError((), exc.message)]), 422)
    except DuplicateNameError as exc:
        return _render(view, _with_errors(form, [FieldError(("name",), exc.message)]), 409)
    return view.redirect(f"/connectors/{info.id}", f"Registered {info.name}.")


def _require(view: View, scope: Scope) -> None:
    if not view.can(scope):
        raise PermissionDeniedError(f"this API key lacks the {scope.value!r} scope")


# --- edit ----------------------------------------------------------------------------------


async def _stored(view: View) -> ConnectorInfo:
    info = await view.facade.get_connector(view.request.path_params["connector_id"], view.tenant_id)
    if info is None:
        raise NotFoundError("no such connector")
    return info


async def edit_page(view: View) -> Response:
    """The connector's form, filled from what is stored (secrets only as "set")."""
    info = await _stored(view)
    spec = view.services.spec(info.connector_type)
    state = state_from_config(spec, info.config, info.secret_fields)
    return _render(view, FormPage(spec, state, info, _top_from_info(info)))


async def edit_post(view: View) -> Response:
    """Save the changes (if the connector is still at the version the form was made
    from), or test them unsaved."""
    info = await _stored(view)
    spec = view.services.spec(info.connector_type)
    sub = read_form(view, spec, info)
    assert view.form is not None  # a post
    state = state_from_form(spec, view.form, info.config, info.secret_fields)
    form = FormPage(spec, state, info, _top_from_form(view))
    if sub.errors:
        return _render(view, _with_errors(form, sub.errors), 422)
    facade, tenant_id = view.facade, view.tenant_id
    version = view.field("version", 12)
    try:
        if _action(view) == "test":
            _require(view, Scope.TEST)
            form.result = await facade.test_changes(
                info.id, tenant_id, sub.endpoint, sub.config, actor=view.actor
            )
            form.tested = True
            return _render(view, form)
        updated = await facade.update_connector(
            info.id,
            tenant_id,
            name=sub.name,
            endpoint=sub.endpoint,
            config=sub.config,
            metadata=sub.metadata,
            status=sub.status,
            expected_version=int(version) if version.isdigit() else -1,
            actor=view.actor,
            check_interval=sub.check_interval,
            failure_threshold=sub.failure_threshold,
        )
    except ValidationError as exc:
        return _render(view, _with_errors(form, exc.errors or [FieldError((), exc.message)]), 422)
    except DuplicateNameError as exc:
        return _render(view, _with_errors(form, [FieldError(("name",), exc.message)]), 409)
    except VersionConflictError:
        message = (
            "The connector changed since this form was opened. Reload the page to edit what is stored now."
        )
        return _render(view, _with_errors(form, [FieldError((), message)]), 409)
    except InvalidTransitionError as exc:
        return _render(view, _with_errors(form, [FieldError(("status",), exc.message)]), 409)
    if updated is None:
        raise NotFoundError("no such connector")
    return view.redirect(f"/connectors/{updated.id}", f"Saved {updated.name}.")
