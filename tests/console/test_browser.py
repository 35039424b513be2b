"""The web console in headless Chromium against a real server (issue 13).

One server for the module, one browser for the session; each test has its own
tenant. The connectors test against a real local HTTP server and a closed port.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.api.conftest import Server, Tenant, create_tenant, free_port
from tests.console.conftest import Console, Target, create_key, other_context, unique

TOKEN_PREFIX = "tok-typed-in-the-form-"


def _register_http(console: Console, name: str, endpoint: str, token: str) -> str:
    """Register an http connector with a bearer token through the generated form, after
    a "Test before saving"; the new connector's id."""
    page = console.page
    console.visit("/connectors/new", "register-pick-type")
    page.get_by_role("link", name="http", exact=True).click()
    console.check("register-form")
    connector = page.get_by_role("group", name="Connector")
    connector.get_by_role("textbox", name="Name", exact=True).fill(name)
    connector.get_by_label("Endpoint").fill(endpoint)
    page.get_by_role("combobox", name="Kind").select_option("bearer")
    token_input = page.get_by_role("textbox", name="Token", exact=True)
    expect(token_input).to_be_visible()  # the script shows the chosen variant only
    expect(page.get_by_role("textbox", name="Username", exact=True)).to_be_hidden()
    token_input.fill(token)
    page.get_by_text("Labels, scheduled checks").click()  # folded: open it
    page.get_by_label("Labels").fill("team: payments")
    page.get_by_role("button", name="Test before saving").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("success")
    expect(token_input).to_have_value(token)  # tested in the background: the form kept it
    console.check("register-tested")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    match = re.search(r"/connectors/([0-9a-f-]{36})$", page.url)
    assert match, page.url
    return match.group(1)


def test_register_test_edit_chart_and_delete(console: Console, tenant: Tenant, target: Target) -> None:
    page = console.page
    token = TOKEN_PREFIX + "one"
    name = unique("orders-api")
    console.sign_in(tenant.key)
    connector_id = _register_http(console, name, target.url + "/", token)
    assert f"Bearer {token}" in target.handler.seen_auth  # the typed secret reached the probe

    # Its page: fields, the secret as "set", then a test that succeeds.
    html = console.check("connector-registered")
    assert "auth.token" in html
    for _ in range(3):
        page.get_by_role("button", name="Test", exact=True).click()
        expect(page.locator("#latest-test")).to_contain_text("success")
    console.check("connector-tested")

    # Edit it to a closed port: the token must be sent again (the destination changes),
    # and the error shows beside its field.
    page.get_by_role("link", name="Edit").click()
    console.check("edit-form")
    expect(page.get_by_role("textbox", name="Token", exact=True)).to_have_value(
        ""
    )  # a stored secret is never filled in
    closed = f"http://127.0.0.1:{free_port()}/"
    page.get_by_label("Endpoint").fill(closed)
    page.get_by_role("button", name="Save changes").click()
    token_field = page.locator(".field", has=page.get_by_role("textbox", name="Token", exact=True))
    expect(token_field.locator(".field-error")).to_contain_text("must be sent again")
    console.check("edit-field-error")
    page.get_by_role("textbox", name="Token", exact=True).fill(token)
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".flash")).to_contain_text("Saved")
    page.get_by_role("button", name="Test", exact=True).click()
    latest = page.locator("#latest-test")
    expect(latest).to_contain_text("refused")
    expect(latest.locator("svg.phases")).to_have_count(1)  # the phase timings as a bar

    # The tests in the history chart: success dots and a failure cross.
    chart = page.locator("svg.chart")
    expect(chart.locator("circle.ok")).to_have_count(3)  # the unsaved test is not in the history
    expect(chart.locator("path.fail")).to_have_count(1)
    expect(page.locator("#health-title")).to_be_visible()
    expect(page.get_by_role("region", name="Audit trail")).to_contain_text("connector.update")
    console.check("connector")
    console.save_docs_image("connector")

    # Every page the browser saw: the token never came back.
    for seen in console.seen:
        assert token not in seen

    # Delete it (the script asks first).
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash")).to_contain_text(f"Deleted {name}")
    console.check("connectors-after-delete")
    assert tenant.http.get(f"/api/v1/connectors/{connector_id}").status_code == 404


