"""The one writer of generated files, and the staleness check that compares them with what is on disk."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from optiinfra.cliutil import UsageError


def write_files(out_dir: Path, files: Mapping[str, str]) -> list[Path]:
    """Write each ``relative path -> text`` under ``out_dir`` (UTF-8, parents created); the paths written.
    A directory or file that cannot be written is a UsageError naming it (one line, exit 2)."""
    written = []
    for name, text in files.items():
        path = out_dir / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
        written.append(path)
    return written


def stale_files(root: Path, files: Mapping[str, str], owned_dirs: Iterable[str] = ()) -> list[str]:
    """Relative paths whose file is missing or differs from ``files``, and files under ``owned_dirs`` (folders
    holding only generated files) that ``files`` no longer produces; sorted."""
    stale = []
    for name, text in files.items():
        path = root / name
        try:
            if path.read_text(encoding="utf-8") != text:
                stale.append(name)
        except (OSError, UnicodeDecodeError):
            stale.append(name)
    return sorted(stale + orphans(root, files, owned_dirs))


def orphans(root: Path, files: Mapping[str, str], owned_dirs: Iterable[str]) -> list[str]:
    """Files under ``owned_dirs`` that ``files`` does not produce (left over from an older generator)."""
    found = []
    for folder in owned_dirs:
        for path in sorted((root / folder).rglob("*")):
            name = path.relative_to(root).as_posix()
            if path.is_file() and name not in files:
                found.append(name)
    return found
