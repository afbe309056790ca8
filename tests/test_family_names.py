"""No module outside a family folder names a registered family (the one-folder-per-family rule).

The names come from the registry, so a newly registered family is covered without editing this
test: each family's key, ``Family.name`` and ``Family.model_type``, reduced to the leading run
of letters (``ovis2_5`` -> ``ovis``, ``qwen3_vl`` -> ``qwen``), so versioned spellings in prose
("Ovis2.5", "Qwen3-VL", "InternVL3.5") match too.
"""

from __future__ import annotations

import re
from pathlib import Path

import vlm_train
from vlm_train import models as registry
from vlm_train.models import FAMILIES, get_family

PACKAGE = Path(vlm_train.__file__).resolve().parent
REGISTRY = Path(registry.__file__).resolve()


def family_stems() -> set[str]:
    names = set(FAMILIES)
    for key in FAMILIES:
        family = get_family(key)
        names |= {family.name, family.model_type}
    stems = {re.match(r"[a-z]*", n.lower()).group() for n in names}
    # A stem this short would match ordinary words; a new family key needs a longer spelling.
    assert all(len(s) >= 4 for s in stems), stems
    return stems


def family_folders() -> list[Path]:
    """The package folder of each registered family (module path -> vlm_train/models/<family>)."""
    return [PACKAGE.parent.joinpath(*path.split(".")) for path in FAMILIES.values()]


def offending_lines(root: Path, stems: set[str], skip_dirs: list[Path], skip_files: set[Path]) -> list[str]:
    """``file:line: text`` for each line of a ``*.py`` under ``root`` (outside the skipped folders
    and files) holding a stem that starts a word (``provision`` does not name ``ovis``)."""
    pattern = re.compile(r"(?<![a-z])(" + "|".join(sorted(map(re.escape, stems))) + ")", re.IGNORECASE)
    hits = []
    for path in sorted(root.rglob("*.py")):
        path = path.resolve()
        if path in skip_files or any(path.is_relative_to(d) for d in skip_dirs):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(root.parent)}:{n}: {line.strip()}")
    return hits


def test_stems_come_from_the_registry():
    # The stems this project's three families reduce to; fails if the reduction stops working.
    assert {"internvl", "ovis", "qwen"} <= family_stems()
    assert all(d.is_dir() for d in family_folders())


def test_scanner_finds_a_family_name(tmp_path):
    # The scan itself must catch a name (in a comment or a string, any case) and skip a
    # family folder and the registry, or the real test below could pass by scanning nothing.
    pkg = tmp_path / "pkg"
    (pkg / "models" / "fam").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n# as Ovis2.5 does\ny = 'QWEN3'\nz = 'provisional'\n")
    (pkg / "models" / "fam" / "b.py").write_text("# Ovis here is fine\n")
    (pkg / "models" / "reg.py").write_text("FAMILIES = {'ovis2_5': ...}\n")
    hits = offending_lines(
        pkg, {"ovis", "qwen"}, [(pkg / "models" / "fam").resolve()], {(pkg / "models" / "reg.py").resolve()}
    )
    assert hits == ["pkg/a.py:2: # as Ovis2.5 does", "pkg/a.py:3: y = 'QWEN3'"]


def test_no_family_name_outside_the_family_folders():
    hits = offending_lines(PACKAGE, family_stems(), family_folders(), {REGISTRY})
    assert not hits, "family names outside vlm_train/models/<family>/ and the registry:\n" + "\n".join(hits)
