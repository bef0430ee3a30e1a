"""JSON over the exporter's one HTTP transport (transport.py), for the ``controller`` and
``cloud`` collectors: the client they share per collection, and a request whose 2xx answer is
parsed as JSON. Deadline, size cap, TLS, redirects, Retry-After and the wording of failures
are the transport's."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import TLSConfig, redact_url
from ..transport import Limits, TransportError, fetch
from ..transport import new_client as new_transport_client
from .base import Deadline, FailureKind

if TYPE_CHECKING:
    import httpx  # imported by transport.new_client (transport.py's module doc)

@dataclass(frozen=True)
class JSONAnswer:
    status: int
    body: Any
    #: The answer's ``Date`` header, if any.
    date: str | None


def new_client(tls: TLSConfig) -> httpx.AsyncClient:
    """A client for one collection, verifying TLS per the module (on by default, with an
    optional CA file). Use it as ``async with``."""
    return new_transport_client(tls.ca_file, verify=not tls.insecure_skip_verify,
                                headers={"Accept": "application/json"})


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    auth: tuple[str, str] | None = None,
) -> JSONAnswer:
    """Send one request and parse the 2xx answer as JSON. Raises transport.HTTPStatusError
    for other statuses and a CollectorError for everything else."""
    answer = await fetch(client, method, url, Limits(deadline, max_bytes),
                         headers=headers, json_body=json_body, auth=auth)
    what = f"{method} {redact_url(url)}"
    try:
        parsed = json.loads(answer.body.decode("utf-8"))
    except UnicodeDecodeError:
        raise TransportError(f"{what}: answer is not UTF-8 text",
                             kind=FailureKind.PARSE) from None
    except json.JSONDecodeError as exc:
        raise TransportError(
            f"{what}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            kind=FailureKind.PARSE,
        ) from None
    if isinstance(parsed, float) and not math.isfinite(parsed):
        raise TransportError(f"{what}: invalid JSON (not a document)", kind=FailureKind.PARSE)
    return JSONAnswer(answer.status, parsed, answer.date)
