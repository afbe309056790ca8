"""What may be a name: run names (a directory, a SLURM job name, a Ray run name) and the
Kubernetes names and label values the manifests carry.

A name reaches path joins, shell command lines and YAML manifests, so it is checked for what
it is rather than escaped at each of them: no ``.``/``..``, no path separator, no newline, no
shell metacharacter. Kubernetes rules: label values (63 characters, alphanumeric at both ends,
``-_.`` inside) and DNS-1123 labels for object names
(https://kubernetes.io/docs/concepts/overview/working-with-objects/names/ and
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set).
"""

from __future__ import annotations

import re

_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def run_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run (None: it can)."""
    if name in (".", "..") or not _RUN_NAME.fullmatch(name):
        return (f"must be 1-128 letters, digits, '_', '-' or '.', starting with a letter, digit or '_' "
                f"(no path separators, whitespace or shell characters), got {name!r}")
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a Kubernetes (or Ray node) label value (None: it can)."""
    if not _LABEL_VALUE.fullmatch(value):
        return f"must be at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends, got {value!r}"
    return None


def label_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a label key (``[prefix/]name``; None: it can)."""
    prefix, _, name = key.rpartition("/")
    if prefix and not _LABEL_PREFIX.fullmatch(prefix):
        return f"label key prefix must be a DNS subdomain, got {key!r}"
    if not name or label_value_problem(name):
        return f"label key must be [prefix/]name with a 1-63 character name (letters, digits, '-_.'), got {key!r}"
    return None


def dns_label_problem(name: str) -> str | None:
    """Why ``name`` cannot name a Kubernetes object or namespace (None: it can)."""
    if not _DNS_LABEL.fullmatch(name):
        return f"must be at most 63 lower-case letters, digits or '-', alphanumeric at both ends, got {name!r}"
    return None
