"""The objects a run needs, built once from settings: clients and the state database."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from connector.config import Settings
from connector.state.database import StateDB

if TYPE_CHECKING:
    from connector.clients.moodle.client import MoodleClient
    from connector.clients.salesforce.client import SalesforceClient


@dataclass
class Context:
    """Settings plus lazily built Moodle client, Salesforce client and state database."""

    settings: Settings
    _overrides: dict[str, object] = field(default_factory=dict)

    @cached_property
    def db(self) -> StateDB:
        """The state database."""
        return StateDB(self.settings.database_url)

    @cached_property
    def moodle(self) -> MoodleClient:
        """The Moodle web-service client."""
        # Imported here: building a context (the web service does) needs neither client.
        from connector.clients.moodle.client import MoodleClient

        return MoodleClient(self.settings.moodle)

    @cached_property
    def salesforce(self) -> SalesforceClient:
        """The Salesforce client (logs in on first use)."""
        from connector.clients.salesforce.client import SalesforceClient

        return SalesforceClient(self.settings.salesforce)

    def close(self) -> None:
        """Release pooled connections."""
        if "db" in self.__dict__:
            self.db.dispose()
