"""OData V2 Atom/XML: what SAP Gateway answers a client that does not ask for JSON.

SAP Gateway's default format is Atom (``$format=json`` or ``Accept: application/json``
give JSON), so a client that forgets to ask for JSON gets XML from a real system. The
handlers render verbose JSON only; this module renders the same payload as Atom - feeds,
entries, the AtomPub service document, a single property - and SAP's XML error, typing
values from the entity types (``m:type``, ``m:null``) so an Atom client reads what a JSON
client reads. Documents are built as text: the element order and the ``d:``/``m:``
prefixes are part of what Atom clients (and people) expect to see.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape, quoteattr

from sandbox.sap.edm import EntitySet, Prop, Service, ms_to_datetime
from sandbox.sap.errors import INVALID_QUERY, SapError
from sandbox.sap.handlers import Result
from sandbox.sap.uri import parse_path

ATOM_NS = "http://www.w3.org/2005/Atom"
APP_NS = "http://www.w3.org/2007/app"
D_NS = "http://schemas.microsoft.com/ado/2007/08/dataservices"
M_NS = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
SAP_NS = "http://www.sap.com/Protocols/SAPData"
SCHEME = "http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"
RELATED = "http://schemas.microsoft.com/ado/2007/08/dataservices/related/"

FEED_TYPE = "application/atom+xml;type=feed; charset=utf-8"
ENTRY_TYPE = "application/atom+xml;type=entry; charset=utf-8"
SERVICE_TYPE = "application/atomsvc+xml; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"

JSON, ATOM = "json", "atom"
#: ``$format`` values and the format each names (SAP Gateway accepts these for OData V2)
FORMATS = {"json": JSON, "xml": ATOM, "atom": ATOM}
#: media types in Accept and the format each asks for; ``*/*`` is "no preference",
#: which SAP Gateway answers with its default, Atom
_MEDIA = {
    "application/json": JSON,
    "application/atom+xml": ATOM,
    "application/atomsvc+xml": ATOM,
    "application/xml": ATOM,
    "text/xml": ATOM,
}
_WILDCARDS = ("*/*", "application/*")

_DECL = '<?xml version="1.0" encoding="utf-8"?>'
_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")


# --------------------------------------------------------------------------- negotiation


def negotiate(format_param: str | None, accept: str | None, *, batch_part: bool = False) -> str:
    """JSON or ATOM for a request: ``$format`` first, then Accept. A request with no
    preference gets Atom, as from SAP Gateway - except a ``$batch`` part, which stays
    JSON unless it asks for XML (the emulator's batch clients all read JSON parts)."""
    if format_param is not None:
        chosen = FORMATS.get(format_param.strip().lower())
        if chosen is None:
            raise SapError(
                400,
                INVALID_QUERY,
                f"Invalid value '{format_param}' for system query option $format",
            )
        return chosen
    choice = _accepted(accept or "")
    if choice is not None:
        return choice
    return JSON if batch_part else ATOM


def _accepted(accept: str) -> str | None:
    """The format the most preferred media type of an Accept header names (the first
    listed wins a tie); None when only wildcards or nothing known is accepted."""
    best: tuple[float, int, str] | None = None
    for index, item in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in item.split(";"))
        media = media.lower()
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        chosen = _MEDIA.get(media)
        if chosen is None or quality <= 0:
            continue
        if best is None or (quality, -index) > (best[0], best[1]):
            best = (quality, -index, chosen)
    return best[2] if best else None


# --------------------------------------------------------------------------- conversion


def atom_result(svc: Service, path: str, result: Result, root: str) -> Result:
    """``result`` (a handler's JSON answer to ``path``) as Atom/XML; anything that is not
    JSON ($count, $metadata, $batch, empty answers) is returned as it is."""
    if not result.headers.get("content-type", "").startswith("application/json"):
        return result
    data = json.loads(result.body)["d"]
    headers = {k: v for k, v in result.headers.items() if k != "content-type"}
    resource = parse_path(svc, unquote(path))
    if data is None:  # a to-one navigation with nothing at its end
        return Result(204, headers)
    if resource.prop is not None:
        prop = resource.entity_set.prop_map[resource.prop]
        body = _DECL + _property(prop, data[prop.name], top=True)
        return Result(result.status, {**headers, "content-type": XML_TYPE}, body.encode())
    if "results" in data:
        href = path.strip("/")
        title = resource.nav or resource.entity_set.name
        body = _DECL + feed_xml(svc, data, root, href, title, top=True)
        return Result(result.status, {**headers, "content-type": FEED_TYPE}, body.encode())
    body = _DECL + entry_xml(svc, data, root, top=True)
    return Result(result.status, {**headers, "content-type": ENTRY_TYPE}, body.encode())


