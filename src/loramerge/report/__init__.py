"""Tables and figures of the paper from selection results and analysis CSVs, written reproducibly and atomically.

``loramerge.report.tables`` builds DataFrames (Tables 1–3 and 7) and writes CSV + Markdown pairs;
``loramerge.report.figures`` draws Figures 1–3 as PNG + PDF. Both write through :func:`write_atomically`, so a reader
(or an interrupted workflow) never sees a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp_path)`` on a temporary file in ``path``'s folder, then move it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    os.chmod(temp_path, 0o644)  # mkstemp makes it 0600; outputs are meant to be read by others
    try:
        write(temp_path)
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8 with ``\\n`` line ends, atomically."""
    return write_atomically(path, lambda temp: temp.write_bytes(text.encode("utf-8")))
