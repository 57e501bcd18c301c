"""The sandbox org's objects and fields: DESIGN.md's default data model, with describe output.

Each field has the attributes ``describe`` reports and the write path checks: type, length,
createable/updateable, nillable (required on create when false and not defaulted), external id,
uniqueness, and for lookups the object they point to and their relationship name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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
            "caseSensitive": False,
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
            "restrictedPicklist": False,
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


def _sync_fields() -> tuple[FieldDef, ...]:
    return (
        FieldDef("LMS_Sync_Status__c", "string", "LMS Sync Status", 40),
        FieldDef("LMS_Sync_Error__c", "string", "LMS Sync Error", 255),
    )


CONTACT = ObjectDef(
    "Contact",
    "003",
    "Contact",
    (
        _id_field(),
        FieldDef("FirstName", "string", "First Name", 40),
        FieldDef("LastName", "string", "Last Name", 80, nillable=False),
        FieldDef("Email", "email", "Email", 80),
        FieldDef(
            "Member_Status__c",
            "picklist",
            "Member Status",
            255,
            picklist=("Active", "Grace", "Lapsed"),
        ),
        FieldDef(
            "Mentorship_Role__c",
            "picklist",
            "Mentorship Role",
            255,
            picklist=("Mentor", "Mentee", "Both"),
        ),
        FieldDef("Practice_Setting__c", "string", "Practice Setting", 100),
        FieldDef("Region__c", "string", "Region", 100),
        *_system_fields(mergeable=True),
        # Not unique: an admin marks it as an external id for lookups; the same Moodle user can
        # end up on two Contacts (a duplicate Contact), which upsert answers with HTTP 300.
        FieldDef("LMS_User_Id__c", "string", "LMS User Id", 20, external_id=True),
        *_sync_fields(),
        FieldDef("LMS_Synced_At__c", "datetime", "LMS Synced At"),
    ),
    mergeable=True,
)

MATCH = ObjectDef(
    "Mentorship_Match__c",
    "a01",
    "Mentorship Match",
    (
        _id_field(),
        FieldDef(
            "Name",
            "string",
            "Match Number",
            80,
            createable=False,
            updateable=False,
            nillable=False,
            auto_number=True,
        ),
        FieldDef(
            "Mentor__c",
            "reference",
            "Mentor",
            18,
            reference_to="Contact",
            relationship_name="Mentor__r",
        ),
        FieldDef(
            "Mentee__c",
            "reference",
            "Mentee",
            18,
            reference_to="Contact",
            relationship_name="Mentee__r",
        ),
        FieldDef(
            "Status__c",
            "picklist",
            "Status",
            255,
            picklist=("Proposed", "Active", "Completed", "Cancelled"),
        ),
        FieldDef("Program__c", "string", "Program", 40),
        FieldDef("Start_Date__c", "date", "Start Date"),
        FieldDef("End_Date__c", "date", "End Date"),
        *_system_fields(),
        FieldDef("LMS_Group_Id__c", "string", "LMS Group Id", 20),
        *_sync_fields(),
        FieldDef("Mentor_Orientation_Completed__c", "date", "Mentor Orientation Completed"),
        FieldDef("Mentee_Orientation_Completed__c", "date", "Mentee Orientation Completed"),
        FieldDef("Meetings_Completed__c", "double", "Meetings Completed", precision=18),
        FieldDef("Meeting_Hours__c", "double", "Meeting Hours", precision=18, scale=2),
        FieldDef("Last_Meeting_Date__c", "date", "Last Meeting Date"),
        FieldDef(
            "Health__c",
            "picklist",
            "Health",
            255,
            picklist=("On track", "Behind", "At risk", "Complete"),
        ),
    ),
)

MEETING = ObjectDef(
    "Mentoring_Meeting__c",
    "a02",
    "Mentoring Meeting",
    (
        _id_field(),
        FieldDef(
            "Name",
            "string",
            "Meeting Record Number",
            80,
            createable=False,
            updateable=False,
            nillable=False,
            auto_number=True,
        ),
        FieldDef(
            "External_Id__c",
            "string",
            "External Id",
            80,
            external_id=True,
            unique=True,
        ),
        FieldDef(
            "Match__c",
            "reference",
            "Match",
            18,
            reference_to="Mentorship_Match__c",
            relationship_name="Match__r",
            nillable=False,
        ),
        FieldDef("Meeting_Number__c", "double", "Meeting Number", precision=18),
        FieldDef("Activity_Idnumber__c", "string", "Activity Idnumber", 100),
        FieldDef("Completed_On__c", "date", "Completed On"),
        FieldDef("Hours__c", "double", "Hours", precision=18, scale=2),
        FieldDef("Source__c", "string", "Source", 40),
        *_system_fields(),
    ),
)

OBJECTS: dict[str, ObjectDef] = {o.name: o for o in (CONTACT, MATCH, MEETING)}
_BY_LOWER = {name.lower(): o for name, o in OBJECTS.items()}
_BY_PREFIX = {o.key_prefix: o for o in OBJECTS.values()}
# Auto-number display formats of the Name fields.
AUTO_NUMBER_FORMATS = {"Mentorship_Match__c": "MM-{:06d}", "Mentoring_Meeting__c": "MTG-{:06d}"}


def object_def(name: str) -> ObjectDef | None:
    """The object named ``name`` (any case), or None."""
    return _BY_LOWER.get(name.lower())


def object_for_id(record_id: str) -> ObjectDef | None:
    """The object whose key prefix starts ``record_id``, or None."""
    return _BY_PREFIX.get(record_id[:3])
