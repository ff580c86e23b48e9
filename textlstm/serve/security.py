"""Who may use the server, checked before a request reaches a route (ASGI middleware, `install`):

- Host: the name the request was sent to must be one this server answers to, else 400. A page on
  evil.example whose name its owner then points at 127.0.0.1 (DNS rebinding) is, to the browser,
  the same site as evil.example and may read the answers; its requests say `Host: evil.example`.
- Origin: a browser request from another site's page (an Origin that is not this server's) gets
  403 unless `cors_origins` names that origin; those get CORS headers (Starlette's middleware).
- API key: with keys set, every route but OPEN_PATHS needs `Authorization: Bearer KEY`, compared
  with every key in constant time, else 401. The key's number becomes the request's
  `client_key` (request.state), to which its kept conversations and its sequence quota belong.
- Content type: a POST body must be application/json, else 415 (a page on another site can send
  text/plain without asking the browser's leave first, never application/json).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse

from textlstm.errors import TextlstmError
from textlstm.serve.errors import error_body

OPEN_PATHS = frozenset({"/", "/health", "/metrics", "/metrics.json"})  # answered without a key
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
EVERY_ADDRESS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True)
class AccessSettings:
    api_keys: tuple[str, ...] = ()  # none: no key asked
    cors_origins: tuple[str, ...] = ()  # origins ("https://app.example") whose pages may call the API; "*": any
    allowed_hosts: tuple[str, ...] = ()  # Host names answered beside the addresses served; "*": any
    host: str = "127.0.0.1"  # the address listened on: its names are the Host names answered


def install(app, access: AccessSettings) -> None:
    """Add the checks to a Starlette or FastAPI app (the last added runs first)."""
    app.add_middleware(_KeyAndBodyChecks, keys=APIKeys(access.api_keys))
    if access.cors_origins:
        origins = [_origin(o) for o in access.cors_origins]
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(_SiteChecks, hosts=HostNames(access.host, access.allowed_hosts), origins=access.cors_origins)


def client_key(request) -> int | None:
    """The number of the API key a request came with; None when the server asks for none."""
    return getattr(request.state, "client_key", None)


def read_api_keys(path: Path) -> list[str]:
    """The keys in a file, one a line (blank lines skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise TextlstmError(
            f"cannot read the API keys in {path}: {getattr(error, 'strerror', None) or error}"
        ) from None
    keys = [line.strip() for line in lines if line.strip()]
    if not keys:
        raise TextlstmError(f"{path} holds no API key (one a line)")
    return keys


def check_origin(origin: str) -> str:
    """`origin` if it is "*" or scheme://host[:port] (no path), else a TextlstmError."""
    parts = urlsplit(origin)
    if origin != "*" and not (
        parts.scheme in ("http", "https") and parts.netloc and parts.path in ("", "/") and not parts.query
    ):
        raise TextlstmError(
            f"--cors-origin {origin!r}: give an origin as a browser sends it, e.g. https://app.example:8443, or *"
        )
    return origin


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only: a server there cannot be reached from others."""
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- the parts ------------------------------------------------------------------------------------


class APIKeys:
    """The keys clients may send, held as SHA-256 digests, so that compare_digest always compares equal lengths."""

    def __init__(self, keys: tuple[str, ...]):
        self._digests = [_digest(key) for key in dict.fromkeys(keys)]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def number_of(self, key: str) -> int | None:
        """Which key `key` is, or None. Every key is compared, whichever matches: the time taken says nothing."""
        given = _digest(key)
        found = None
        for number, digest in enumerate(self._digests):
            if hmac.compare_digest(given, digest):
                found = number
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class HostNames:
    """The Host names a server listening on `host` answers to: that address, the loopback names when
    it is loopback, any address and the loopback names when it is every interface (0.0.0.0 or ::),
    and the names in `allowed`. The port is not checked: an attacker's page reaches this port anyway."""

    def __init__(self, host: str, allowed: tuple[str, ...] = ()):
        self.anything = "*" in allowed
        self.every_address = host in EVERY_ADDRESS
        self.names = {_bare_name(name) for name in (host, *allowed)}
        if self.every_address or is_loopback(host):
            self.names |= LOOPBACK_NAMES

    def answers(self, host_header: str) -> bool:
        name = _bare_name(_without_port(host_header))
        return self.anything or name in self.names or (self.every_address and _is_address(name))


def _without_port(host_header: str) -> str:
    value = host_header.strip()
    if value.startswith("["):  # [::1]:8000
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def _bare_name(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _origin(origin: str) -> str:
    return origin if origin == "*" else origin.rstrip("/").lower()


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _refuse(scope, receive, send, status: int, message: str, code: str, headers: dict | None = None) -> None:
    response = JSONResponse(
        error_body(message, "invalid_request_error", None, code), status_code=status, headers=headers
    )
    await response(scope, receive, send)


class _SiteChecks:
    """The Host and Origin checks: outside the CORS middleware, which only adds headers."""

    def __init__(self, app, hosts: HostNames, origins: tuple[str, ...]):
        self.app = app
        self.hosts = hosts
        self.any_origin = "*" in origins
        self.origins = {_origin(o) for o in origins}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = _header(scope, b"host")
        if host is not None and not self.hosts.answers(host):
            message = (
                f"this server does not answer to the Host {_without_port(host)!r}: --allowed-host NAME adds a name"
            )
            return await _refuse(scope, receive, send, 400, message, "host_not_allowed")
        origin = _header(scope, b"origin")
        if origin is not None and not self._allows(origin, host):
            message = f"requests from pages on {origin} are refused: --cors-origin {origin} allows them"
            return await _refuse(scope, receive, send, 403, message, "origin_not_allowed")
        await self.app(scope, receive, send)

    def _allows(self, origin: str, host: str | None) -> bool:
        """The server's own pages (the origin is the address the request was sent to), or an allowed origin."""
        own = host is not None and urlsplit(origin).netloc.lower() == host.strip().lower()
        return own or self.any_origin or _origin(origin) in self.origins


class _KeyAndBodyChecks:
    """The API key, then a POST body's content type; the key's number goes to scope["state"]["client_key"]."""

    def __init__(self, app, keys: APIKeys):
        self.app = app
        self.keys = keys

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        number = None
        if self.keys and scope["path"] not in OPEN_PATHS:
            number = self._key_number(scope)
            if number is None:
                message = "a valid API key is needed: send it as Authorization: Bearer KEY"
                return await _refuse(
                    scope, receive, send, 401, message, "invalid_api_key", {"WWW-Authenticate": "Bearer"}
                )
        if scope["method"] == "POST" and not _is_json(_header(scope, b"content-type")):
            message = "the request body must be JSON, sent with Content-Type: application/json"
            return await _refuse(scope, receive, send, 415, message, "unsupported_media_type")
        scope.setdefault("state", {})["client_key"] = number
        await self.app(scope, receive, send)

    def _key_number(self, scope) -> int | None:
        scheme, _, key = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self.keys.number_of(key.strip())


def _is_json(content_type: str | None) -> bool:
    return (content_type or "").partition(";")[0].strip().lower() == "application/json"
