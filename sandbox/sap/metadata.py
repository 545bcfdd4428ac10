"""EDMX ($metadata) generated from the service declarations, in the shape SAP Gateway
emits for S/4HANA APIs: EDMX 1.0 / DataServiceVersion 2.0, ``sap:`` annotations, one
Association + AssociationSet per navigation property (named ``assoc_<hash>``)."""

from __future__ import annotations

import hashlib
from functools import cache
from xml.sax.saxutils import quoteattr

from sandbox.sap.edm import EntitySet, Nav, Prop, Service

EDMX_NS = "http://schemas.microsoft.com/ado/2007/06/edmx"
M_NS = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
SAP_NS = "http://www.sap.com/Protocols/SAPData"
EDM_NS = "http://schemas.microsoft.com/ado/2008/09/edm"


def association_name(entity_set: EntitySet, nav: Nav) -> str:
    digest = hashlib.sha1(f"{entity_set.name}/{nav.name}".encode()).hexdigest()  # noqa: S324
    return "assoc_" + digest[:32].upper()


def _attrs(**items: str | None) -> str:
    out = []
    for name, value in items.items():
        if value is None:
            continue
        xml_name = name.replace("__", ":").replace("_", "-") if "__" in name else name
        out.append(f"{xml_name}={quoteattr(value)}")
    return " ".join(out)


def _property(prop: Prop, is_key: bool) -> str:
    attrs = {
        "Name": prop.name,
        "Type": prop.type,
        "Nullable": "false" if (is_key or not prop.nullable) else None,
        "MaxLength": str(prop.max_length) if prop.max_length is not None else None,
        "Precision": str(prop.precision) if prop.precision is not None else None,
        "Scale": str(prop.scale) if prop.scale is not None else None,
        "sap__display_format": prop.display_format,
        "sap__label": prop.label or prop.name,
        "sap__creatable": "false" if prop.readonly else None,
        "sap__updatable": "false" if prop.readonly or is_key else None,
    }
    if prop.codes == "currency" or prop.name == "TransactionCurrency":
        attrs["sap__semantics"] = "currency-code"
    return f"<Property {_attrs(**attrs)}/>"


def _entity_type(svc: Service, es: EntitySet) -> list[str]:
    lines = [
        f'<EntityType Name="{es.type_name}" sap:label={quoteattr(es.label or es.name)} '
        'sap:content-version="1">'
    ]
    lines.append("<Key>" + "".join(f'<PropertyRef Name="{k}"/>' for k in es.keys) + "</Key>")
    for prop in es.props:
        lines.append(_property(prop, prop.name in es.keys))
    for nav in es.navs:
        assoc = association_name(es, nav)
        lines.append(
            f'<NavigationProperty Name="{nav.name}" Relationship="{svc.namespace}.{assoc}" '
            f'FromRole="FromRole_{assoc}" ToRole="ToRole_{assoc}"/>'
        )
    lines.append("</EntityType>")
    return lines


def _association(svc: Service, es: EntitySet, nav: Nav) -> str:
    assoc = association_name(es, nav)
    target = svc.sets[nav.target]
    return (
        f'<Association Name="{assoc}" sap:content-version="1">'
        f'<End Type="{svc.namespace}.{es.type_name}" Multiplicity="1" Role="FromRole_{assoc}"/>'
        f'<End Type="{svc.namespace}.{target.type_name}" '
        f'Multiplicity="{"*" if nav.many else "0..1"}" Role="ToRole_{assoc}"/>'
        "</Association>"
    )


def _container(svc: Service) -> list[str]:
    lines = [
        f'<EntityContainer Name="{svc.container}" m:IsDefaultEntityContainer="true" '
        'sap:message-scope-supported="true" sap:supported-formats="atom json xlsx">'
    ]
    for es in svc.sets.values():
        flags = ""
        if not es.creatable:
            flags += ' sap:creatable="false"'
        if not es.updatable:
            flags += ' sap:updatable="false"'
        if not es.deletable:
            flags += ' sap:deletable="false"'
        lines.append(
            f'<EntitySet Name="{es.name}" EntityType="{svc.namespace}.{es.type_name}"'
            f'{flags} sap:searchable="true" sap:content-version="1"/>'
        )
    for es in svc.sets.values():
        for nav in es.navs:
            assoc = association_name(es, nav)
            lines.append(
                f'<AssociationSet Name="{assoc}" Association="{svc.namespace}.{assoc}" '
                'sap:creatable="false" sap:updatable="false" sap:deletable="false" '
                'sap:content-version="1">'
                f'<End EntitySet="{es.name}" Role="FromRole_{assoc}"/>'
                f'<End EntitySet="{nav.target}" Role="ToRole_{assoc}"/>'
                "</AssociationSet>"
            )
    lines.append("</EntityContainer>")
    return lines


@cache
def _body(svc_name: str, hub_id_field: str) -> tuple[str, str]:
    from sandbox.sap.services import services_for

    svc = services_for(hub_id_field)[svc_name]
    head = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<edmx:Edmx Version="1.0" xmlns:edmx="{EDMX_NS}" xmlns:m="{M_NS}" xmlns:sap="{SAP_NS}">',
        '<edmx:Reference Uri="../../../sap/opu/odata/IWFND/CATALOGSERVICE;v=2/Vocabularies'
        "(TechnicalName='%2FIWBEP%2FVOC_COMMON',Version='0001',SAP__Origin='LOCAL')/$value\" "
        'xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">'
        '<edmx:Include Namespace="com.sap.vocabularies.Common.v1" Alias="Common"/>'
        "</edmx:Reference>",
        '<edmx:DataServices m:DataServiceVersion="2.0">',
        f'<Schema Namespace="{svc.namespace}" xml:lang="en" sap:schema-version="1" '
        f'xmlns="{EDM_NS}">',
    ]
    body: list[str] = []
    for es in svc.sets.values():
        body.extend(_entity_type(svc, es))
    for es in svc.sets.values():
        body.extend(_association(svc, es, nav) for nav in es.navs)
    body.extend(_container(svc))
    prefix = "\n".join(head + body)
    suffix = "</Schema>\n</edmx:DataServices>\n</edmx:Edmx>\n"
    return prefix, suffix


def metadata_xml(svc: Service, service_root: str, hub_id_field: str = "YY1_HubId") -> bytes:
    """The $metadata document; ``service_root`` goes into the atom self links as on S/4;
    the hub id's extension field is declared as ``hub_id_field``."""
    prefix, suffix = _body(svc.name, hub_id_field)
    links = (
        f'<atom:link rel="self" href={quoteattr(service_root + "$metadata")} '
        'xmlns:atom="http://www.w3.org/2005/Atom"/>\n'
        f'<atom:link rel="latest-version" href={quoteattr(service_root + "$metadata")} '
        'xmlns:atom="http://www.w3.org/2005/Atom"/>\n'
    )
    return (prefix + "\n" + links + suffix).encode()
