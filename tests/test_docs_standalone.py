"""The repository stands alone: no tracked file names a folder beside it or a document it does not hold.

Every file git tracks (and every new file not ignored) is read. It may not name the reference folder that sat
beside the repository while it was built (its data now lives in tests/data, with provenance), and every
document it cites must exist: a Markdown link's target relative to the linking file, and a cited ``*.md``
relative to the citing file, the repository root or docs/ (a bare file name: anywhere in the repository).
Third-party captures under tests/data are exempt from the citation check only: their provenance names files
in other projects.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import REPO

#: The reference folder beside the repository, however it is spelled (written so this file does not name it).
OUTSIDE = re.compile(r"\.\./share[d]\b|\bshare[d]/(?:refdata|spec|research)\b|/work/share[d]\b")
URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s)>\]\"'`]+", re.I)
MD_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
CITED_MD = re.compile(r"(?<![\w./-])((?:\.{1,2}/)?[\w.-]+(?:/[\w.-]+)*\.md)\b")
EXEMPT_CITATIONS = ("tests/data/",)


def tracked_files(root: Path) -> list[str]:
    """Tracked files plus new ones git does not ignore; without git, every file under ``root``."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(line for line in out.splitlines() if line and (root / line).is_file())


def _cited_exists(root: Path, source: Path, cited: str, names: set[str]) -> bool:
    if "/" not in cited.removeprefix("./"):
        return cited.removeprefix("./") in names
    return any((base / cited).resolve().is_file() for base in (source.parent, root, root / "docs"))


def problems(root: Path, files: list[str]) -> list[str]:
    """``file:line: what is wrong`` for every reference outside the repository and every missing document."""
    names = {Path(f).name for f in files}
    found: list[str] = []
    for rel in files:
        path = root / rel
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        check_citations = not rel.startswith(EXEMPT_CITATIONS)
        for number, line in enumerate(text.splitlines(), 1):
            for hit in OUTSIDE.findall(line):
                found.append(f"{rel}:{number}: names {hit!r}, outside the repository")
            if not check_citations:
                continue
            bare = URL.sub(" ", line)
            if rel.endswith(".md"):
                for link in MD_LINK.findall(bare):
                    target = link.split("#", 1)[0]
                    if target and not target.startswith("mailto:") and not (path.parent / target).exists():
                        found.append(f"{rel}:{number}: links to {target}, which does not exist")
            for cited in CITED_MD.findall(bare):
                if not _cited_exists(root, path, cited, names):
                    found.append(f"{rel}:{number}: cites {cited}, which is not in the repository")
    return found


def test_no_file_names_the_outside_or_a_missing_doc() -> None:
    files = tracked_files(REPO)
    assert len(files) > 200, f"only {len(files)} files found under {REPO}"
    assert any(f.endswith(".md") for f in files) and any(f.endswith(".py") for f in files)
    found = problems(REPO, files)
    assert not found, "\n".join(found)


def test_the_guard_catches_planted_references(tmp_path: Path) -> None:
    # Spelled in pieces so that this file itself names nothing it forbids.
    up, md = "../" + "shared", ".md"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / f"metrics{md}").write_text("# Metrics\n")
    (tmp_path / "pkg.py").write_text(f'"""The catalogue (METRICS{md}), see docs/metrics{md}."""\n'
                                     f'DATA = "{up}/refdata/engines"\n')
    (tmp_path / f"README{md}").write_text(f"See [metrics](docs/metrics{md}), [plans](docs/plans{md}) and\n"
                                          f"[the spec]({up}/spec/PLANS{md}).\n"
                                          f"Online: [home](https://example.org/NOTES{md}).\n")
    (tmp_path / "deploy.yaml").write_text(f"# the notes: research/log-signatures{md}\n")
    found = problems(tmp_path, tracked_files(tmp_path))
    assert sorted(found) == sorted([
        f"pkg.py:1: cites METRICS{md}, which is not in the repository",
        f"pkg.py:2: names '{up}', outside the repository",
        f"README{md}:1: links to docs/plans{md}, which does not exist",
        f"README{md}:1: cites docs/plans{md}, which is not in the repository",
        f"README{md}:2: names '{up}', outside the repository",
        f"README{md}:2: links to {up}/spec/PLANS{md}, which does not exist",
        f"README{md}:2: cites {up}/spec/PLANS{md}, which is not in the repository",
        f"deploy.yaml:1: cites research/log-signatures{md}, which is not in the repository",
    ]), "\n".join(found)


def test_every_captured_file_has_its_provenance() -> None:
    """Each file under tests/data is named in its folder's PROVENANCE.md, and every file named there exists."""
    folders = sorted(p for p in (REPO / "tests" / "data").iterdir() if p.is_dir())
    assert [p.name for p in folders] == ["engines", "kube-prometheus-stack", "logs"]
    for folder in folders:
        provenance = (folder / "PROVENANCE.md").read_text(encoding="utf-8")
        listed = set(re.findall(r"^\| `?([\w.-]+\.(?:prom|log|yaml))`? \|", provenance, re.M))
        captured = {p.name for p in folder.iterdir() if p.name != "PROVENANCE.md"}
        assert len(captured) >= (1 if folder.name == "kube-prometheus-stack" else 10), folder.name
        assert listed == captured, folder.name
