"""OData v2 ``$batch``: multipart/mixed parsing and the response SAP Gateway sends.

Retrieve operations stand alone; change sets are atomic - if one operation in a change set
fails, nothing of it is committed and the change set is answered by that single error
response in place of the nested multipart (which is what OData v2 clients, pyodata
included, expect).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from sandbox.sap.errors import INVALID_BODY, SapError
from sandbox.sap.handlers import Op, Result

_BOUNDARY = re.compile(r'boundary\s*=\s*"?([^";]+)"?', re.IGNORECASE)


@dataclass
class ChangeSet:
    ops: list[Op] = field(default_factory=list)


BatchPart = Op | ChangeSet


def boundary_of(content_type: str) -> str:
    match = _BOUNDARY.search(content_type or "")
    if not match:
        raise SapError(400, INVALID_BODY, "Batch request has no multipart boundary")
    return match.group(1).strip()


def _split(body: str, boundary: str) -> list[str]:
    delim, close = f"--{boundary}", f"--{boundary}--"
    parts: list[str] = []
    current: list[str] | None = None
    for line in body.split("\n"):
        bare = line.rstrip("\r").rstrip()
        if bare == close:
            if current is not None:
                parts.append("\n".join(current))
            return parts
        if bare == delim:
            if current is not None:
                parts.append("\n".join(current))
            current = []
        elif current is not None:
            current.append(line.rstrip("\r"))
    raise SapError(400, INVALID_BODY, "Batch request is missing its closing boundary")


def _headers_and_rest(text: str) -> tuple[dict[str, str], str]:
    lines = text.split("\n")
    headers: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].strip() == "" and not headers:
        i += 1  # tolerate leading blank lines
    while i < len(lines) and lines[i].strip():
        name, _, value = lines[i].partition(":")
        headers[name.strip().lower()] = value.strip()
        i += 1
    return headers, "\n".join(lines[i + 1 :])


def _parse_http(text: str) -> Op:
    lines = text.split("\n")
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines):
        raise SapError(400, INVALID_BODY, "Empty operation in batch request")
    parts = lines[i].split()
    if len(parts) < 2:
        raise SapError(400, INVALID_BODY, f"Invalid request line in batch: {lines[i]!r}")
    method, target = parts[0].upper(), parts[1]
    headers, body = _headers_and_rest("\n".join(lines[i + 1 :]))
    path, _, query = target.partition("?")
    return Op(method, path, query, headers, body.strip().encode())


def parse_batch(body: bytes, content_type: str) -> list[BatchPart]:
    text = body.decode("utf-8")
    out: list[BatchPart] = []
    for part in _split(text, boundary_of(content_type)):
        headers, rest = _headers_and_rest(part)
        ctype = headers.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            changeset = ChangeSet()
            for sub in _split(rest, boundary_of(ctype)):
                _, http = _headers_and_rest(sub)
                op = _parse_http(http)
                if op.method == "GET":
                    raise SapError(400, INVALID_BODY, "GET is not allowed inside a change set")
                changeset.ops.append(op)
            out.append(changeset)
        else:
            out.append(_parse_http(rest))
    return out


def _http_part(result: Result) -> str:
    try:
        reason = HTTPStatus(result.status).phrase
    except ValueError:
        reason = ""
    body = result.body.decode("utf-8")
    lines = [f"HTTP/1.1 {result.status} {reason}"]
    headers = dict(result.headers)
    headers["content-length"] = str(len(result.body))
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    inner = "\r\n".join(lines) + "\r\n\r\n" + body
    return (
        "Content-Type: application/http\r\n"
        f"Content-Length: {len(inner.encode())}\r\n"
        "content-transfer-encoding: binary\r\n\r\n" + inner
    )


def run_batch(
    parts: list[BatchPart],
    run_op: Callable[[Op], Result],
    run_changeset: Callable[[list[Op]], list[Result] | Result],
) -> tuple[str, bytes]:
    """Execute parts in order and build the multipart response (content type, body)."""
    outer = f"batch_{uuid.uuid4()}"
    chunks: list[str] = []
    for part in parts:
        if isinstance(part, Op):
            chunks.append(f"--{outer}\r\n" + _http_part(run_op(part)))
            continue
        results = run_changeset(part.ops)
        if isinstance(results, Result):
            chunks.append(f"--{outer}\r\n" + _http_part(results))
            continue
        inner = f"changeset_{uuid.uuid4()}"
        nested = "".join(f"--{inner}\r\n" + _http_part(r) + "\r\n" for r in results)
        nested += f"--{inner}--\r\n"
        chunks.append(
            f"--{outer}\r\nContent-Type: multipart/mixed; boundary={inner}\r\n"
            f"Content-Length: {len(nested.encode())}\r\n\r\n" + nested
        )
    body = "\r\n".join(chunks) + f"\r\n--{outer}--\r\n"
    return f"multipart/mixed; boundary={outer}", body.encode()
