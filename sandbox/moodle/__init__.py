"""A loopback Moodle 4.5 stand-in speaking the REST web-service protocol.

See :class:`MoodleSandbox` (the server and its knobs) and :class:`Site` (the data and the
helpers tests use).
"""

from sandbox.moodle.server import MOODLE_FAULTS, MoodleSandbox
from sandbox.moodle.site import Site

__all__ = ["MOODLE_FAULTS", "MoodleSandbox", "Site"]
