"""What a user must fix, as exceptions: the ground floor every layer may raise from. The CLI prints any of
them as one line and exits with code 2 (bench.cli.main)."""


class ConfigError(ValueError):
    """A configuration a user must fix."""


class SourceUnavailable(RuntimeError):
    """The image source cannot be opened; the message is one line a user can act on."""


class WeightsUnavailable(RuntimeError):
    """The requested weights cannot be loaded (offline hub, missing folder); the message is one line."""


class SideFileError(FileNotFoundError):
    """A side file a record names is unusable: not beside it (moved without it, deleted), not the one
    written (size, sha256), not readable Parquet, or larger than a reader may take. Callers treat the
    table as missing, with this as the reason."""
