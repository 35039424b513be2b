"""The types catalogue, the audit log, webhooks (create, deliveries) and keys (operators)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response

from connectord.console.web import View
from connectord.errors import FieldError, NotFoundError, ValidationError
from connectord.model import TENANT_SCOPES, EventType, Scope
from connectord.validation import is_id

#: Rows of an audit or deliveries page.
PAGE_SIZE = 50


async def types_page(view: View) -> Response:
    """Every connector type: what it reaches, its capabilities, secret fields and providers."""
    registry = view.facade.registry
    types = []
    for ctype in registry.types().values():
        described = registry.describe(ctype)
        described["secret_fields"] = view.services.spec(ctype.name).secret_labels()
        types.append(described)
    return view.render("types.html", types=types)


async def audit_page(view: View) -> Response:
    """The tenant's audit events, newest first, a page at a time."""
    cursor = view.query("cursor")
    page = await view.facade.audit(view.tenant_id, PAGE_SIZE, cursor)
    next_url = "/audit?" + urlencode({"cursor": page.next_cursor}) if page.next_cursor else None
    return view.render("audit.html", events=page.items, next_url=next_url, paged=cursor is not None)


# --- webhooks ------------------------------------------------------------------------------


async def webhooks_page(view: View, status: int = 200, errors: list[FieldError] | None = None) -> Response:
    """The tenant's webhooks and a form to add one."""
    page = await view.facade.list_webhooks(view.tenant_id, 200)
    placed: dict[str, list[str]] = {}
    general: list[str] = []
    for error in errors or []:
        if error.loc and error.loc[0] in ("url", "events", "description"):
            placed.setdefault(str(error.loc[0]), []).append(error.msg)
        else:
            general.append(error.msg)
    form = {name: view.field(name, 2048) for name in ("url", "description")}
    chosen = [str(e) for e in view.form.getlist("events")] if view.form is not None else []
    return view.render(
        "webhooks.html",
        status,
        webhooks=page.items,
        more=page.next_cursor is not None,
        event_types=[str(e) for e in EventType],
        errors=placed,
        general=general,
        form=form,
        chosen=chosen,
    )


async def webhook_create(view: View) -> Response:
    """Add a webhook; its signing secret is shown this once."""
    assert view.form is not None
    events = [str(e) for e in view.form.getlist("events")]
    known = {str(e) for e in EventType}
    if any(e not in known for e in events):
        return await webhooks_page(view, 422, [FieldError(("events",), "must be event types")])
    try:
        info, secret = await view.facade.create_webhook(
            view.tenant_id,
            view.field("url").strip(),
            events or None,
            view.field("description", 500).strip(),
            actor=view.actor,
        )
    except ValidationError as exc:
        return await webhooks_page(view, 422, exc.errors or [FieldError((), exc.message)])
    return view.render(
        "secret_once.html",
        title="Webhook added",
        what=f"The signing secret of the webhook to {info.url}",
        secret=secret,
        kept="encrypted",
        back=f"/webhooks/{info.id}",
        back_label="See the webhook",
    )


async def _webhook(view: View) -> str:
    webhook_id = view.request.path_params["webhook_id"]
    if await view.facade.get_webhook(webhook_id, view.tenant_id) is None:
        raise NotFoundError("no such webhook")
    return str(webhook_id)


async def webhook_page(view: View) -> Response:
    """A webhook and its deliveries, newest first."""
    webhook = await view.facade.get_webhook(view.request.path_params["webhook_id"], view.tenant_id)
    if webhook is None:
        raise NotFoundError("no such webhook")
    cursor = view.query("cursor")
    page = await view.facade.webhook_deliveries(webhook.id, view.tenant_id, PAGE_SIZE, cursor)
    next_url = (
        f"/webhooks/{webhook.id}?" + urlencode({"cursor": page.next_cursor}) if page.next_cursor else None
    )
    return view.render("webhook.html", webhook=webhook, deliveries=page.items, next_url=next_url)


