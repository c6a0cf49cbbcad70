"""What in a landing folder is a readable file of which reporter (DESIGN §5).

Only regular files inside the landing root whose name is exactly `<reporter code>.<feed extension>` are
read; anything else gets a ledger row saying why it was not (a `Refusal`), and its content is never
read. Names that editors and uploaders make while a file is being written (hidden `.name`, Office's
`~$name` lock files, `name~` backups) are in-progress files, not deliveries: they are passed over
without a row, as before.

Safety against swapped files: the folders below the landing root are opened one by one without
following symbolic links, and a file is opened with O_NOFOLLOW and checked to be a regular file on
the open descriptor (`pinned`). The readers then read *that* open file, through a private link to the
descriptor, so a file replaced by a link after the check is never followed (no time-of-check /
time-of-use gap). A hard link is an ordinary regular file here: it cannot point outside the file
system, and the kernel's protected_hardlinks forbids linking other users' files.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path, PosixPath

from ingest.feeds import SPECS, FeedSpec
from ingest.rejections import UnreadableFile
from warehouse import reference as ref

# the reference seed naming each feed's reporters (dbt_project/seeds/<seed>.csv), and its code column
REPORTER_SEEDS = {"streets": ("streets", "street_code"), "canteens": ("canteens", "canteen_code"),
                  "assistance": ("assistance_points", "point_code")}
_PROC_FD = Path("/proc/self/fd")


class Refused(Exception):
    """A landed entry that is not read: its reason code and a message a clerk can act on."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True)
class Refusal:
    """One refused entry of a landing folder, ready for its ledger row (text safe to store)."""

    path: str  # the entry's path, any byte that is not UTF-8 written as a backslash escape
    reporter: str | None  # the name's stem, escaped the same way (None: a folder of the landing zone)
    reason_code: str
    message: str
    size: int | None = None  # bytes of a regular file; None for links, folders and the like

    @property
    def error(self) -> str:
        return f"{self.reason_code}: {self.message}"


@dataclass
class Survey:
    """A landing folder's readable files (in name order), its refusals, and the open folder itself."""

    files: list[Path] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    folder_fd: int | None = None  # open the files relative to this (see `pinned`)


