"""Secrets out of every artefact: redaction by key pattern and of credentials in URLs.

A value is a secret when its key names one (a word ``token``, ``secret``, ``key``, ``apikey``,
``password``, ``passwd``, ``auth``, ``credential(s)``) or when it is a URL carrying
``user:password@``. Keys that *refer* to a secret (``secretName``, ``auth_token_path``) or name
a special token of a tokenizer (``pad_token``, ``eos_token``) are not secrets. Every artefact
the project writes or prints (config.yaml, dry-run output, the Ray ``train_loop_config``,
sbatch argv and ``#SBATCH`` lines, RayJob entrypoints and manifests) passes through here;
a secret on the command line is refused outright (``check_override``), since shell history,
``ps`` and job manifests keep the command line.
"""

from __future__ import annotations

import re
from typing import Any

MARK = "***"
SECRET_WORDS = frozenset({"token", "secret", "key", "apikey", "password", "passwd", "auth", "credential", "credentials"})
# A last word that makes the key a reference to a secret, not the secret itself.
REFERENCE_WORDS = frozenset({"name", "path", "file", "dir", "mode", "options", "env", "ref", "id", "type"})
# Words before "token" naming a tokenizer's special token (TRL's pad_token, eos_token).
TOKENIZER_WORDS = frozenset({"pad", "eos", "bos", "unk", "sep", "cls", "mask", "image", "special"})
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s/:@]*):(?P<pw>[^\s/@]+)@")
_ASSIGNMENT = re.compile(r"(?P<key>[A-Za-z_][\w.-]*)=(?P<value>[^\s,]*)")


def _words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key (or a dotted override path) names a secret value."""
    words = _words(str(key).rsplit(".", 1)[-1])
    if not words or words[-1] in REFERENCE_WORDS:
        return False
    for i, w in enumerate(words):
        if w in SECRET_WORDS and not (w == "token" and i > 0 and words[i - 1] in TOKENIZER_WORDS):
            return True
    return False


def has_url_credentials(text: str) -> bool:
    return bool(_URL_CREDENTIALS.search(text))


def redact_text(text: str) -> str:
    """``text`` with URL passwords and ``secret_key=value`` assignments masked."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{MARK}@", text)
    return _ASSIGNMENT.sub(lambda m: f"{m['key']}={MARK}" if is_secret_key(m["key"]) and m["value"] else m[0], text)


def redact(tree: Any) -> Any:
    """A copy of ``tree`` (dicts, lists, strings) with secret values replaced by ``***``."""
    if isinstance(tree, dict):
        return {k: MARK if is_secret_key(k) and v not in (None, "") and not isinstance(v, (dict, list)) else redact(v)
                for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact(v) for v in tree]
    if isinstance(tree, str):
        return redact_text(tree)
    return tree


def strip_secrets(tree: Any) -> tuple[Any, list[str]]:
    """(``tree`` without its secret-keyed values, their dotted key paths). What workers get:
    a secret they need comes from their environment (e.g. ``HF_TOKEN``), not the job's config."""
    dropped: list[str] = []

    def walk(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                key = f"{prefix}{k}"
                if is_secret_key(k) and v not in (None, "") and not isinstance(v, (dict, list)):
                    dropped.append(key)
                else:
                    out[k] = walk(v, key + ".")
            return out
        if isinstance(node, list):
            return [walk(v, prefix) for v in node]
        return redact_text(node) if isinstance(node, str) else node

    return walk(tree, ""), dropped


def redact_strings(tree: Any) -> Any:
    """``tree`` with only its strings redacted (``redact_text``): for manifests, whose keys
    follow other schemas (a toleration's ``key``, an ``ssh_private_key`` path) and hold no secret."""
    if isinstance(tree, dict):
        return {k: redact_strings(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact_strings(v) for v in tree]
    return redact_text(tree) if isinstance(tree, str) else tree


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with secret assignments and URL passwords masked."""
    return [redact_text(a) for a in argv]


def check_override(override: str) -> str | None:
    """Why a command-line override may not carry its value (None: it may)."""
    path, _, value = override.partition("=")
    if value.strip() and (is_secret_key(path.strip()) or has_url_credentials(value)):
        return (f"{path.strip()}: a secret on the command line ends up in shell history, ps, job manifests "
                "and logs; put it in an environment variable (e.g. HF_TOKEN) that the job's processes inherit")
    return None
