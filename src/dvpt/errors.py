"""User-facing errors.

A ``DvptError`` is a mistake the user can fix (a path, a name, a value). The CLI prints its
message on one line and exits non-zero, without a traceback; anything else is a bug and keeps
its traceback.
"""


class DvptError(Exception):
    """An error caused by user input; the message names the thing and the fix."""


class DataError(DvptError):
    """A dataset folder, split file or image that cannot be used."""


class ConfigError(DvptError):
    """A configuration key or value that is unknown or of the wrong type."""


class WriteError(DvptError, OSError):
    """A file that could not be written (disk full, permissions); the previous file is whole.

    Also an ``OSError`` (with its errno), so code that handles I/O errors keeps working.
    """

    def __str__(self) -> str:
        return str(self.strerror)


class BackboneError(DvptError):
    """A backbone that cannot be loaded (e.g. offline without a local copy)."""
