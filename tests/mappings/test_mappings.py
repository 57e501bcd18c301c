"""The field map and the Contact -> Moodle user schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import Settings
from connector.errors import ConfigError
from mappings.fieldmap import load_field_map, parse_field_map, salesforce_fields
from mappings.members import (
    Account,
    ContactMapper,
    MappingRejected,
    account_from_moodle,
    changed_fields,
    create_payload,
)

CONTACT = {
    "Id": "003TEST00000001AAA",
    "FirstName": " Ann ",
    "LastName": "Lee",
    "Email": "Ann.Lee@Example.org",
    "Member_Status__c": "Active",
    "Mentorship_Role__c": "Mentee",
    "Practice_Setting__c": None,
    "Region__c": "West",
}
# As core_user_get_users_by_field answers (06_): empty custom fields are left out.
MOODLE_USER = {
    "id": 4,
    "username": "ann.lee@example.org",
    "firstname": "Ann",
    "lastname": "Lee",
    "fullname": "Ann Lee",
    "email": "ann.lee@example.org",
    "idnumber": "003TEST00000001AAA",
    "auth": "manual",
    "suspended": False,
    "customfields": [
        {
            "type": "text",
            "value": "Active",
            "displayvalue": "Active",
            "name": "Membership status",
            "shortname": "memberstatus",
        },
        {
            "type": "text",
            "value": "West",
            "displayvalue": "West",
            "name": "Region",
            "shortname": "region",
        },
    ],
}


def mapper() -> ContactMapper:
    return ContactMapper(load_field_map())


def test_default_map_reads_the_design_fields() -> None:
    fm = load_field_map()
    assert fm.sobject == "Contact"
    assert fm.scope_soql() == "Mentorship_Role__c != null"
    assert fm.read_fields() == [
        "Id", "Mentorship_Role__c", "Member_Status__c", "FirstName", "LastName", "Email",
        "Practice_Setting__c", "Region__c", "LMS_User_Id__c", "LMS_Sync_Status__c",
        "LMS_Sync_Error__c", "LMS_Synced_At__c",
    ]  # fmt: skip
    assert salesforce_fields(Settings())["Contact"] >= {"Email", "LMS_User_Id__c"}


def test_scope_in_python_matches_the_soql() -> None:
    fm = load_field_map()
    assert fm.in_scope({"Mentorship_Role__c": "Both"})
    assert not fm.in_scope({"Mentorship_Role__c": None})
    assert not fm.in_scope({"Mentorship_Role__c": "  "})
    listed = parse_field_map(
        {"scope": {"field": "Role__c", "values": ["Mentor", "Mentee"]},
         "user": {"firstname": "FirstName", "lastname": "LastName", "email": "Email"}}
    )  # fmt: skip
    assert listed.scope_soql() == "Role__c IN ('Mentor','Mentee')"
    assert listed.in_scope({"Role__c": "Mentor"})
    assert not listed.in_scope({"Role__c": "Alumni"})


def test_contact_becomes_the_desired_user() -> None:
    user = mapper().desired(CONTACT)
    assert user.contact_id == CONTACT["Id"]
    assert user.username == "ann.lee@example.org"  # the email, lower-cased
    assert user.fields == {"firstname": "Ann", "lastname": "Lee", "email": "Ann.Lee@Example.org"}
    assert user.customfields == {"memberstatus": "Active", "practicesetting": "", "region": "West"}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"Email": None}, "mapping:email_missing"),
        ({"Email": "  "}, "mapping:email_missing"),
        ({"Email": "not-an-address"}, "mapping:email_invalid"),
        ({"Email": "a" * 95 + "@example.org"}, "mapping:email_too_long"),
        ({"FirstName": None}, "mapping:firstname_missing"),
        ({"FirstName": "A" * 101}, "mapping:firstname_too_long"),
        ({"LastName": "L" * 101}, "mapping:lastname_too_long"),
        ({"Email": "ann+news@example.org"}, "mapping:username_invalid"),
        # Several problems: the most basic one is reported.
        ({"Email": None, "FirstName": "A" * 101}, "mapping:email_missing"),
    ],
)
def test_validation_reason_codes(change: dict[str, object], code: str) -> None:
    with pytest.raises(MappingRejected) as caught:
        mapper().desired({**CONTACT, **change})
    assert caught.value.code == code


def test_hundred_character_names_are_accepted() -> None:
    user = mapper().desired({**CONTACT, "FirstName": "A" * 100})
    assert user.fields["firstname"] == "A" * 100


def test_username_template_over_other_fields() -> None:
    fm = parse_field_map(
        {
            "scope": {"field": "Mentorship_Role__c"},
            "username": {"template": "{FirstName}.{LastName}"},
            "user": {"firstname": "FirstName", "lastname": "LastName", "email": "Email"},
        }
    )
    user = ContactMapper(fm).desired(CONTACT)
    assert user.username == "ann.lee"
    too_long = {**CONTACT, "LastName": "x" * 100}
    with pytest.raises(MappingRejected) as caught:
        ContactMapper(fm).desired(too_long)
    assert caught.value.code == "mapping:username_too_long"


def test_override_file_maps_own_fields(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text(
        """
