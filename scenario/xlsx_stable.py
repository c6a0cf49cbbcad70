"""Byte-stable .xlsx files: openpyxl stamps the save time into the zip entries and docProps/core.xml,
so the same registry saved twice would look like a revised file to the loader's content hash."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

FIXED_ZIP_TIME = (2023, 1, 1, 0, 0, 0)
FIXED_STAMP = "2023-01-01T00:00:00Z"


def save_stable(workbook, path: Path) -> None:
    workbook.save(path)
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info.filename)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info, data in entries:
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)", rb"\g<1>" + FIXED_STAMP.encode() + rb"\2",
                              data)
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, data)
