"""Files written so that a crash never leaves a half-written one, the hashes that name them, files
opened for reading only when they are regular files, and the one translation of the faults of the
file system (full disk, no permission, read-only, not a regular file) into words a user can act on."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

from maln.errors import WriteError

CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private files; results are meant to be shared like any other file
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


def shown(path) -> str:
    """A path as a message shows it: relative to the working folder when it lies below it."""
    try:
        return str(Path(path).absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- faults of the file system -------------------------------------------------------------------

PROBLEMS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a directory; a regular file is needed",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.ENOENT: "no such file or folder",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error (a failing disk or network file system?)",
}
# Below this much free space, a write that failed without saying why is taken to have met a full
# disk: numpy reports a short write as a bare OSError ("N requested and M written") and torch as
# RuntimeError("[enforce fail at inline_container.cc ...]"), neither with an errno.
FULL_BELOW = 1 << 20


class NotRegularFile(OSError):
    """A path that names a folder, a FIFO, a device or a socket where a file is to be read."""


def _kind(mode: int) -> str | None:
    """None for a regular file; otherwise what the path is, as a message says it."""
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return f"is {what}; a regular file is needed"
    return None if stat.S_ISREG(mode) else "is not a regular file"


def not_regular(path) -> str | None:
    """None when `path` is a regular file (after symbolic links); otherwise what it is instead, or
    why it cannot be read, for a message. Never opens it, so a FIFO cannot block the caller."""
    try:
        return _kind(os.stat(path).st_mode)
    except OSError as e:
        return problem(e) or e.strerror


def open_regular(path):
    """Open `path` for reading in binary mode, refusing anything but a regular file. It is opened
    non-blocking and examined again through the open descriptor, so a FIFO put there after the first
    look is refused too instead of waited on."""
    if (kind := _kind(os.stat(path).st_mode)) is not None:
        raise NotRegularFile(errno.EINVAL, kind, str(path))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if (kind := _kind(os.fstat(fd).st_mode)) is not None:
            raise NotRegularFile(errno.EINVAL, kind, str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def problem(e: BaseException, where=None) -> str | None:
    """What went wrong, in the words of the CLI's error line, when `e` is a fault of the file
    system (`where`: the folder being written, to tell a full disk from other failed writes);
    None for anything else, which is a bug and keeps its traceback."""
    if isinstance(e, NotRegularFile):
        return e.strerror
    if isinstance(e, OSError) and e.errno in PROBLEMS:
        return PROBLEMS[e.errno]
    unexplained_write = (isinstance(e, OSError) and e.errno is None) or (
        isinstance(e, RuntimeError) and "inline_container" in str(e))
    if not unexplained_write or where is None:
        return None
    with contextlib.suppress(OSError):
        fs = os.statvfs(where)
        if fs.f_bavail * fs.f_frsize < FULL_BELOW:
            return PROBLEMS[errno.ENOSPC]
    return f"the write failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"


@contextlib.contextmanager
def reporting_faults(target: Path, what: str = "file"):
    """Turn a fault of the file system met while `target` is written into a WriteError that names
    it and says that the previous `what` (or its absence) was kept. The caller guarantees that: it
    writes elsewhere and renames at the end."""
    target = Path(target)
    existed = os.path.lexists(target)
    try:
        yield
    except (OSError, RuntimeError) as e:
        cause = problem(e, target.parent if target.parent.is_dir() else None)
        if cause is None:
            raise
        kept = f"the previous {what} is unchanged" if existed else f"no {what} was created"
        raise WriteError(f"{cause} while writing {shown(target)}; nothing was changed ({kept})") from e


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it is renamed onto `path` in one step."""
    path = Path(path)
    tmp = None
    try:
        with reporting_faults(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
            os.close(fd)
            yield Path(tmp)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(path) -> dict:
    """git blob SHA-1 (what GitHub pins a file by) and SHA-256 of a file, in one pass."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        blob = hashlib.sha1(b"blob %d\0" % size)
        sha256 = hashlib.sha256()
        while chunk := f.read(CHUNK):
            blob.update(chunk)
            sha256.update(chunk)
    return {"sha1": blob.hexdigest(), "sha256": sha256.hexdigest(), "size": size}


def canonical_hash(obj) -> str:
    """SHA-256 of a JSON-able object, independent of key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
