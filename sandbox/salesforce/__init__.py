"""A loopback Salesforce org for tests, benchmarks and the demo (see ``server.py``)."""

from sandbox.salesforce.outbound import OutboundMessenger
from sandbox.salesforce.server import SalesforceSandbox
from sandbox.salesforce.store import MultipleMatches, RecordError, RecordNotFound, Store

__all__ = [
    "MultipleMatches",
    "OutboundMessenger",
    "RecordError",
    "RecordNotFound",
    "SalesforceSandbox",
    "Store",
]