def _namespaces(root: str) -> str:
    return (
        f"xml:base={quoteattr(root)} xmlns={quoteattr(ATOM_NS)} "
        f"xmlns:m={quoteattr(M_NS)} xmlns:d={quoteattr(D_NS)}"
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _relative(uri: str, root: str) -> str:
    return uri[len(root) :] if uri.startswith(root) else uri


def feed_xml(
    svc: Service, data: dict[str, Any], root: str, href: str, title: str, *, top: bool = False
) -> str:
    """A feed: its id, title and self link, ``m:count`` ($inlinecount=allpages), the
    entries, and the next page's link (``__next``)."""
    head = f"<feed {_namespaces(root)}>" if top else "<feed>"
    parts = [
        head,
        f"<id>{escape(root + href)}</id>",
        f'<title type="text">{escape(title)}</title>',
        f"<updated>{_now()}</updated>",
        "<author><name/></author>",
        f'<link href={quoteattr(href)} rel="self" title={quoteattr(title)}/>',
    ]
    if "__count" in data:
        parts.append(f"<m:count>{escape(str(data['__count']))}</m:count>")
    parts += [entry_xml(svc, entity, root) for entity in data["results"]]
    if data.get("__next"):
        parts.append(f'<link href={quoteattr(_relative(data["__next"], root))} rel="next"/>')
    parts.append("</feed>")
    return "".join(parts)


def _entity_sets_by_type(svc: Service) -> dict[str, EntitySet]:
    return {f"{svc.namespace}.{es.type_name}": es for es in svc.sets.values()}


def entry_xml(svc: Service, entity: dict[str, Any], root: str, *, top: bool = False) -> str:
    """An entry: id, title, category (the entity type), edit link, a link per navigation
    property (with the related entries inline when expanded), and its properties."""
    meta = entity["__metadata"]
    es = _entity_sets_by_type(svc)[meta["type"]]
    href = _relative(meta["uri"], root)
    attrs = f" {_namespaces(root)}" if top else ""
    if meta.get("etag"):
        attrs += f" m:etag={quoteattr(meta['etag'])}"
    parts = [
        f"<entry{attrs}>",
        f"<id>{escape(meta['id'])}</id>",
        f'<title type="text">{escape(href)}</title>',
        f"<updated>{_now()}</updated>",
        "<author><name/></author>",
        f"<category term={quoteattr(meta['type'])} scheme={quoteattr(SCHEME)}/>",
        f'<link href={quoteattr(href)} rel="edit" title={quoteattr(es.type_name)}/>',
    ]
    parts += [_nav_link(svc, es, name, entity[name], href, root) for name in _navs(es, entity)]
    props = "".join(_property(prop, entity[prop.name]) for prop in es.props if prop.name in entity)
    parts.append(f'<content type="application/xml"><m:properties>{props}</m:properties></content>')
    parts.append("</entry>")
    return "".join(parts)


def _navs(es: EntitySet, entity: dict[str, Any]) -> list[str]:
    return [nav.name for nav in es.navs if nav.name in entity]


def _nav_link(svc: Service, es: EntitySet, name: str, value: Any, href: str, root: str) -> str:
    """A navigation property's link; expanded (not ``__deferred``), it carries the related
    feed or entry in ``m:inline`` (empty when a to-one navigation leads nowhere)."""
    nav = es.nav(name)
    assert nav is not None
    kind = "feed" if nav.many else "entry"
    link = (
        f"<link href={quoteattr(f'{href}/{name}')} rel={quoteattr(RELATED + name)} "
        f'type="application/atom+xml;type={kind}" title={quoteattr(name)}'
    )
    if isinstance(value, dict) and "__deferred" in value:
        return link + "/>"
    if value is None:
        inline = "<m:inline/>"
    elif nav.many:
        inline = f"<m:inline>{feed_xml(svc, value, root, f'{href}/{name}', name)}</m:inline>"
    else:
        inline = f"<m:inline>{entry_xml(svc, value, root)}</m:inline>"
    return f"{link}>{inline}</link>"


def _property(prop: Prop, value: Any, *, top: bool = False) -> str:
    """``<d:Name>`` with the property's Edm type (Edm.String is Atom's default and goes
    unsaid, as SAP Gateway leaves it) and ``m:null="true"`` for a null."""
    attrs = f" xmlns:d={quoteattr(D_NS)} xmlns:m={quoteattr(M_NS)}" if top else ""
    if prop.type != "Edm.String":
        attrs += f" m:type={quoteattr(prop.type)}"
    if value is None:
        return f'<d:{prop.name}{attrs} m:null="true"/>'
    return f"<d:{prop.name}{attrs}>{escape(atom_value(prop, value))}</d:{prop.name}>"


def atom_value(prop: Prop, value: Any) -> str:
    """A property's JSON value as Atom's literal form: dates as ISO 8601 (Edm.DateTime
    without an offset, Edm.DateTimeOffset in UTC with ``Z``), booleans lower-case, the
    rest (decimals and Int64 already strings in JSON, Edm.Time ``PT..``, GUIDs) as is."""
    if prop.type in ("Edm.DateTime", "Edm.DateTimeOffset") and isinstance(value, str):
        match = _DATE.match(value)
        if match:
            moment = ms_to_datetime(int(match.group(1)))
            text = moment.strftime("%Y-%m-%dT%H:%M:%S")
            if moment.microsecond:
                text += f".{moment.microsecond // 1000:03d}"
            return text + ("Z" if prop.type == "Edm.DateTimeOffset" else "")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- documents


def service_document(svc: Service, root: str) -> bytes:
    """The AtomPub service document: one workspace listing every entity set as a
    collection, with SAP's creatable/updatable/deletable flags."""
    collections = "".join(
        f"<app:collection sap:creatable={_flag(es.creatable)} "
        f"sap:updatable={_flag(es.updatable)} sap:deletable={_flag(es.deletable)} "
        f'sap:content-version="1" href={quoteattr(es.name)}>'
        f'<atom:title type="text">{escape(es.label or es.name)}</atom:title>'
        f"<sap:member-title>{escape(es.type_name)}</sap:member-title>"
        "</app:collection>"
        for es in svc.sets.values()
    )
    body = (
        f"{_DECL}<app:service xml:base={quoteattr(root)} xmlns:app={quoteattr(APP_NS)} "
        f"xmlns:atom={quoteattr(ATOM_NS)} xmlns:sap={quoteattr(SAP_NS)}>"
        '<app:workspace><atom:title type="text">Data</atom:title>'
        f"{collections}</app:workspace></app:service>"
    )
    return body.encode()


def _flag(value: bool) -> str:
    return '"true"' if value else '"false"'


def error_xml(payload: dict[str, Any]) -> bytes:
    """SAP Gateway's XML error from the content of its JSON error
    (:func:`sandbox.sap.errors.error_payload`): ``code``, ``message`` with its language,
    and the ``innererror`` (application, transaction, resolution, error details)."""
    error = payload["error"]
    message = error["message"]
    inner = error["innererror"]
    parts = [
        f"{_DECL}<error xmlns={quoteattr(M_NS)}>",
        f"<code>{escape(error['code'])}</code>",
        f"<message xml:lang={quoteattr(message['lang'])}>{escape(message['value'])}</message>",
        "<innererror>",
        _elements("application", inner["application"]),
        f"<transactionid>{escape(inner['transactionid'])}</transactionid>",
        f"<timestamp>{escape(inner['timestamp'])}</timestamp>",
        _elements("Error_Resolution", inner["Error_Resolution"]),
        "<errordetails>",
        *(_elements("errordetail", d) for d in inner["errordetails"]),
        "</errordetails></innererror></error>",
    ]
    return "".join(parts).encode()


def _elements(name: str, values: dict[str, Any]) -> str:
    inner = "".join(
        f"<{key}/>" if value in ("", None) else f"<{key}>{escape(_text(value))}</{key}>"
        for key, value in values.items()
    )
    return f"<{name}>{inner}</{name}>"


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
