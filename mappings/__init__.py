"""Mappings between Salesforce and Moodle record shapes, driven by field map files.

``mappings.fieldmap``: the member field map (``default_fieldmap.toml``, or the file
``members.field_map`` names). ``mappings.members``: the marshmallow schemas that turn a Contact
into the Moodle user it should be.
"""
