"""Making text, URLs and test details safe to show: no secret in any encoding.

Two mechanisms, both structural rather than one spelling matched:

- :func:`redact_url` drops a URL's user information and masks the value of
  every query (and fragment) parameter that holds a credential, by *name*: the
  names a probe knows it sent a secret in, :data:`CREDENTIAL_PARAMETERS` and
  any credential-shaped name (``refresh_token``, ``X-Goog-Signature``...),
  whatever the value's encoding.
- :class:`Scrubber` (and :func:`scrub_text`, :func:`scrub`) replaces every
  secret value in every encoding a probe sends it in: raw, percent-encoded
  (``quote``, ``quote_plus``, yarl's query and path forms; escapes matched in
  either case, as servers re-encode them), JSON-escaped; and any base64 run
  that carries a secret at any byte offset (``Basic base64(user:password)``
  without knowing the user) or decodes to one. A server echoing a header back
  into ``Server`` or ``Content-Type`` thus shows ``[redacted]``.

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
# A name containing one of these is masked in a reported URL too (over-masking costs nothing there).
_CREDENTIAL_SHAPE = re.compile(r"token|secret|passw|signature|credential|api[-_]?key", re.IGNORECASE)
_PAIR_SEPARATOR = re.compile(r"([&;])")
_PERCENT_ESCAPE = re.compile(r"(%[0-9A-Fa-f]{2})")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{4,}={0,2}")
_TO_URLSAFE = str.maketrans("+/", "-_")
# A base64 fragment shorter than this (36 bits) could turn up by chance in an unrelated token.
_MIN_BASE64_CORE = 6


def redact_url(url: str, secret_parameters: Iterable[str] = ()) -> str:
    """``url`` without user information, the values of credential parameters masked.

    ``secret_parameters`` names the parameters the caller put a secret in (compared
    case-insensitively, after percent-decoding); an unparseable URL is masked whole.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    names = set(secret_parameters)
    netloc = parts.netloc.rpartition("@")[2]
    # OAuth's implicit flow puts access_token in the fragment.
    fragment = _masked_pairs(parts.fragment, names) if "=" in parts.fragment else parts.fragment
    return urlunsplit(
        parts._replace(netloc=netloc, query=_masked_pairs(parts.query, names), fragment=fragment)
    )


def is_credential_parameter(name: str, secret_parameters: Iterable[str] = ()) -> bool:
    """True for a parameter name that holds a credential (percent-decoded, any case)."""
    lowered = unquote_plus(name).lower()
    return (
        lowered in CREDENTIAL_PARAMETERS
        or lowered in {n.lower() for n in secret_parameters}
        or bool(_CREDENTIAL_SHAPE.search(lowered))
    )


def _masked_pairs(query: str, names: set[str]) -> str:
    items = _PAIR_SEPARATOR.split(query)
    return "".join(_masked(item, names) for item in items)


def _masked(item: str, names: set[str]) -> str:
    name, sep, _ = item.partition("=")
    return f"{name}={MASK}" if sep and is_credential_parameter(name, names) else item


def encodings(value: str) -> set[str]:
    """The spellings of a secret a probe may have sent: raw, percent-encoded, JSON, base64."""
    from yarl import URL  # aiohttp's URL type: how the http probe encodes what it sends

    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        URL.build(query={"k": value}).raw_query_string.removeprefix("k="),
        URL.build(path="/" + value).raw_path.removeprefix("/"),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        base64.b64encode(value.encode()).decode(),
        base64.urlsafe_b64encode(value.encode()).decode(),
    }
    forms |= {f.rstrip("=") for f in forms}
    return {f for f in forms if len(f) >= MIN_SECRET}


def _pattern(form: str) -> str:
    """A regex for ``form`` whose percent escapes match in either case (``%2F``, ``%2f``)."""
    pieces = _PERCENT_ESCAPE.split(form)
    return "".join(
        "%" + "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in piece[1:])
        if _PERCENT_ESCAPE.fullmatch(piece)
        else re.escape(piece)
        for piece in pieces
    )


def _base64_cores(data: bytes) -> set[str]:
    """The base64 characters of ``data`` that are the same wherever it sits in a longer
    encoded text: one spelling per byte offset modulo 3, per alphabet.

    The characters that also hold bits of the bytes before or after are left out.
    """
    cores: set[str] = set()
    for shift in range(3):
        chars = base64.b64encode(bytes(shift) + data).decode()
        first = -(-8 * shift // 6)  # ceil: the first character with none of the shift's bits
        core = chars[first : 8 * (shift + len(data)) // 6]
        if len(core) >= _MIN_BASE64_CORE:
            cores |= {core, core.translate(_TO_URLSAFE)}
    return cores


class Scrubber:
    """Removes a connector's secrets, in every encoding, from texts and details."""

    def __init__(self, secret_values: Iterable[str]) -> None:
        values = {v for v in secret_values if len(v) >= MIN_SECRET}
        forms = sorted({f for v in values for f in encodings(v)}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(_pattern, forms))) if forms else None
        # What a probe puts inside base64: the value, or its form-encoding (OAuth client Basic).
        inner = {v.encode() for v in values} | {quote(v, safe="").encode() for v in values}
        self._inner = sorted(inner, key=len, reverse=True)
        self._cores = sorted({c for raw in inner for c in _base64_cores(raw)}, key=len, reverse=True)

    def text(self, text: str) -> str:
        """``text`` with every secret replaced by :data:`MASK`."""
        if self._pattern is None:
            return text
        return _BASE64_RUN.sub(self._base64_run, self._pattern.sub(MASK, text))

    def _base64_run(self, match: re.Match[str]) -> str:
        token = match.group(0)
        if any(core in token for core in self._cores):
            return MASK
        # Secrets too short for a safe core: decode the whole run instead.
        padded = token + "=" * (-len(token) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(padded)
            except (binascii.Error, ValueError):
                continue
            if any(raw in decoded for raw in self._inner):
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
