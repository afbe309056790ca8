"""Data problems: one record per problem, grouped by class in reports.

Readers and validation never print and never drop silently: every problem becomes a
``DataIssue`` naming where it is (file:line or sample id) and why. ``on_error: raise``
turns the first one into a ``DataError``; ``skip`` drops the sample and keeps the issue.
"""

from __future__ import annotations

from dataclasses import dataclass

# Problem classes, used to group reports and asserted by the bad-input tests.
MISSING_MEDIA = "missing_media"
OUTSIDE_ROOT = "outside_root"
CORRUPT_MEDIA = "corrupt_media"
TOO_LARGE = "too_large"
BAD_JSON = "bad_json"
BAD_ENCODING = "bad_encoding"
EMPTY_FILE = "empty_file"
BAD_ROLE = "bad_role"
NO_ASSISTANT = "no_assistant"
PLACEHOLDER_MISMATCH = "placeholder_mismatch"
BAD_BOX = "bad_box"
BAD_FIELD = "bad_field"
TOO_LONG = "too_long"
RESERVED_TOKEN = "reserved_token"
UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class DataIssue:
    """One problem found in the data.

    Attributes:
        kind: problem class (one of the constants of this module).
        reason: human-readable explanation.
        source: data file the sample came from ('' when unknown).
        line: 1-based line (JSONL) or item index + 1 (JSON list); None when unknown.
        sample_id: the sample's id when one was read.
    """

    kind: str
    reason: str
    source: str = ""
    line: int | None = None
    sample_id: str | None = None

    def where(self) -> str:
        loc = self.source or "<data>"
        if self.line is not None:
            loc += f":{self.line}"
        if self.sample_id is not None:
            loc += f" [{self.sample_id}]"
        return loc

    def __str__(self) -> str:
        return f"{self.where()}: {self.kind}: {self.reason}"


class DataError(ValueError):
    """Data that cannot be used; carries the issue(s) behind it."""

    def __init__(self, message: str, issues: list[DataIssue] | None = None):
        super().__init__(message)
        self.issues = list(issues or [])

    @staticmethod
    def of(issue: DataIssue) -> DataError:
        return DataError(str(issue), [issue])


class SampleProblem(ValueError):
    """Raised inside readers/validation for one sample; converted to a DataIssue by the caller."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
