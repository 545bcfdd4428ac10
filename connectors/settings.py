"""Connector settings, each environment variable declared once, on its settings field.

A connector's settings dataclass says, per field, which environment variable sets it::

    url: str = field(metadata=env_var("WMS_URL", required=True))
    api_key: str = field(metadata=env_var("WMS_API_KEY", secret=True))
    ca_bundle: str | None = field(default=None, metadata=ca_bundle_env())

``from_env`` reads the settings with :func:`read_settings`, the registry's marker (the
variable whose presence says a system is configured) is the one ``required`` variable,
and the Dagster resources derive their fields and ``env_names`` from :func:`declared`.

Reading rules (those every connector's ``from_env`` followed by hand): a ``required``
variable that is absent raises ``KeyError`` naming it; any other variable that is absent
or empty leaves the field's default (a field without a default gets ``""``); ``parse``
turns the text into the field's value, or ``None`` for "unset" (the default again).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

#: A PEM file trusted for TLS, shared by every HTTP connector (enterprises' private CAs).
CA_BUNDLE = "HUB_CA_BUNDLE"
#: Seconds of silence after which any connector call is abandoned (and retried when the
#: operation may be retried); one setting for every system.
TIMEOUT_VARIABLE = "HUB_HTTP_TIMEOUT"

_KEY = "connectors.env"

T = TypeVar("T")


@dataclass(frozen=True)
class EnvSetting:
    """How one settings field is read from the environment."""

    variable: str
    required: bool = False
    #: a credential: registered as a secret by the connector, bound with a secret store
    #: (Dagster ``EnvVar``) in production
    secret: bool = False
    doc: str = ""
    parse: Callable[[str], Any] | None = None


def env_var(
    variable: str,
    *,
    required: bool = False,
    secret: bool = False,
    doc: str = "",
    parse: Callable[[str], Any] | None = None,
) -> dict[str, EnvSetting]:
    """``metadata=`` of a settings field read from ``variable``."""
    return {_KEY: EnvSetting(variable, required, secret, doc, parse)}


def parse_seconds(variable: str, raw: str, *, zero_ok: bool, expected: str) -> float | None:
    """Seconds read from ``variable``; ``None`` when blank. Anything but a finite number
    in range (0 allowed only with ``zero_ok``) is a configuration error that names the
    variable and says what it ``expected``, never a silent fallback."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
        raise ValueError(f"{variable}={raw!r}: {expected}")
    return value


def parse_timeout(raw: str) -> float | None:
    """Seconds of ``HUB_HTTP_TIMEOUT``."""
    return parse_seconds(
        TIMEOUT_VARIABLE, raw, zero_ok=False, expected="give a positive number of seconds"
    )


def timeout_env(doc: str = "seconds of silence before a call is abandoned") -> dict[str, Any]:
    """``metadata=`` of a connector's ``timeout`` field (``HUB_HTTP_TIMEOUT``)."""
    return env_var(TIMEOUT_VARIABLE, doc=doc, parse=parse_timeout)


#: How far (seconds) each incremental read starts before its cursor, by default.
CURSOR_OVERLAP_SECONDS = 300.0


def cursor_overlap_env(variable: str) -> dict[str, Any]:
    """``metadata=`` of a connector's ``cursor_overlap_seconds`` field: how far before its
    cursor each incremental read starts again, so a record committed late with an earlier
    stamp is still read (re-read records are unchanged for the sync's fingerprints; a
    larger overlap costs only re-reading; 0 turns it off)."""

    def parse(raw: str) -> float | None:
        return parse_seconds(
            variable,
            raw,
            zero_ok=True,
            expected="give the seconds (0 or more) each incremental read re-reads before "
            "its cursor",
        )

    return env_var(
        variable,
        parse=parse,
        doc=f"seconds each incremental read re-reads before its cursor (default "
        f"{CURSOR_OVERLAP_SECONDS:g})",
    )


def parse_ca_bundle(raw: str) -> str | None:
    """``HUB_CA_BUNDLE``: the path of a PEM file holding at least one certificate;
    ``None`` when blank (the system trust store). A missing or unreadable file, or one
    without a certificate, is refused here, naming the variable: it used to surface as a
    FileNotFoundError traceback from deep inside the TLS set-up of the first call."""
    raw = raw.strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    fix = "point it at a PEM bundle of the CAs to trust, or unset it for the system store"
    try:
        with path.open("rb") as pem:
            head = pem.read(1 << 20)
    except OSError as exc:
        raise ValueError(f"{CA_BUNDLE}={raw!r}: {exc.strerror or exc}; {fix}") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise ValueError(f"{CA_BUNDLE}={raw!r} holds no PEM certificate; {fix}")
    return str(path)


def ca_bundle_env() -> dict[str, Any]:
    """``metadata=`` of a connector's ``ca_bundle`` field (``HUB_CA_BUNDLE``)."""
    return env_var(CA_BUNDLE, doc="PEM bundle trusted for TLS", parse=parse_ca_bundle)


def same_as(settings_cls: type[Any], name: str) -> dict[str, EnvSetting]:
    """``metadata=`` of a field read from the same variable as ``settings_cls``'s field
    ``name`` (another reader of the same system)."""
    return {_KEY: declared(settings_cls)[name]}


def declared(settings_cls: type[Any]) -> dict[str, EnvSetting]:
    """Settings field -> how it is read, in field order, for the fields that are read
    from the environment."""
    out: dict[str, EnvSetting] = {}
    for f in dataclasses.fields(settings_cls):
        setting = f.metadata.get(_KEY)
        if setting is not None:
            out[f.name] = setting
    return out


def env_names(settings_cls: type[Any]) -> dict[str, str]:
    """Settings field -> environment variable."""
    return {name: setting.variable for name, setting in declared(settings_cls).items()}


def marker(settings_cls: type[Any]) -> str:
    """The variable without which the settings cannot be read (the system's marker)."""
    required = [s.variable for s in declared(settings_cls).values() if s.required]
    if len(required) != 1:
        raise TypeError(f"{settings_cls.__name__} must declare one required variable")
    return required[0]


def read_settings(settings_cls: type[T], env: Mapping[str, str], **given: Any) -> T:
    """``settings_cls`` from ``env`` by its declaration; ``given`` fields are taken as they
    are (values that do not come from the environment)."""
    values: dict[str, Any] = {}
    defaults = {
        f.name
        for f in dataclasses.fields(settings_cls)  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    for name, setting in declared(settings_cls).items():
        if name in given:
            continue
        raw = env[setting.variable] if setting.required else env.get(setting.variable, "")
        value = setting.parse(raw) if setting.parse is not None else raw
        if value is None or (value == "" and name in defaults):
            continue  # the field's default
        values[name] = value
    return settings_cls(**values, **given)