[scope]
field = "Programme__c"
values = ["GMP"]
[user]
firstname = "FirstName"
lastname = "LastName"
email = "Work_Email__c"
city = "MailingCity"
[customfields]
region = "Chapter__c"
[writeback]
user_id = "Moodle_Id__c"
status = "Moodle_Status__c"
""",
        encoding="utf-8",
    )
    fm = load_field_map(path)
    assert fm.user["email"] == "Work_Email__c"
    assert fm.customfields == {"region": "Chapter__c"}
    assert fm.writeback == {
        "user_id": "Moodle_Id__c", "status": "Moodle_Status__c", "error": "", "synced_at": ""
    }  # fmt: skip
    record = {"Id": "003X", "FirstName": "A", "LastName": "B", "Work_Email__c": "a@b.org",
              "MailingCity": "Leeds", "Chapter__c": "North"}  # fmt: skip
    user = ContactMapper(fm).desired(record)
    assert user.username == "a@b.org"  # the default template follows the email field
    assert user.fields["city"] == "Leeds"
    assert user.customfields == {"region": "North"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"user": {"firstname": "FirstName"}}, "[scope] field: missing"),
        ({"scope": {"field": "Role__c"}, "user": {"firstname": "F", "lastname": "L"}},
         "[user] email: missing"),
        ({"scope": {"field": "Role__c"}, "user": {"username": "Email"}},
         "[user] username: not a Moodle user field"),
        ({"scope": {"field": "Role; DROP"}}, "[scope] field: not a valid Salesforce API name"),
        ({"scope": {"field": "R__c"}, "username": {"template": "plain"}},
         "[username] template: must use at least one field"),
        ({"scope": {"field": "R__c"}, "username": {"template": "{Email!r}"}},
         "format specs and conversions"),
        ({"scope": {"field": "R__c"}, "extra": {}}, "[extra]: unknown section"),
        ({"scope": {"field": "R__c"}, "writeback": {"colour": "X__c"},
          "user": {"firstname": "F", "lastname": "L", "email": "E"}},
         "[writeback] colour: unknown key"),
    ],
)  # fmt: skip
def test_bad_maps_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_field_map(data, "map.toml")
    assert caught.value.key == "members.field_map"
    assert message in str(caught.value)
    assert "map.toml" in str(caught.value)


def test_unreadable_or_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[scope\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_field_map(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        load_field_map(tmp_path / "missing.toml")


def test_account_from_moodle_reads_missing_custom_fields_as_empty() -> None:
    account = account_from_moodle(MOODLE_USER, load_field_map())
    assert isinstance(account, Account)
    assert account.id == 4
    assert account.idnumber == "003TEST00000001AAA"
    assert account.suspended is False
    assert account.customfields == {
        "memberstatus": "Active",
        "practicesetting": "",
        "region": "West",
    }


def test_changed_fields_compares_what_the_map_sets() -> None:
    fm = load_field_map()
    account = account_from_moodle(MOODLE_USER, fm)
    same = ContactMapper(fm).desired(CONTACT)
    assert changed_fields(same, account) == {}  # email differs only in case
    moved = ContactMapper(fm).desired({**CONTACT, "Region__c": "East", "LastName": "Lee-Smith"})
    assert changed_fields(moved, account) == {
        "lastname": "Lee-Smith",
        "customfields": [{"type": "region", "value": "East"}],
    }
    cleared = ContactMapper(fm).desired({**CONTACT, "Region__c": None})
    assert changed_fields(cleared, account) == {"customfields": [{"type": "region", "value": ""}]}


def test_create_payload_is_the_moodle_item() -> None:
    user = mapper().desired(CONTACT)
    assert create_payload(user, "manual") == {
        "username": "ann.lee@example.org",
        "auth": "manual",
        "idnumber": "003TEST00000001AAA",
        "createpassword": True,
        "firstname": "Ann",
        "lastname": "Lee",
        "email": "Ann.Lee@Example.org",
        "customfields": [
            {"type": "memberstatus", "value": "Active"},
            {"type": "region", "value": "West"},
        ],
    }
    assert "createpassword" not in create_payload(user, "saml2")


def test_webhooks_route_the_field_maps_source_object(tmp_path: Path) -> None:
    """With Person Accounts the source object is Account: its Outbound Messages must route to
    the member sync, and Contact's no longer."""
    from importlib.resources import files

    from connector.config import load_settings
    from connector.kinds.members.kind import MembersSync
    from webhooks import create_app
    from webhooks.runtime import kind_for

    default = files("mappings").joinpath("default_fieldmap.toml").read_text(encoding="utf-8")
    custom = tmp_path / "accounts.toml"
    custom.write_text(default.replace('object = "Contact"', 'object = "Account"'), "utf-8")
    settings = load_settings(
        env={
            "MENTORSYNC_MEMBERS_FIELD_MAP": str(custom),
            "MENTORSYNC_SERVICE_DATA_DIR": str(tmp_path / "data"),
        }
    )
    assert MembersSync().objects_for(settings)[0] == "Account"
    assert "Contact" not in MembersSync().objects_for(settings)
    app = create_app(settings)
    with app.app_context():
        assert kind_for("Account") == "members"
        assert kind_for("Contact") is None
