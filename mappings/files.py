"""Reading a field map file: the one given in the configuration, or the built-in default."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from connector.errors import ConfigError


def read_map_file(
    path: str | Path | None, default_file: str, key: str
) -> tuple[dict[str, Any], str]:
    """The decoded TOML of ``path`` (or of ``mappings/<default_file>`` when empty), and where
    it came from. A file that cannot be read or is not TOML raises :class:`ConfigError` ``key``."""
    if path:
        source = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(key, f"cannot read {source} ({exc.strerror})") from None
    else:
        source = f"mappings/{default_file}"
        raw = resources.files("mappings").joinpath(default_file).read_bytes()
    try:
        return tomllib.loads(raw.decode("utf-8")), source
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"{source} is not valid TOML ({exc})") from None
