"""Writing files atomically: a temporary file beside the target, then a rename.

Every failure is a UserError ("cannot write '<path>': <reason>", exit 1) rather than an OSError, and a
user's files are never lost: a folder is never a target, a symlink's target file is replaced (the link
stays), and a special file (a device, a fifo) is written in place instead of being replaced.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from .errors import UserError


class WriteError(UserError):
    """Writing a file failed (a full disk, no permission): the old file, if any, is untouched."""


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _check_parent(shown: Path, target: Path, make_parents: bool) -> None:
    parent = target.parent
    if parent.is_dir():
        return
    # the nearest existing ancestor: a file there means no folder can be made
    p = parent
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.exists() and not p.is_dir():
        raise UserError(f"cannot write '{shown}': '{p}' is a file, not a folder")
    if not make_parents:
        raise UserError(f"cannot write '{shown}': folder '{parent}' does not exist",
                        hint="create the folder first, or choose another output path")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write '{shown}': cannot create folder '{parent}': {_reason(e)}") from None


def atomic_write(path: str | Path, write: Callable[[str], None], make_parents: bool = False) -> None:
    """Call write(tmp_path) then move tmp_path over `path`; the old file survives any failure.

    A missing parent folder is an error unless `make_parents`. A symlink is followed (its target file
    is replaced atomically); a device or fifo is written directly (no rename). OSErrors become
    UserError("cannot write '<path>': <reason>")."""
    shown = Path(path)
    target = shown
    try:
        if target.is_symlink():
            target = Path(os.path.realpath(target))
        if target.is_dir():
            raise UserError(f"cannot write '{shown}': it is a folder",
                            hint="give a file name inside it, e.g. " + str(shown / ("out" + (shown.suffix or ""))))
        try:
            st = os.stat(target)
        except FileNotFoundError:
            st = None
        except NotADirectoryError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            write(str(target))                       # /dev/null, /dev/stdout, a fifo: write in place
            return
        _check_parent(shown, target, make_parents)
        mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, mode)                       # mkstemp makes 0600; give the file the usual mode
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except UserError:
        raise
    except ValueError:                               # os functions refuse a NUL character
        raise UserError(f"cannot write '{shown}': the path contains a NUL character") from None
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            raise WriteError(f"cannot write '{shown}': a part of the path is a file, not a folder") from None
        raise WriteError(f"cannot write '{shown}': {_reason(e)}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str, make_parents: bool = False) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), make_parents)


def atomic_write_bytes(path: str | Path, data: bytes, make_parents: bool = False) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), make_parents)


def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, ValueError):
        return False


def guard_output(path: str | Path, suffix: str, reads: tuple = ()) -> None:
    """Refuse an -o that would replace a file the command reads, a folder, or an existing file of another
    kind (a spec, a checkpoint, ...: `specc compile -o specs/lib/resnet.yaml` must not destroy the library);
    a new file with another suffix only gets a note."""
    p = Path(path)
    for f in reads:
        if f and same_file(p, f):
            raise UserError(f"-o '{path}' is one of the command's input files; refusing to overwrite it", code=2)
    try:
        p.exists()
    except (OSError, ValueError) as e:              # a NUL character, a name too long for the file system
        raise UserError(f"cannot write '{path}': {getattr(e, 'strerror', None) or e}") from None
    if p.is_dir():
        raise UserError(f"cannot write '{path}': it is a folder", hint=f"give a file name ending in {suffix}")
    if p.suffix.lower() != suffix:
        if p.is_file():                                     # devices and fifos (/dev/stdout) are fine
            raise UserError(f"'{path}' exists and is not a {suffix} file; refusing to replace it",
                            hint=f"choose a path ending in {suffix}, or remove that file first")
        if not p.exists():
            import sys
            print(f"note: '{path}' does not end in {suffix}", file=sys.stderr)