async def webhook_toggle(view: View) -> Response:
    """Pause or resume a webhook's deliveries."""
    webhook_id = await _webhook(view)
    enabled = view.field("enabled", 8) == "true"
    await view.facade.update_webhook(webhook_id, view.tenant_id, enabled=enabled, actor=view.actor)
    return view.redirect(
        f"/webhooks/{webhook_id}", "Deliveries resumed." if enabled else "Deliveries paused."
    )


async def webhook_delete(view: View) -> Response:
    """Delete a webhook and its delivery log."""
    webhook_id = await _webhook(view)
    await view.facade.delete_webhook(webhook_id, view.tenant_id, actor=view.actor)
    return view.redirect("/webhooks", "Webhook deleted.")


# --- tenants and keys (an operator's ``admin`` key) --------------------------------------------


async def tenants_page(view: View, status: int = 200, error: str | None = None) -> Response:
    """Every tenant, and a form to add one."""
    tenants = await view.services.admin.list_tenants()
    return view.render("tenants.html", status, tenants=tenants, error=error, name=view.field("name", 200))


async def tenant_create(view: View) -> Response:
    """Add a tenant; its first key is shown this once."""
    try:
        tenant, key = await view.services.admin.create_tenant(
            view.field("name", 400).strip(), actor=view.actor
        )
    except ValidationError as exc:
        return await tenants_page(view, 422, exc.errors[0].msg if exc.errors else exc.message)
    return view.render(
        "secret_once.html",
        title="Tenant added",
        what=f"The first API key of {tenant.name} (scopes {', '.join(key.scopes)})",
        secret=key.api_key,
        kept="hashed",
        back=f"/keys/{tenant.id}",
        back_label=f"See the keys of {tenant.name}",
    )


async def _tenant(view: View) -> tuple[str, str]:
    tenant_id = view.request.path_params["tenant_id"]
    # The admin's tenants have the store's ids: other text names none (and may not reach the database).
    tenant = await view.services.admin.get_tenant(tenant_id) if is_id(tenant_id) else None
    if tenant is None:
        raise NotFoundError("no such tenant")
    return tenant.id, tenant.name


async def keys_page(view: View, status: int = 200, error: str | None = None) -> Response:
    """A tenant's keys (never their values) and a form to add one."""
    tenant_id, name = await _tenant(view)
    keys = await view.services.admin.list_keys(tenant_id)
    return view.render(
        "keys.html",
        status,
        tenant_id=tenant_id,
        tenant_name=name,
        keys=keys,
        scopes=[str(s) for s in Scope],
        default_scopes=[str(s) for s in TENANT_SCOPES],
        error=error,
    )


async def key_create(view: View) -> Response:
    """Add a key to the tenant; its value is shown this once."""
    assert view.form is not None
    tenant_id, tenant_name = await _tenant(view)
    scopes = tuple(str(s) for s in view.form.getlist("scopes"))
    try:
        key = await view.services.admin.create_key(
            tenant_id, name=view.field("name", 400).strip() or "key", scopes=scopes, actor=view.actor
        )
    except ValidationError as exc:
        return await keys_page(view, 422, exc.errors[0].msg if exc.errors else exc.message)
    return view.render(
        "secret_once.html",
        title="Key added",
        what=f"A new API key of {tenant_name} (scopes {', '.join(key.scopes)})",
        secret=key.api_key,
        kept="hashed",
        back=f"/keys/{tenant_id}",
        back_label=f"See the keys of {tenant_name}",
    )


async def key_revoke(view: View) -> Response:
    """Revoke a key: requests and console sessions with it end at once."""
    tenant_id, _ = await _tenant(view)
    key_id = view.request.path_params["key_id"]
    if not is_id(key_id) or not await view.services.admin.revoke_key(tenant_id, key_id, actor=view.actor):
        raise NotFoundError("no such active key")
    return view.redirect(f"/keys/{tenant_id}", "Key revoked.")
