"""SAP Gateway's error body: JSON for every error a JSON client gets (including the ones
the fault injection middleware fabricates), and the same content as XML
(:func:`sandbox.sap.atom.error_xml`) for a client that asked for XML or Atom."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

#: Codes SAP Gateway uses for the framework-level failures (message class /IWBEP/CM_MGW_RT).
RESOURCE_NOT_FOUND = "/IWBEP/CM_MGW_RT/020"
INVALID_KEY = "/IWBEP/CM_MGW_RT/021"
ENTITY_NOT_FOUND = "/IWBEP/CM_MGW_RT/022"
INVALID_QUERY = "/IWBEP/CM_MGW_RT/004"
INVALID_BODY = "/IWBEP/CM_MGW_RT/024"
ETAG_MISMATCH = "/IWBEP/CM_MGW_RT/190"
ETAG_MISSING = "/IWBEP/CM_MGW_RT/191"
NOT_ALLOWED = "/IWBEP/CM_MGW_RT/101"
DUPLICATE = "/IWBEP/CM_MGW_RT/030"
BUSINESS = "/IWBEP/CX_MGW_BUSI_EXCEPTION"
TECHNICAL = "/IWBEP/CX_MGW_TECH_EXCEPTION"
THROTTLED = "/IWFND/CM_BEC/026"
UNAVAILABLE = "/IWFND/CM_BEC/021"


@dataclass
class Detail:
    code: str
    message: str
    target: str = ""
    severity: str = "error"

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "propertyref": self.target,
            "severity": self.severity,
            "target": self.target,
            "transition": False,
        }


@dataclass
class SapError(Exception):
    """Raised by handlers; rendered as SAP's error JSON with ``status``."""

    status: int
    code: str
    message: str
    details: list[Detail] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def error_payload(
    code: str,
    message: str,
    details: list[Detail] | None = None,
    service: str = "",
    component: str = "",
) -> dict[str, Any]:
    """The error as SAP Gateway's JSON has it; the XML error is rendered from the same
    data, so both formats always say the same."""
    now = dt.datetime.now(dt.UTC)
    return {
        "error": {
            "code": code,
            "message": {"lang": "en", "value": message},
            "innererror": {
                "application": {
                    "component_id": component,
                    "service_namespace": "/SAP/",
                    "service_id": service,
                    "service_version": "0001",
                },
                "transactionid": uuid.uuid4().hex.upper(),
                "timestamp": now.strftime("%Y%m%d%H%M%S.") + f"{now.microsecond:06d}0",
                "Error_Resolution": {
                    "SAP_Transaction": (
                        "For backend administrators: use ADT feed reader "
                        '"SAP Gateway Error Log" or run transaction /IWFND/ERROR_LOG on SAP '
                        "Gateway hub system and search for entries with the timestamp above "
                        "for more details"
                    ),
                    "SAP_Note": (
                        "See SAP Note 1797736 for error analysis "
                        "(https://service.sap.com/sap/support/notes/1797736)"
                    ),
                },
                "errordetails": [d.as_json() for d in (details or [Detail(code, message)])],
            },
        }
    }


def fault_error_body(status: int, message: str) -> tuple[str, bytes]:
    """``error_body`` for :class:`sandbox.faults.FaultInjectionMiddleware`."""
    code = {429: THROTTLED, 503: UNAVAILABLE}.get(status, TECHNICAL)
    return "application/json", json.dumps(error_payload(code, message)).encode()
