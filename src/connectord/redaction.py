"""Making text, URLs and test details safe to show: no secret in any encoding.

Two mechanisms, both structural rather than one spelling matched:

- :func:`redact_url` drops a URL's user information and masks the value of
  every query parameter that holds a credential, by *name* (the names a probe
  knows it sent a secret in, and the credential-shaped names of
  :data:`CREDENTIAL_PARAMETERS`), whatever the value's encoding.
- :func:`scrub_text` and :func:`scrub` replace every secret value in every
  encoding a probe sends it in: raw, percent-encoded (``quote``, ``quote_plus``
  and yarl's query encoding), JSON-escaped, base64; and any base64 token whose
  decoded bytes hold a secret (``Basic dTpwdw==`` carries ``user:password``, and
  the user name is not known here). A server echoing a header back into
  ``Server`` or ``Content-Type`` thus shows ``[redacted]``.

The probe runner scrubs every result (message and ``details``) before it is
returned or stored; probes use these too for the URLs they report.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

#: What a secret is replaced with.
MASK = "[redacted]"
#: Query parameters that carry a credential: masked in reported URLs, refused in endpoints.
CREDENTIAL_PARAMETERS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "api-key",
        "auth",
        "client_secret",
        "key",
        "passwd",
        "password",
        "pwd",
        "secret",
        "sig",
        "signature",
        "token",
        "x-amz-credential",
        "x-amz-security-token",
        "x-amz-signature",
    }
)
#: Shorter values are not masked: masking "a" would blank every text.
MIN_SECRET = 3
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


def redact_url(url: str, secret_parameters: Iterable[str] = ()) -> str:
    """``url`` without user information, the values of credential parameters masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    names = CREDENTIAL_PARAMETERS | {n.lower() for n in secret_parameters}
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(_masked(item, names) for item in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _masked(item: str, names: frozenset[str] | set[str]) -> str:
    name, sep, _ = item.partition("=")
    return f"{name}={MASK}" if sep and unquote_plus(name).lower() in names else item


def encodings(value: str) -> set[str]:
    """The spellings of a secret a probe may have sent: raw, percent-encoded, JSON, base64."""
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        _yarl_query_value(value),
        json.dumps(value)[1:-1],
        base64.b64encode(value.encode()).decode(),
        base64.urlsafe_b64encode(value.encode()).decode(),
    }
    forms |= {f.rstrip("=") for f in forms}
    return {f for f in forms if len(f) >= MIN_SECRET}


def _yarl_query_value(value: str) -> str:
    from yarl import URL  # aiohttp's URL type: how the http probe encodes query values

    return URL.build(query={"k": value}).raw_query_string.removeprefix("k=")


class Scrubber:
    """Removes a connector's secrets, in every encoding, from texts and details."""

    def __init__(self, secret_values: Iterable[str]) -> None:
        values = {v for v in secret_values if len(v) >= MIN_SECRET}
        self._raw = [v.encode() for v in values]
        self._forms = sorted({f for v in values for f in encodings(v)}, key=len, reverse=True)

    def text(self, text: str) -> str:
        """``text`` with every secret replaced by :data:`MASK`."""
        if not self._forms:
            return text
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return _BASE64_TOKEN.sub(self._decoded_token, text)

    def _decoded_token(self, match: re.Match[str]) -> str:
        token = match.group(0)
        padded = token + "=" * (-len(token) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(padded)
            except (binascii.Error, ValueError):
                continue
            if any(raw in decoded for raw in self._raw):
                return MASK
        return token

    def details(self, value: Any) -> Any:
        """A details tree with every string scrubbed (keys too: a server may name a header)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.details(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.details(v) for v in value]
        return value


def scrub_text(text: str, secret_values: Iterable[str]) -> str:
    """``text`` with every secret, in every encoding, replaced by :data:`MASK`."""
    return Scrubber(secret_values).text(text)


def scrub(details: Mapping[str, Any], secret_values: Iterable[str]) -> dict[str, Any]:
    """A copy of ``details`` with every string scrubbed of every secret."""
    scrubbed: dict[str, Any] = Scrubber(secret_values).details(details)
    return scrubbed