def test_a_wrong_key_is_refused(console: Console) -> None:
    console.visit("/", "sign-in")
    console.page.get_by_label("API key").fill("cdk_" + "x" * 43)
    console.page.get_by_role("button", name="Sign in").click()
    expect(console.page.locator("#sign-in-error")).to_contain_text("not valid")
    console.check("sign-in-refused")
    assert not any(c["name"] == "connectord_session" for c in console.page.context.cookies())
    assert console.page.goto(console.url + "/connectors") is not None
    expect(console.page).to_have_url(re.compile(r"/\?next="))  # still signed out


def test_the_session_cookie_and_sign_out(console: Console, tenant: Tenant) -> None:
    console.sign_in(tenant.key)
    cookie = next(c for c in console.page.context.cookies() if c["name"] == "connectord_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert tenant.key not in cookie["value"]
    for seen in console.seen:
        assert tenant.key not in seen  # not in any page, nor in local storage below
    assert console.page.evaluate("Object.keys(localStorage).length") == 0
    console.page.get_by_role("button", name="Sign out").click()
    expect(console.page.get_by_role("heading", name="Sign in")).to_be_visible()
    console.page.goto(console.url + "/connectors")
    expect(console.page).to_have_url(re.compile(r"/\?next="))


def test_a_read_only_key_sees_no_edit_controls_and_a_forged_edit_is_refused(
    console: Console, server: Server, tenant: Tenant, target: Target
) -> None:
    info = tenant.http.post(
        "/api/v1/connectors", json={"name": unique("ro"), "connector_type": "http", "endpoint": target.url}
    ).json()
    console.sign_in(create_key(server, tenant, ["connectors:read"]))
    page = console.page
    console.check("read-only-list")
    expect(page.get_by_role("link", name="Register a connector")).to_have_count(0)
    expect(page.get_by_role("button", name="Test selected")).to_have_count(0)
    expect(page.locator('input[name="ids"]')).to_have_count(0)
    expect(page.get_by_role("link", name="Webhooks")).to_have_count(0)
    console.visit(f"/connectors/{info['id']}", "read-only-connector")
    for control in ("Test", "Delete"):
        expect(page.get_by_role("button", name=control, exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    console.visit(f"/connectors/{info['id']}/edit", "read-only-edit-refused", status=403)

    # Forged with the session's own CSRF token: the server refuses it anyway.
    token = console.csrf_token()
    forged = page.request.post(
        f"{console.url}/connectors/{info['id']}/edit",
        form={"csrf_token": token, "name": "renamed", "version": "1", "action": "save"},
    )
    assert forged.status == 403
    for action in ("delete", "test"):
        assert (
            page.request.post(
                f"{console.url}/connectors/{info['id']}/{action}", form={"csrf_token": token}
            ).status
            == 403
        )
    after = tenant.http.get(f"/api/v1/connectors/{info['id']}").json()
    assert (after["name"], after["version"], after["last_used_at"]) == (info["name"], 1, None)


def test_a_form_posted_without_its_csrf_token_is_refused(console: Console, tenant: Tenant) -> None:
    info = tenant.http.post(
        "/api/v1/connectors", json={"name": unique("csrf"), "connector_type": "custom"}
    ).json()
    console.sign_in(tenant.key)
    request = console.page.request
    for form in ({}, {"csrf_token": "not-the-token"}):
        response = request.post(f"{console.url}/connectors/{info['id']}/delete", form=form)
        assert response.status == 403
        assert "Form refused" in response.text()
    assert tenant.http.get(f"/api/v1/connectors/{info['id']}").status_code == 200
    # The sign-in form too: its token must match its cookie.
    with httpx.Client(base_url=console.url) as http:
        refused = http.post("/sign-in", data={"api_key": tenant.key})
        assert refused.status_code == 403
        assert "connectord_session" not in refused.cookies


def test_another_tenants_connector_is_404(console: Console, server: Server, tenant: Tenant) -> None:
    other = create_tenant(server, "other")
    theirs = other.http.post(
        "/api/v1/connectors", json={"name": unique("theirs"), "connector_type": "custom"}
    ).json()
    console.sign_in(tenant.key)
    console.visit(f"/connectors/{theirs['id']}", "other-tenant-404", status=404)
    console.visit(f"/connectors/{theirs['id']}/edit", "other-tenant-edit-404", status=404)
    token = console.csrf_token()
    for action in ("test", "delete", "edit"):
        response = console.page.request.post(
            f"{console.url}/connectors/{theirs['id']}/{action}", form={"csrf_token": token}
        )
        assert response.status == 404, action
    assert other.http.get(f"/api/v1/connectors/{theirs['id']}").json()["version"] == 1


def test_a_revoked_key_ends_the_session(console: Console, server: Server, tenant: Tenant) -> None:
    key = create_key(server, tenant, ["connectors:read"])
    console.sign_in(key)
    key_id = next(
        k["id"]
        for k in server.admin().get(f"/api/v1/tenants/{tenant.id}/keys").json()["items"]
        if k["scopes"] == ["connectors:read"]
    )
    assert server.admin().delete(f"/api/v1/tenants/{tenant.id}/keys/{key_id}").status_code == 204
    console.page.reload()
    expect(console.page).to_have_url(re.compile(r"ended=1"))
    expect(console.page.get_by_role("alert")).to_contain_text("session ended")


def test_test_selected_shows_live_progress(console: Console, tenant: Tenant, target: Target) -> None:
    closed = free_port()
    for name, endpoint in (("a", target.url), ("b", target.url), ("c", f"http://127.0.0.1:{closed}")):
        body = {"name": unique(f"bulk-{name}"), "connector_type": "http", "endpoint": endpoint}
        assert tenant.http.post("/api/v1/connectors", json=body).status_code == 201
    console.sign_in(tenant.key)
    page = console.page
    page.get_by_label("Select every connector on this page").check()
    page.get_by_role("button", name="Test selected").click()
    expect(page.locator("#batch-summary")).to_contain_text("3 of 3 done: 2 ok, 1 failed")
    expect(page.locator("#batch-progress")).to_have_attribute("value", "3")
    expect(page.locator("tbody")).to_contain_text("refused")
    console.check("test-selected")
    # The list shows each one's last test and 24 h uptime.
    console.visit("/connectors", "connectors")
    expect(page.locator("tbody")).to_contain_text("just now")
    expect(page.locator("tbody")).to_contain_text("100%")
    expect(page.locator("tbody")).to_contain_text("0%")


def test_filters_search_and_keyset_pages(console: Console, tenant: Tenant) -> None:
    for i in range(55):
        body = {"name": f"page-{i:02d}", "connector_type": "custom" if i % 5 else "http"}
        if i % 5 == 0:
            body["endpoint"] = "http://127.0.0.1:9/"
        assert tenant.http.post("/api/v1/connectors", json=body).status_code == 201
    console.sign_in(tenant.key)
    page = console.page
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(50)
    page.get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(5)
    expect(page.locator("tbody")).to_contain_text("page-54")
    console.check("connectors-page-2")
    page.get_by_label("Name contains").fill("PAGE-1")
    page.get_by_label("Type").select_option("custom")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(8)  # page-11..19 but page-15 (http)
    console.check("connectors-filtered")
    page.get_by_label("Status").select_option("connected")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No connector matches these filters.")).to_be_visible()


def test_read_only_pages_work_without_javascript(
    browser: Browser, server: Server, tenant: Tenant, target: Target, screenshots: Path
) -> None:
    info = tenant.http.post(
        "/api/v1/connectors", json={"name": unique("nojs"), "connector_type": "http", "endpoint": target.url}
    ).json()
    tenant.http.post(f"/api/v1/connectors/{info['id']}/test")
    with other_context(browser, server, screenshots, java_script_enabled=False) as plain:
        plain.sign_in(tenant.key, "sign-in-no-js")
        page = plain.page
        for path, name in (
            ("/connectors", "no-js-list"),
            ("/types", "no-js-types"),
            ("/audit", "no-js-audit"),
        ):
            plain.visit(path, name)
        plain.visit(f"/connectors/{info['id']}", "no-js-connector")
        expect(page.locator("svg.chart circle.ok")).to_have_count(1)
        # A form without script: every variant shows; a test re-renders the page, never the secret.
        plain.visit("/connectors/new?type=http", "no-js-register")
        page.get_by_role("group", name="Connector").get_by_role("textbox", name="Name", exact=True).fill(
            unique("plain")
        )
        page.get_by_label("Endpoint").fill(target.url)
        page.get_by_role("combobox", name="Kind").select_option("bearer")
        secret = TOKEN_PREFIX + "no-js"
        page.get_by_role("textbox", name="Token", exact=True).fill(secret)
        page.get_by_role("button", name="Test before saving").click()
        html = plain.check("no-js-register-tested")
        expect(page.locator("#test-result")).to_contain_text("success")
        expect(page.get_by_role("textbox", name="Token", exact=True)).to_have_value("")
        assert secret not in html


def test_a_phone_width_has_no_sideways_scroll(
    browser: Browser, server: Server, tenant: Tenant, target: Target, screenshots: Path
) -> None:
    info = tenant.http.post(
        "/api/v1/connectors", json={"name": unique("phone"), "connector_type": "http", "endpoint": target.url}
    ).json()
    tenant.http.post(f"/api/v1/connectors/{info['id']}/test")
    with other_context(browser, server, screenshots, viewport={"width": 390, "height": 844}) as phone:
        phone.sign_in(tenant.key, "phone-sign-in")
        for path, name in (
            ("/connectors", "phone-list"),
            (f"/connectors/{info['id']}", "phone-connector"),
            ("/connectors/new?type=http", "phone-register"),
        ):
            phone.visit(path, name)
            width = phone.page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide"


def test_webhooks_types_audit_and_keys(console: Console, server: Server, target: Target) -> None:
    console.sign_in(server.admin_key)  # the operator's key has every scope
    page = console.page
    console.visit("/types", "types")
    expect(page.locator("#type-http")).to_contain_text("auth.token")
    console.visit("/webhooks", "webhooks")
    page.get_by_role("textbox", name="URL", exact=True).fill(target.url + "/hook")
    page.get_by_label("connector.down").check()
    page.get_by_role("button", name="Add webhook").click()
    secret = page.get_by_label(re.compile("signing secret"))
    expect(secret).to_have_value(re.compile(r"^whsec_"))
    signing = secret.input_value()
    console.check("webhook-secret-once")
    page.get_by_role("link", name="See the webhook").click()
    expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()
    html = console.check("webhook")
    assert signing not in html
    console.visit("/audit", "audit")
    expect(page.locator("tbody")).to_contain_text("webhook.create")

    console.visit("/keys", "tenants")
    page.get_by_label("Name").fill(unique("acme"))
    page.get_by_role("button", name="Add tenant").click()
    expect(page.get_by_label(re.compile("first API key"))).to_have_value(re.compile(r"^cdk_"))
    console.check("tenant-key-once")
    page.get_by_role("link", name=re.compile("See the keys")).click()
    console.check("keys")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=re.compile("^Revoke")).first.click()
    expect(page.locator(".flash")).to_contain_text("Key revoked")


def test_a_tenant_key_sees_no_operator_pages(console: Console, tenant: Tenant) -> None:
    console.sign_in(tenant.key)
    expect(console.page.get_by_role("link", name="Tenants and keys")).to_have_count(0)
    console.visit("/keys", "keys-refused", status=403)
