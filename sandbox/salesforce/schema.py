"""The sandbox org's objects and fields, with describe output.

One source of truth: the custom objects and fields are read from the metadata an admin deploys,
``deploy/salesforce/force-app/main/default`` (SFDX source format), so the org the tests run
against and the org an association sets up cannot drift apart. Only what that metadata cannot
hold is defined here: the standard fields of standard objects (``Contact.FirstName``, ``Email``),
the system fields every object has (``Id``, ``SystemModstamp``, ``IsDeleted``...) and the key
prefixes an org assigns.

Each field has the attributes ``describe`` reports and the write path checks: type, length,
createable/updateable, nillable (required on create when false and not defaulted), external id,
uniqueness, and for lookups the object they point to and their relationship name.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

# Field types whose values are strings compared case-insensitively in SOQL.
TEXT_TYPES = frozenset({"string", "email", "picklist", "textarea", "phone", "url"})
NUMBER_TYPES = frozenset({"double", "int", "currency", "percent"})


@dataclass(frozen=True)
class FieldDef:
    """One field of an sObject."""

    name: str
    type: str  # id, string, email, picklist, reference, boolean, double, date, datetime
    label: str = ""
    length: int = 0
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    external_id: bool = False
    unique: bool = False
    reference_to: str = ""
    relationship_name: str = ""
    picklist: tuple[str, ...] = ()
    auto_number: bool = False
    precision: int = 0
    scale: int = 0
    case_sensitive: bool = False
    restricted_picklist: bool = False

    @property
    def system(self) -> bool:
        """Maintained by the platform; never written by API callers."""
        return not (self.createable or self.updateable)

    def describe(self) -> dict:
        """This field as ``describe`` reports it (the keys clients read, and a few more)."""
        return {
            "name": self.name,
            "label": self.label or self.name.removesuffix("__c").replace("_", " "),
            "type": self.type,
            "length": self.length,
            "byteLength": self.length * 3,
            "precision": self.precision,
            "scale": self.scale,
            "digits": 0,
            "custom": self.name.endswith("__c"),
            "createable": self.createable,
            "updateable": self.updateable,
            "nillable": self.nillable,
            "defaultedOnCreate": self.type == "boolean" or self.system or self.auto_number,
            "externalId": self.external_id,
            "unique": self.unique,
            "caseSensitive": self.case_sensitive,
            "idLookup": self.name == "Id" or self.external_id,
            "autoNumber": self.auto_number,
            "calculated": False,
            "filterable": True,
            "sortable": self.type != "textarea",
            "referenceTo": [self.reference_to] if self.reference_to else [],
            "relationshipName": self.relationship_name or None,
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                for v in self.picklist
            ],
            "restrictedPicklist": self.restricted_picklist,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
        }


_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "double": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}


@dataclass(frozen=True)
class ObjectDef:
    """One sObject type."""

    name: str
    key_prefix: str
    label: str
    fields: tuple[FieldDef, ...]
    mergeable: bool = False
    by_lower: dict[str, FieldDef] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # SOQL and REST bodies name fields case-insensitively.
        object.__setattr__(self, "by_lower", {f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> FieldDef | None:
        """The field named ``name`` (any case), or None."""
        return self.by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        """The lookup field whose relationship name is ``name`` (``Mentor__r``), or None."""
        lowered = name.lower()
        for f in self.fields:
            if f.relationship_name and f.relationship_name.lower() == lowered:
                return f
        return None

    @property
    def field_names(self) -> list[str]:
        """Every field name, in describe order."""
        return [f.name for f in self.fields]

    def describe(self, version: str = "59.0") -> dict:
        """The ``GET /sobjects/{name}/describe`` body."""
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label + "s",
            "keyPrefix": self.key_prefix,
            "custom": self.name.endswith("__c"),
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "replicateable": True,
            "mergeable": self.mergeable,
            "fields": [f.describe() for f in self.fields],
            "childRelationships": [],
            "recordTypeInfos": [],
            "urls": {
                "sobject": f"/services/data/v{version}/sobjects/{self.name}",
                "describe": f"/services/data/v{version}/sobjects/{self.name}/describe",
                "rowTemplate": f"/services/data/v{version}/sobjects/{self.name}/{{ID}}",
            },
        }


# --- loading the metadata ------------------------------------------------------------------------

MD_NS = "{http://soap.sforce.com/2006/04/metadata}"
# The metadata in the source tree; the sandbox is used from an editable install or a checkout.
METADATA_ROOT = (
    Path(__file__).resolve().parents[2] / "deploy" / "salesforce" / "force-app" / "main" / "default"
)
# Key prefixes are the org's to assign; these are the sandbox org's (standard ones are fixed).
KEY_PREFIXES = {"Contact": "003", "Mentorship_Match__c": "a01", "Mentoring_Meeting__c": "a02"}
# Standard objects: their label, whether they can be merged, and the standard fields mentorsync
# uses, none of which a deployment creates.
STANDARD_OBJECTS: dict[str, tuple[str, bool, tuple[FieldDef, ...]]] = {
    "Contact": (
        "Contact",
        True,
        (
            FieldDef("FirstName", "string", "First Name", 40),
            FieldDef("LastName", "string", "Last Name", 80, nillable=False),
            FieldDef("Email", "email", "Email", 80),
        ),
    ),
}
# Metadata field type -> (describe type, length when the metadata gives none).
_TYPES = {
    "Text": ("string", 0),
    "TextArea": ("textarea", 255),
    "LongTextArea": ("textarea", 0),
    "Email": ("email", 80),
    "Phone": ("phone", 40),
    "Url": ("url", 255),
    "Picklist": ("picklist", 255),
    "Checkbox": ("boolean", 0),
    "Number": ("double", 0),
    "Date": ("date", 0),
    "DateTime": ("datetime", 0),
    "Lookup": ("reference", 18),
    "MasterDetail": ("reference", 18),
}


class SchemaMetadataError(RuntimeError):
    """The Salesforce metadata is missing or holds something the sandbox cannot model."""


def _system_fields(mergeable: bool = False) -> tuple[FieldDef, ...]:
    readonly = {"createable": False, "updateable": False}
    fields = [
        FieldDef("IsDeleted", "boolean", "Deleted", nillable=False, **readonly),
        FieldDef("CreatedDate", "datetime", "Created Date", nillable=False, **readonly),
        FieldDef("LastModifiedDate", "datetime", "Last Modified Date", nillable=False, **readonly),
        FieldDef("SystemModstamp", "datetime", "System Modstamp", nillable=False, **readonly),
    ]
    if mergeable:
        fields.append(
            FieldDef(
                "MasterRecordId",
                "reference",
                "Master Record ID",
                length=18,
                reference_to="Contact",
                relationship_name="MasterRecord",
                **readonly,
            )
        )
    return tuple(fields)


def _id_field() -> FieldDef:
    return FieldDef("Id", "id", "Record ID", 18, createable=False, updateable=False, nillable=False)


def _parse(path: Path) -> Element:
    try:
        return SafeET.parse(path).getroot()
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise SchemaMetadataError(f"{path}: not well-formed metadata XML ({exc})") from None


def _text(element: Element, tag: str, default: str = "") -> str:
    child = element.find(MD_NS + tag)
    return default if child is None or child.text is None else child.text.strip()


def _flag(element: Element, tag: str) -> bool:
    return _text(element, tag, "false") == "true"


def _int(element: Element, tag: str, path: Path) -> int:
    text = _text(element, tag, "0")
    if not text.isdigit():
        raise SchemaMetadataError(f"{path}: <{tag}> must be a whole number, not {text!r}")
    return int(text)


def field_from_metadata(path: Path) -> FieldDef:
    """The field a ``<Field>.field-meta.xml`` file defines."""
    root = _parse(path)
    name = _text(root, "fullName") or path.name.removesuffix(".field-meta.xml")
    kind = _text(root, "type")
    if kind not in _TYPES:
        raise SchemaMetadataError(f"{path}: field type {kind!r} is not modelled by the sandbox")
    sf_type, default_length = _TYPES[kind]
    reference_to = _text(root, "referenceTo")
    picklist: tuple[str, ...] = ()
    value_set = root.find(MD_NS + "valueSet")
    if kind == "Picklist" and value_set is not None:
        values = value_set.findall(f"{MD_NS}valueSetDefinition/{MD_NS}value")
        picklist = tuple(_text(v, "fullName") for v in values)
    return FieldDef(
        name,
        sf_type,
        _text(root, "label") or name,
        _int(root, "length", path) or default_length,
        # A master-detail field is always required; a checkbox is never null.
        nillable=not (kind in ("MasterDetail", "Checkbox") or _flag(root, "required")),
        external_id=_flag(root, "externalId"),
        unique=_flag(root, "unique"),
        case_sensitive=_flag(root, "caseSensitive"),
        reference_to=reference_to,
        # The API names the parent of a lookup after the field (Mentor__c -> Mentor__r); the
        # metadata's relationshipName is the child list on the parent's side.
        relationship_name=name.removesuffix("__c") + "__r" if reference_to else "",
        picklist=picklist,
        restricted_picklist=value_set is not None and _flag(value_set, "restricted"),
        precision=_int(root, "precision", path),
        scale=_int(root, "scale", path),
    )


def _auto_number_format(display: str, path: Path) -> str:
    """``MM-{000000}`` as a Python format (``MM-{:06d}``)."""
    match = re.fullmatch(r"([^{}]*)\{(0+)\}([^{}]*)", display)
    if match is None:
        raise SchemaMetadataError(
            f"{path}: auto-number displayFormat {display!r} is not modelled (want PREFIX-{{0000}})"
        )
    prefix, zeros, suffix = match.groups()
    return f"{prefix}{{:0{len(zeros)}d}}{suffix}"


def _name_field(root: Element, path: Path) -> tuple[FieldDef, str | None]:
    name_field = root.find(MD_NS + "nameField")
    if name_field is None:
        raise SchemaMetadataError(f"{path}: a custom object needs a <nameField>")
    label = _text(name_field, "label", "Name")
    if _text(name_field, "type") == "AutoNumber":
        fmt = _auto_number_format(_text(name_field, "displayFormat"), path)
        readonly = {"createable": False, "updateable": False}
        return FieldDef(
            "Name", "string", label, 80, nillable=False, auto_number=True, **readonly
        ), fmt
    return FieldDef("Name", "string", label, 80, nillable=False), None


def load_objects(root: Path | None = None) -> tuple[dict[str, ObjectDef], dict[str, str]]:
    """Every object of the metadata under ``root``, and the auto-number formats of their names.

    Raises :class:`SchemaMetadataError` naming the path when the metadata is missing or holds
    something the sandbox does not model.
    """
    root = root or METADATA_ROOT
    objects_dir = root / "objects"
    if not objects_dir.is_dir():
        raise SchemaMetadataError(
            f"Salesforce metadata not found at {objects_dir}: the sandbox reads its schema from "
            "the source tree's deploy/salesforce (use a checkout or `pip install -e .`)"
        )
    objects: dict[str, ObjectDef] = {}
    formats: dict[str, str] = {}
    next_prefix = len(KEY_PREFIXES) + 1
    # Known objects first, in a fixed order: Outbound Message action ids follow it.
    rank = {name: i for i, name in enumerate(KEY_PREFIXES)}
    folders = [p for p in objects_dir.iterdir() if p.is_dir()]
    for folder in sorted(folders, key=lambda p: (rank.get(p.name, len(rank)), p.name)):
        name = folder.name
        custom = sorted((folder / "fields").glob("*.field-meta.xml"))
        fields = [field_from_metadata(p) for p in custom]
        if name in STANDARD_OBJECTS:
            label, mergeable, standard = STANDARD_OBJECTS[name]
            head: tuple[FieldDef, ...] = (_id_field(), *standard)
        elif name.endswith("__c"):
            meta = folder / f"{name}.object-meta.xml"
            if not meta.is_file():
                raise SchemaMetadataError(f"{meta}: missing (a custom object needs its definition)")
            object_root = _parse(meta)
            label, mergeable = _text(object_root, "label") or name, False
            name_field, fmt = _name_field(object_root, meta)
            if fmt:
                formats[name] = fmt
            head = (_id_field(), name_field)
        else:
            raise SchemaMetadataError(f"{folder}: standard object {name} is not modelled")
        prefix = KEY_PREFIXES.get(name)
        if prefix is None:
            prefix, next_prefix = f"a{next_prefix:02d}", next_prefix + 1
        objects[name] = ObjectDef(
            name, prefix, label, (*head, *fields, *_system_fields(mergeable)), mergeable=mergeable
        )
    return objects, formats


OBJECTS, AUTO_NUMBER_FORMATS = load_objects()
CONTACT = OBJECTS["Contact"]
MATCH = OBJECTS["Mentorship_Match__c"]
MEETING = OBJECTS["Mentoring_Meeting__c"]
_BY_LOWER = {name.lower(): o for name, o in OBJECTS.items()}
_BY_PREFIX = {o.key_prefix: o for o in OBJECTS.values()}


def object_def(name: str) -> ObjectDef | None:
    """The object named ``name`` (any case), or None."""
    return _BY_LOWER.get(name.lower())


def object_for_id(record_id: str) -> ObjectDef | None:
    """The object whose key prefix starts ``record_id``, or None."""
    return _BY_PREFIX.get(record_id[:3])
