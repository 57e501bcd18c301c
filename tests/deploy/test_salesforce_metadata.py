"""deploy/salesforce: the metadata an admin deploys defines everything mentorsync reads and writes.

The XML is checked here (well-formed, every field the field map and the sync kinds use, exact
picklist values, a permission set granting exactly those fields, Outbound Messages carrying what
the sandbox sends); the sandbox loads its schema from the same files; ``doctor`` notes a field
the map names that the metadata does not define; and, when the Salesforce CLI is installed
(required in CI), ``sf project convert source`` accepts the project.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import pytest
import responses
from click.testing import CliRunner

from connector.cli import main
from connector.config import Settings
from connector.service.doctor import DEFAULT_SALESFORCE_FIELDS, check_metadata
from mappings.fieldmap import load_field_map
from sandbox.salesforce import schema
from sandbox.salesforce.outbound import DEFAULT_WATCH
from webhooks.outbound import PATH_PREFIX

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "deploy" / "salesforce"
SOURCE = PROJECT / "force-app" / "main" / "default"
NS = "{http://soap.sforce.com/2006/04/metadata}"

CONTACT_READ = ("Member_Status__c", "Mentorship_Role__c", "Practice_Setting__c", "Region__c")
MATCH_READ = ("Mentor__c", "Mentee__c", "Status__c", "Program__c", "Start_Date__c", "End_Date__c")
MATCH_WRITE = (
    "LMS_Group_Id__c", "LMS_Sync_Status__c", "LMS_Sync_Error__c",
    "Mentor_Orientation_Completed__c", "Mentee_Orientation_Completed__c",
    "Meetings_Completed__c", "Meeting_Hours__c", "Last_Meeting_Date__c", "Health__c",
)  # fmt: skip
MEETING_WRITE = (
    "External_Id__c", "Match__c", "Meeting_Number__c", "Activity_Idnumber__c",
    "Completed_On__c", "Hours__c", "Source__c",
)  # fmt: skip
SYNC_STATUS = ["Synced", "Suspended", "Failed", "Conflict"]
PICKLISTS = {
    "Contact.Member_Status__c": ["Active", "Grace", "Lapsed"],
    "Contact.Mentorship_Role__c": ["Mentor", "Mentee", "Both"],
    "Contact.LMS_Sync_Status__c": SYNC_STATUS,
    "Mentorship_Match__c.Status__c": ["Proposed", "Active", "Completed", "Cancelled"],
    "Mentorship_Match__c.Health__c": ["On track", "Behind", "At risk", "Complete"],
    "Mentorship_Match__c.LMS_Sync_Status__c": SYNC_STATUS,
}


def parse(path: Path) -> Element:
    return SafeET.parse(path).getroot()


def text(element: Element, tag: str) -> str:
    child = element.find(NS + tag)
    return "" if child is None or child.text is None else child.text


def field_xml(obj: str, name: str) -> Element:
    path = SOURCE / "objects" / obj / "fields" / f"{name}.field-meta.xml"
    assert path.is_file(), f"{obj}.{name} is not defined in deploy/salesforce"
    return parse(path)


def member_fields() -> tuple[list[str], list[str]]:
    """The Contact fields the default field map reads, and the ones it writes back."""
    fieldmap = load_field_map(None)
    written = [f for f in fieldmap.writeback.values() if f]
    read = [f for f in fieldmap.read_fields() if f not in written]
    return read, written


def used_custom_fields() -> dict[str, set[str]]:
    read, written = member_fields()
    return {
        "Contact": {f for f in (*read, *written) if f.endswith("__c")},
        "Mentorship_Match__c": {*MATCH_READ, *MATCH_WRITE},
        "Mentoring_Meeting__c": set(MEETING_WRITE),
    }


# --- the files ------------------------------------------------------------------------------------


def test_every_xml_file_is_well_formed_metadata_named_after_its_file() -> None:
    files = sorted(PROJECT.rglob("*.xml"))
    assert len(files) == 39
    for path in files:
        root = parse(path)
        assert root.tag.startswith(NS), path
        if path.name.endswith(".field-meta.xml"):
            assert text(root, "fullName") == path.name.removesuffix(".field-meta.xml")
    project = json.loads((PROJECT / "sfdx-project.json").read_text(encoding="utf-8"))
    assert project["packageDirectories"] == [{"path": "force-app", "default": True}]


def test_every_field_the_field_map_and_the_kinds_use_is_defined() -> None:
    for obj, fields in used_custom_fields().items():
        for name in fields:
            field_xml(obj, name)
    # ...and everything the doctor checks by default.
    for obj, fields in DEFAULT_SALESFORCE_FIELDS.items():
        for name in fields:
            if name.endswith("__c"):
                field_xml(obj, name)
    read, written = member_fields()
    assert set(CONTACT_READ) <= set(read)
    assert written == ["LMS_User_Id__c", "LMS_Sync_Status__c", "LMS_Sync_Error__c",
                       "LMS_Synced_At__c"]  # fmt: skip


def test_nothing_is_defined_that_mentorsync_does_not_use() -> None:
    defined = {
        folder.name: {p.name.removesuffix(".field-meta.xml") for p in folder.glob("fields/*")}
        for folder in (SOURCE / "objects").iterdir()
    }
    assert defined == used_custom_fields()


def test_picklist_values_are_exact_and_restricted() -> None:
    for qualified, values in PICKLISTS.items():
        root = field_xml(*qualified.split("."))
        assert text(root, "type") == "Picklist"
        value_set = root.find(NS + "valueSet")
        assert value_set is not None and text(value_set, "restricted") == "true"
        found = [text(v, "fullName") for v in value_set.iter(NS + "value")]
        assert found == values, qualified


def test_writeback_statuses_are_the_picklist_values() -> None:
    from connector.kinds.members import writeback

    statuses = [writeback.SYNCED, writeback.SUSPENDED, writeback.FAILED, writeback.CONFLICT]
    assert statuses == SYNC_STATUS


def test_pair_statuses_and_health_values_are_picklist_values() -> None:
    from connector.kinds.pairs import model
    from connector.kinds.progress.health import Health

    assert {model.SYNCED, model.FAILED} <= set(SYNC_STATUS)
    assert {h.value for h in Health} == set(PICKLISTS["Mentorship_Match__c.Health__c"])


def test_types_and_lengths() -> None:
    expected = {
        ("Contact", "LMS_User_Id__c"): ("Text", "20"),
        ("Contact", "LMS_Sync_Error__c"): ("Text", "255"),
        ("Contact", "LMS_Synced_At__c"): ("DateTime", ""),
        ("Contact", "Practice_Setting__c"): ("Text", "100"),
        ("Mentorship_Match__c", "Mentor__c"): ("Lookup", ""),
        ("Mentorship_Match__c", "Program__c"): ("Text", "40"),
        ("Mentorship_Match__c", "Start_Date__c"): ("Date", ""),
        ("Mentorship_Match__c", "Meeting_Hours__c"): ("Number", ""),
        ("Mentoring_Meeting__c", "Completed_On__c"): ("Date", ""),
        ("Mentoring_Meeting__c", "Hours__c"): ("Number", ""),
        ("Mentoring_Meeting__c", "Match__c"): ("MasterDetail", ""),
    }
    for (obj, name), (kind, length) in expected.items():
        root = field_xml(obj, name)
        assert (text(root, "type"), text(root, "length")) == (kind, length), name
    assert text(field_xml("Mentorship_Match__c", "Meeting_Hours__c"), "scale") == "2"
    assert text(field_xml("Mentoring_Meeting__c", "Match__c"), "referenceTo") == (
        "Mentorship_Match__c"
    )


def test_meeting_external_id_is_unique_and_case_sensitive() -> None:
    root = field_xml("Mentoring_Meeting__c", "External_Id__c")
    flags = {tag: text(root, tag) for tag in ("externalId", "unique", "caseSensitive")}
    assert flags == {"externalId": "true", "unique": "true", "caseSensitive": "true"}
    # The Contact's LMS user id is an external id for look-ups, not unique (duplicates exist).
    contact = field_xml("Contact", "LMS_User_Id__c")
    assert (text(contact, "externalId"), text(contact, "unique")) == ("true", "false")


def test_custom_objects_have_auto_number_names() -> None:
    for obj, display in (("Mentorship_Match__c", "MM-{000000}"),
                         ("Mentoring_Meeting__c", "MTG-{000000}")):  # fmt: skip
        root = parse(SOURCE / "objects" / obj / f"{obj}.object-meta.xml")
        name_field = root.find(NS + "nameField")
        assert name_field is not None
        assert (text(name_field, "type"), text(name_field, "displayFormat")) == (
            "AutoNumber", display,
        )  # fmt: skip
    meeting = parse(SOURCE / "objects/Mentoring_Meeting__c/Mentoring_Meeting__c.object-meta.xml")
    assert text(meeting, "sharingModel") == "ControlledByParent"  # access follows the match


# --- the permission set ---------------------------------------------------------------------------


def test_permission_set_grants_exactly_what_mentorsync_reads_and_writes() -> None:
    root = parse(SOURCE / "permissionsets" / "MentorSync_Integration.permissionset-meta.xml")
    granted = {
        text(p, "field"): (text(p, "readable"), text(p, "editable"))
        for p in root.iter(NS + "fieldPermissions")
    }
    read, written = member_fields()
    expected: dict[str, tuple[str, str]] = {}
    # Standard name fields have no field-level security; Email does.
    for name in read:
        if name.endswith("__c") or name == "Email":
            expected[f"Contact.{name}"] = ("true", "false")
    expected.update({f"Contact.{name}": ("true", "true") for name in written})
    expected.update({f"Mentorship_Match__c.{name}": ("true", "false") for name in MATCH_READ})
    expected.update({f"Mentorship_Match__c.{name}": ("true", "true") for name in MATCH_WRITE})
    # A master-detail field cannot be granted: it is always readable and editable.
    expected.update(
        {f"Mentoring_Meeting__c.{n}": ("true", "true") for n in MEETING_WRITE if n != "Match__c"}
    )
    assert granted == expected

    objects = {
        text(p, "object"): tuple(
            text(p, tag)
            for tag in ("allowCreate", "allowRead", "allowEdit", "allowDelete",
                        "viewAllRecords", "modifyAllRecords")
        )
        for p in root.iter(NS + "objectPermissions")
    }
    assert objects == {
        "Account": ("false", "true", "false", "false", "false", "false"),  # Contact needs it
        "Contact": ("false", "true", "true", "false", "true", "false"),
        "Mentorship_Match__c": ("false", "true", "true", "false", "true", "false"),
        "Mentoring_Meeting__c": ("true", "true", "true", "false", "true", "false"),
    }
    users = {text(p, "name"): text(p, "enabled") for p in root.iter(NS + "userPermissions")}
    # ViewSetup: the API budget check reads /limits, which needs View Setup and Configuration.
    assert users == {"ApiEnabled": "true", "ViewSetup": "true"}


# --- Outbound Messages and the flows that send them -------------------------------------------


def outbound_messages() -> dict[str, Element]:
    found = {}
    for path in sorted((SOURCE / "workflows").glob("*.workflow-meta.xml")):
        obj = path.name.removesuffix(".workflow-meta.xml")
        for om in parse(path).iter(NS + "outboundMessages"):
            found[f"{obj}.{text(om, 'fullName')}"] = om
    return found


def test_outbound_messages_carry_what_the_sandbox_sends_to_the_webhook_path() -> None:
    messages = outbound_messages()
    assert sorted(messages) == [
        "Contact.MentorSync_Contact", "Mentorship_Match__c.MentorSync_Match",
    ]  # fmt: skip
    for qualified, om in messages.items():
        obj = qualified.split(".")[0]
        assert sorted(f.text or "" for f in om.iter(NS + "fields")) == sorted(
            ("Id", *DEFAULT_WATCH[obj])
        )
        assert urlparse(text(om, "endpointUrl")).path.startswith(PATH_PREFIX + "/")
        assert text(om, "includeSessionId") == "false"  # no session handed to the receiver
    assert set(DEFAULT_WATCH) == {name.split(".")[0] for name in messages}


def test_placeholders_are_replaced_at_deploy_time() -> None:
    project = json.loads((PROJECT / "sfdx-project.json").read_text(encoding="utf-8"))
    placeholders = {r["stringToReplace"]: r["replaceWithEnv"] for r in project["replacements"]}
    assert set(placeholders.values()) == {
        "MENTORSYNC_OUTBOUND_URL", "MENTORSYNC_INTEGRATION_USERNAME",
    }  # fmt: skip
    for om in outbound_messages().values():
        assert text(om, "endpointUrl") in placeholders
        assert text(om, "integrationUser") in placeholders


def test_flows_send_on_create_and_on_a_watched_change_only() -> None:
    messages = outbound_messages()
    triggers: dict[tuple[str, str], set[str]] = {}
    for path in sorted((SOURCE / "flows").glob("*.flow-meta.xml")):
        root = parse(path)
        assert text(root, "status") == "Active"
        assert text(root, "processType") == "AutoLaunchedFlow"
        action = root.find(NS + "actionCalls")
        start = root.find(NS + "start")
        assert action is not None and start is not None
        assert text(action, "actionType") == "outboundMessage"
        assert text(action, "actionName") in messages
        assert text(start, "triggerType") == "RecordAfterSave"
        obj = text(start, "object")
        assert text(action, "actionName").startswith(obj + ".")
        formula = text(start, "filterFormula")
        changed = set(re.findall(r"ISCHANGED\(\{!\$Record\.(\w+)\}\)", formula))
        triggers[(obj, text(start, "recordTriggerType"))] = changed
    assert set(triggers) == {(obj, kind) for obj in DEFAULT_WATCH for kind in ("Create", "Update")}
    for obj, watched in DEFAULT_WATCH.items():
        assert triggers[(obj, "Create")] == set()
        # Like the sandbox: a change to a watched field sends; write-backs (LMS_*) do not echo.
        assert triggers[(obj, "Update")] == set(watched) - {"SystemModstamp", "Name"}


# --- one source of truth: the sandbox ---------------------------------------------------------


def test_the_sandbox_schema_is_the_metadata() -> None:
    for obj, fields in used_custom_fields().items():
        odef = schema.object_def(obj)
        assert odef is not None
        custom = {f.name for f in odef.fields if f.name.endswith("__c")}
        assert custom == fields
    ext = schema.MEETING.field("External_Id__c")
    assert ext is not None and (ext.external_id, ext.unique, ext.case_sensitive) == (
        True, True, True,
    )  # fmt: skip
    status = schema.CONTACT.field("LMS_Sync_Status__c")
    assert status is not None and status.describe()["picklistValues"][0]["value"] == "Synced"
    match = schema.MEETING.field("Match__c")
    assert match is not None and (match.nillable, match.relationship_name) == (False, "Match__r")
    assert schema.AUTO_NUMBER_FORMATS == {
        "Mentorship_Match__c": "MM-{:06d}", "Mentoring_Meeting__c": "MTG-{:06d}",
    }  # fmt: skip
    # Standard fields stay defined in Python.
    assert [f.name for f in schema.CONTACT.fields[:4]] == ["Id", "FirstName", "LastName", "Email"]


def test_a_field_added_to_the_metadata_appears_in_the_sandbox(tmp_path: Path) -> None:
    root = tmp_path / "default"
    shutil.copytree(SOURCE / "objects", root / "objects")
    src = root / "objects/Contact/fields/Region__c.field-meta.xml"
    added = src.read_text(encoding="utf-8").replace("Region__c", "Chapter__c")
    (src.parent / "Chapter__c.field-meta.xml").write_text(
        added.replace("<length>100</length>", "<length>30</length>"), encoding="utf-8"
    )
    objects, _ = schema.load_objects(root)
    chapter = objects["Contact"].field("chapter__c")
    assert chapter is not None and (chapter.type, chapter.length) == ("string", 30)


def test_missing_or_broken_metadata_fails_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(schema.SchemaMetadataError, match=re.escape(str(tmp_path / "objects"))):
        schema.load_objects(tmp_path)
    shutil.copytree(SOURCE / "objects", tmp_path / "objects")
    broken = tmp_path / "objects/Contact/fields/Region__c.field-meta.xml"
    broken.write_text("<CustomField><type>Text", encoding="utf-8")
    with pytest.raises(schema.SchemaMetadataError, match=r"Region__c\.field-meta\.xml: not well"):
        schema.load_objects(tmp_path)


# --- doctor ---------------------------------------------------------------------------------


def renamed_map(tmp_path: Path) -> Path:
    default = (REPO / "mappings" / "default_fieldmap.toml").read_text(encoding="utf-8")
    path = tmp_path / "fieldmap.toml"
    path.write_text(default.replace('"Region__c"', '"Region_Code__c"'), encoding="utf-8")
    return path


def test_doctor_notes_a_mapped_field_the_metadata_does_not_define(tmp_path: Path) -> None:
    settings = Settings()
    assert [(c.name, c.status) for c in check_metadata(settings)] == [("metadata", "ok")]
    settings.members.field_map = str(renamed_map(tmp_path))
    checks = check_metadata(settings)
    assert [(c.system, c.name, c.status) for c in checks] == [
        ("salesforce", "metadata Contact.Region_Code__c", "note")
    ]
    assert "Region_Code__c.field-meta.xml" in checks[0].fix
    missing = check_metadata(settings, tmp_path / "nowhere")
    assert [(c.name, c.status) for c in missing] == [("metadata", "note")]


MOODLE = "http://127.0.0.1:8081"
INSTANCE = "https://assoc.my.salesforce.com"


def test_doctor_command_prints_the_note_and_still_passes(tmp_path: Path) -> None:
    from tests.service.test_doctor import serve_moodle

    data = f"{INSTANCE}/services/data/v59.0"
    env = {
        "MENTORSYNC_MOODLE_URL": MOODLE,
        "MENTORSYNC_MOODLE_TOKEN": "doctor-token",
        "MENTORSYNC_SALESFORCE_AUTH": "session",
        "MENTORSYNC_SALESFORCE_SESSION_ID": "doctor-session",
        "MENTORSYNC_SALESFORCE_INSTANCE_URL": INSTANCE,
        "MENTORSYNC_SALESFORCE_DOMAIN": "assoc.my.salesforce.com",
        "MENTORSYNC_SERVICE_DATA_DIR": str(tmp_path),
        "MENTORSYNC_MEMBERS_FIELD_MAP": str(renamed_map(tmp_path)),
    }
    # The org has the association's own field: only the metadata lacks it.
    org_fields = {obj: ["Id", *fields] for obj, fields in DEFAULT_SALESFORCE_FIELDS.items()}
    org_fields["Contact"].append("Region_Code__c")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve_moodle(rsps, known_courses=("GMP-ORIENT", "GMP-2026"))
        rsps.get(f"{data}/limits/", json={"DailyApiRequests": {"Max": 15000, "Remaining": 14982}})
        for obj, names in org_fields.items():
            rsps.get(
                f"{data}/sobjects/{obj}/describe",
                json={"name": obj, "fields": [{"name": n} for n in names]},
            )
        result = CliRunner().invoke(main, ["doctor"], env=env, terminal_width=200)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "metadata Contact.Region_Code__c" in x)
    assert "note" in line and "not defined in deploy/salesforce" in line
    assert "Everything mentorsync needs is there." in result.output


# --- the Salesforce CLI -------------------------------------------------------------------------


def salesforce_cli() -> str | None:
    """``sf`` from .ci/node (what .ci/install-prereqs installs), else from PATH."""
    local = REPO / ".ci" / "node" / "node_modules" / ".bin" / "sf"
    if local.is_file():
        return str(local)
    return shutil.which("sf")


def test_salesforce_cli_converts_the_project(tmp_path: Path) -> None:
    sf = salesforce_cli()
    if sf is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the Salesforce CLI is required in CI: run .ci/install-prereqs")
        pytest.skip("the Salesforce CLI (sf) is not installed; .ci/install-prereqs installs it")
    out = tmp_path / "mdapi"
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # the CLI writes its state and logs under HOME
        "SF_DISABLE_TELEMETRY": "true",
        "SF_AUTOUPDATE_DISABLE": "true",
        "SF_SKIP_NEW_VERSION_CHECK": "true",
        "SF_USE_PROGRESS_BAR": "false",
    }
    done = subprocess.run(
        [sf, "project", "convert", "source", "--root-dir", "force-app",
         "--output-dir", str(out), "--json"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    package = parse(out / "package.xml")
    types = {
        text(t, "name"): sorted(m.text or "" for m in t.iter(NS + "members"))
        for t in package.iter(NS + "types")
    }
    assert types["CustomObject"] == ["Mentoring_Meeting__c", "Mentorship_Match__c"]
    assert len(types["CustomField"]) == 30
    assert types["WorkflowOutboundMessage"] == [
        "Contact.MentorSync_Contact", "Mentorship_Match__c.MentorSync_Match",
    ]  # fmt: skip
    assert len(types["Flow"]) == 4
    assert types["PermissionSet"] == ["MentorSync_Integration"]