def escaped(text: str) -> str:
    """`text` (an OS name: undecodable bytes are lone surrogates) as storable text: those bytes as \\xNN."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def is_in_progress(name: str) -> bool:
    """A name editors and uploaders give a file while it is being written, or keep beside it."""
    return name.startswith((".", "~$")) or name.endswith("~")


@cache
def known_reporters(source: str) -> frozenset[str]:
    """The reporter codes of a feed, from its reference seed in force (warehouse.reference.seed_rows: Taiyuan's,
    and in a province deployment, GOV_SCOPE=shanxi, the other cities' too)."""
    seed, column = REPORTER_SEEDS[source]
    return frozenset(row[column] for row in ref.seed_rows(seed))


def utf8_problem(name: str) -> Refused | None:
    """A name that is not valid UTF-8 (the database stores text, and no reporter code is such a name)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return Refused("name_not_utf8", f"the file name {escaped(name)} is not valid UTF-8 text (some bytes "
                                        "are shown as \\xNN); rename it to the reporter's code")
    return None


def name_problem(source: str, name: str, codes: frozenset[str] | None = None) -> Refused | None:
    """Why a regular file's name is not `<reporter code>.<extension>` of the feed (None: it is)."""
    if (problem := utf8_problem(name)) is not None:
        return problem
    codes = known_reporters(source) if codes is None else codes
    extension = SPECS[source].extension
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    if suffix.lower() != extension:
        return Refused("wrong_file_type", f"{name}: the {source} feed takes .{extension} files named "
                                          f"<code>.{extension}; this name ends in {('.' + suffix) if dot else 'no type'}")
    if stem in codes:
        return None
    expected = f"<reporter code>.{extension}"
    copied = sorted(c for c in codes if stem.startswith(c))
    if copied:
        return Refused("copy_file_name", f"{name}: the name is not a reporter code but looks like a copy or "
                                         f"renamed version of {copied[-1]}.{extension}; a file is read only "
                                         f"when it is named {expected}")
    if stem and any(c.startswith(stem) for c in codes):
        return Refused("unknown_reporter", f"{name}: '{stem}' is only the beginning of a reporter code; a file "
                                           f"is read only when it is named {expected}")
    return Refused("unknown_reporter", f"{name}: '{stem}' is not the code of any {source} reporter in the "
                                       f"reference data; a file is read only when it is named {expected}")


def entry_problem(mode: int) -> Refused | None:
    """Why an entry of this file mode (from lstat) is not a file that is read."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return Refused("symlink", "it is a symbolic link (a shortcut to a file elsewhere); links are never "
                                  "followed, so nothing was read: put the file itself in the folder")
    if stat.S_ISDIR(mode):
        return Refused("not_a_file", "it is a folder, not a file")
    return Refused("not_a_file", "it is not a regular file (a device, pipe or socket)")


def _open_folder(root: Path, parts: tuple[str, ...]) -> int:
    """The folder root/parts... opened without following a link below the root (the root itself, from the
    configuration, may be one). Raises FileNotFoundError when it does not exist, Refused when a part is a
    link or not a folder."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    here = root
    try:
        for part in parts:
            here = here / part
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                    refusal = entry_problem(mode) if stat.S_ISLNK(mode) else Refused(
                        "not_a_folder", "it is a file where a folder of the landing zone belongs")
                    raise Refused(refusal.reason_code, f"{escaped(str(here))}: {refusal}") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def survey(root: Path, source: str, day: date, reporter: str | None = None) -> Iterator[Survey]:
    """The entries of landing folder `root/source/YYYY-MM-DD`: the readable files of the feed, and a
    refusal for every other entry; with `reporter` (one reporter's re-load) only the entries of its name.
    The folder stays open while the context lasts: load its files with `pinned(path, survey.folder_fd)`."""
    folder = root / source / day.isoformat()
    try:
        fd = _open_folder(root, (source, day.isoformat()))
    except FileNotFoundError:
        yield Survey()
        return
    except Refused as err:
        yield Survey(refused=[] if reporter else [Refusal(escaped(str(folder)), None, err.reason_code, str(err))])
        return
    try:
        found = Survey(folder_fd=fd)
        codes = known_reporters(source)
        for name in sorted(os.listdir(fd)):
            if is_in_progress(name) or (reporter and name.rpartition(".")[0] != reporter):
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since the listing (moved away by its uploader): nothing to read or record
            problem = entry_problem(st.st_mode)
            if problem is not None:
                problem = Refused(problem.reason_code, f"{escaped(name)}: {problem}")
            else:
                problem = name_problem(source, name, codes)
            if problem is None:
                found.files.append(folder / name)
            else:
                found.refused.append(Refusal(escaped(str(folder / name)), escaped(name.rpartition(".")[0] or name),
                                             problem.reason_code, str(problem),
                                             st.st_size if stat.S_ISREG(st.st_mode) else None))
        yield found
    finally:
        os.close(fd)


def empty_file_note(spec: FeedSpec, path: Path) -> str:
    """What a 0-byte file means: in JSON Lines (no header) a point's "no events today", the note of its
    loaded ledger row; a CSV or workbook without even a header is unreadable (UnreadableFile)."""
    if spec.extension == "jsonl":
        return f"empty_file: {path.name} is empty (0 bytes): no events reported for the day"
    raise UnreadableFile("empty_file", f"{path.name}: the file is empty (0 bytes), not even a header row")


@contextmanager
def landed_folder(root: Path, path: Path) -> Iterator[int | None]:
    """The folder of `path` opened without following a link below `root` when the path lies in the
    landing root (for `pinned`), else None (the path is opened as it is). Raises Refused."""
    try:
        parts = path.parent.relative_to(root).parts
    except ValueError:
        yield None
        return
    try:
        fd = _open_folder(root, parts)
    except FileNotFoundError:
        raise Refused("missing_file", f"{escaped(str(path.parent))}: the folder is gone") from None
    try:
        yield fd
    finally:
        os.close(fd)


class _PinnedPath(PosixPath):
    """The landed file's path (its str, name and equality), whose file-system form (`os.fspath`, which
    `open`, `stat`, zipfile and openpyxl use) is a private link to the file opened by `pinned`."""

    _link: str | None = None

    def __fspath__(self) -> str:
        return self._link if self._link is not None else super().__fspath__()


@contextmanager
def pinned(path: Path, folder_fd: int | None = None) -> Iterator[tuple[Path, int]]:
    """Open the landed file `path` (relative to `folder_fd` when given) without following a link, check
    it is a regular file, and give (a path that reads exactly that open file, its size). Raises Refused
    (a link, not a regular file, gone).

    Readers open the path they are given; the given path leads to the open descriptor (/proc/self/fd),
    so whatever is renamed or linked at `path` meanwhile is never read."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a pipe must not hang us
    try:
        fd = os.open(path.name if folder_fd is not None else path, flags, dir_fd=folder_fd)
    except FileNotFoundError:
        raise Refused("missing_file", f"{escaped(path.name)}: the file went away before it was read") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise Refused("symlink", f"{escaped(path.name)}: {entry_problem(stat.S_IFLNK)}") from None
        raise
    private = None
    try:
        st = os.fstat(fd)
        problem = entry_problem(st.st_mode)
        if problem is not None:
            raise Refused(problem.reason_code, f"{escaped(path.name)}: {problem}")
        readable = _PinnedPath(path)
        if _PROC_FD.is_dir():  # Linux; elsewhere the checked path is read as it is
            private = tempfile.mkdtemp(prefix="gov-landed-")
            link = os.path.join(private, path.name)  # the same name: readers see the file's own extension
            os.symlink(_PROC_FD / str(fd), link)
            readable._link = link
        yield readable, st.st_size
    finally:
        os.close(fd)
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
