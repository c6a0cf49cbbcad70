"""Which text encoding a landed file is in, read from its bytes: one pass (`scan`) gives the content hash
(the ledger's idempotency key), the size and the encoding a CSV reader should assume; `EncodingVote`
decides between UTF-8 and GB18030 line by line; `looks_binary` spots UTF-16 and binary files.
The JSON Lines reader uses the same vote."""

from __future__ import annotations

import codecs
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


class NotUtf8(Exception):
    """A CSV read as UTF-8 without checking the file first (`read(..., unchecked_utf8=True)`) is not UTF-8."""



@dataclass(frozen=True)
class FileScan:
    """What one pass over a file's bytes tells before its load: the content hash (the ledger's
    idempotency key), the size, and the encoding a CSV reader should assume."""

    sha256: str
    size: int
    # utf-8-sig (a BOM); utf-8 (the whole file decodes, or most of its lines do: `EncodingVote`);
    # gb18030 (most of its non-ASCII lines are not UTF-8); UNDECODABLE (neither, or NUL bytes throughout)
    encoding: str


SCAN_CHUNK = 1 << 20
THREADED_SCAN_BYTES = 4 << 20  # from this size on, hash in a second thread while this one checks UTF-8
UNDECODABLE = "undecodable"
VOTE_LINES = 20_000  # non-ASCII lines the encoding vote looks at: the first ones decide (bounded work)


class EncodingVote:
    """Which encoding a CSV that is not entirely UTF-8 is in, by its lines: of the lines that are not plain
    ASCII (at most the first VOTE_LINES of them), how many are UTF-8 and how many are not. A UTF-8 file
    with one stray byte (a GB18030 word pasted into one row) has one line against thousands: it stays UTF-8
    and that row is rejected. A GB18030 file has (nearly) none of its non-ASCII lines valid UTF-8: the
    header, every row with a Chinese word. NUL bytes on most lines are UTF-16 or a binary file.

    Chunks are fed in file order; only chunks that fail to decode as a whole are looked at line by line."""

    def __init__(self) -> None:
        self.carry = b""
        self.lines = self.utf8 = self.other = self.gb18030 = self.nul = 0

    def feed(self, chunk: bytes, final: bool = False) -> None:
        data = self.carry + chunk
        cut = len(data) if final else data.rfind(b"\n") + 1
        if cut == 0 and len(data) < SCAN_CHUNK:  # no line end yet: wait for it (bounded)
            self.carry = data
            return
        data, self.carry = (data[:cut], data[cut:]) if cut else (data, b"")
        if self.decided:
            return  # the first lines decided
        self.lines += data.count(b"\n") + (final and not data.endswith(b"\n") and bool(data))
        if data.isascii() and b"\x00" not in data:
            return
        lines = data.split(b"\n")
        if b"\x00" not in data:
            try:
                data.decode()
            except UnicodeDecodeError:
                pass
            else:
                self.utf8 += list(map(bytes.isascii, lines)).count(False)
                return
        for line in lines:
            self._vote(line)

    def _vote(self, line: bytes) -> None:
        if b"\x00" in line:
            self.nul += 1
        elif line.isascii():
            return
        else:
            try:
                line.decode()
            except UnicodeDecodeError:
                self.other += 1
                try:
                    line.decode("gb18030")
                    self.gb18030 += 1
                except UnicodeDecodeError:
                    pass
            else:
                self.utf8 += 1

    @property
    def decided(self) -> bool:
        """Whether the first VOTE_LINES non-ASCII lines have been seen: later chunks change nothing."""
        return self.utf8 + self.other + self.nul >= VOTE_LINES

    def encoding(self) -> str:
        """The file's encoding, given that it is not entirely valid UTF-8 (or holds NUL bytes)."""
        if self.nul * 2 > max(self.lines, 1):
            return UNDECODABLE
        if self.other <= self.utf8:
            return "utf-8"  # mostly UTF-8 (or only NUL lines wrong): the odd lines are rejected row by row
        if self.gb18030 * 2 >= self.other:
            return "gb18030"
        if (self.other - self.gb18030) * 2 > self.lines:
            return UNDECODABLE  # most of the file is neither
        return "utf-8"  # a few lines are neither (a stray byte): rejected row by row


def scan(path: Path) -> FileScan:
    """Read the file once for its SHA-256 and its encoding. On a large file the hashing runs in a second
    thread (hashlib releases the GIL on large buffers) while this one decodes, so the pass costs about
    what the slower of the two costs, not their sum: the server has nothing to do until it ends."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    vote = EncodingVote()
    utf8, size, nul = True, 0, False
    with path.open("rb") as f, ThreadPoolExecutor(max_workers=1) as pool:
        bom = f.read(3) == codecs.BOM_UTF8
        f.seek(0)
        threaded = path.stat().st_size >= THREADED_SCAN_BYTES
        hashing = None
        while chunk := f.read(SCAN_CHUNK):
            size += len(chunk)
            if threaded:
                if hashing is not None:
                    hashing.result()
                hashing = pool.submit(digest.update, chunk)
            else:
                digest.update(chunk)
            if not bom:
                nul = nul or b"\x00" in chunk
                vote.feed(chunk)
                if utf8:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        utf8 = False
        if hashing is not None:
            hashing.result()
    if bom:
        return FileScan(digest.hexdigest(), size, "utf-8-sig")
    vote.feed(b"", final=True)
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    encoding = "utf-8" if utf8 and not nul else vote.encoding()
    return FileScan(digest.hexdigest(), size, encoding)


def content_sha256(path: Path) -> str:
    """The file's SHA-256 (hex) alone, without `scan`'s encoding check: for a second thread while the
    file's rows are being loaded (hashlib and file reads release the GIL)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()



def looks_binary(first_line: bytes) -> bool:
    """NUL bytes in a tenth or more of a file's first line: UTF-16 without a BOM (a NUL beside every ASCII
    character) or a binary file, not a text line with one stray NUL (that one is a rejected row)."""
    return first_line.count(b"\x00") * 10 >= max(len(first_line), 1)

