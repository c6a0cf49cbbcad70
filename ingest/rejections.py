"""What a reader gives instead of rows it cannot use: `UnreadableFile` for a whole file (quarantined)."""

from __future__ import annotations


class UnreadableFile(Exception):
    """The whole file cannot be read (corrupt, wrong format, no recognisable header)."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(message)
        self.reason_code = reason_code

