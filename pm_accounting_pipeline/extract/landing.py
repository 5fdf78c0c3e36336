"""The landing zone: validated, content-addressed copies of dropped files under
`data_dir/landing/<entity>/`, each with a `<name>.meta.json` sidecar, and the listing the raw asset
and the file-drop sensor read.

Landing the same bytes twice is a no-op ("already landed"), whatever the file is called. Files are
written under a temporary dot-name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.core.entities import assign_entities
from pm_accounting_pipeline.extract.parse import parse_bytes

SIDECAR_SUFFIX = ".meta.json"
LANDED, ALREADY_LANDED, REJECTED = "landed", "already landed", "rejected"
_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")
_HASH_PREFIX = 12  # hex digits of the sha256 in a landed file's name
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class LandingFile:
    """A file in the landing zone as the raw asset and the sensor see it."""

    path: Path
    file_hash: str
    format: str | None
    extracted_at: datetime  # the sidecar's landed_at, else the file's modification time (UTC)
    original_name: str | None = None
    work_date_min: date | None = None
    work_date_max: date | None = None


@dataclass(frozen=True)
class LandingResult:
    """What happened to one file handed to `land_files`, for the CLI to print."""

    source: Path
    status: str  # "landed" | "already landed" | "rejected"
    file_hash: str | None
    format: str | None
    landed_path: Path | None
    rows_in: int
    rows_ok: int
    rows_quarantined: int
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    # Accepted time entries per legal entity they are assigned to (core/entities.py), under the
    # mapping document in force when the file was landed: rows may belong to another entity than
    # the folder's, and `pm-accounting run` then needs that entity too.
    rows_by_entity: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.status != REJECTED

    @property
    def message(self) -> str:
        name = self.source.name
        if self.status == REJECTED:
            return f"rejected: {self.error}"
        landed = self.landed_path.name if self.landed_path else "?"
        if self.status == ALREADY_LANDED:
            return f"{name}: already landed as {landed} (same content); nothing to do"
        counts = ", ".join(f"{reason} {n}" for reason, n in sorted(self.quarantined_by_reason.items()))
        tail = f"; quarantined {self.rows_quarantined} ({counts})" if self.rows_quarantined else ""
        return f"{name}: landed as {landed} ({self.format}): {self.rows_ok} of {self.rows_in} rows accepted{tail}"


def _is_data_file(path: Path) -> bool:
    name = path.name
    return (
        path.is_file()
        and not name.startswith((".", "~"))
        and not name.endswith(SIDECAR_SUFFIX)
        and not name.endswith(_TEMP_SUFFIXES)
    )


# Hashes of landing files without a sidecar (e.g. written straight into landing by the demo), keyed by
# (path, size, mtime) so a sensor tick does not re-read unchanged files.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256_file(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    cached = _HASH_CACHE.get(key)
    if cached is None:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        cached = _HASH_CACHE[key] = h.hexdigest()
    return cached


def _read_sidecar(path: Path) -> dict[str, object] | None:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("file_hash"), str) else None


def _date_or_none(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def list_landing_files(data_dir: Path, entity: str) -> list[LandingFile]:
    """The entity's landed files, sorted by name; sidecars and temporary files are ignored."""
    folder = Path(data_dir) / "landing" / entity
    if not folder.is_dir():
        return []
    out: list[LandingFile] = []
    for path in sorted(folder.iterdir()):
        if not _is_data_file(path):
            continue
        meta = _read_sidecar(path)
        landed_at = None
        if meta is not None:
            try:
                landed_at = datetime.fromisoformat(str(meta.get("landed_at")))
            except ValueError:
                landed_at = None
        if meta is None or landed_at is None:
            mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
            out.append(LandingFile(path, _sha256_file(path), None, mtime))
            continue
        fmt = meta.get("format")
        original = meta.get("original_name")
        out.append(
            LandingFile(
                path=path,
                file_hash=str(meta["file_hash"]),
                format=fmt if isinstance(fmt, str) else None,
                extracted_at=landed_at.astimezone(UTC) if landed_at.tzinfo else landed_at.replace(tzinfo=UTC),
                original_name=original if isinstance(original, str) else None,
                work_date_min=_date_or_none(meta.get("work_date_min")),
                work_date_max=_date_or_none(meta.get("work_date_max")),
            )
        )
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def landed_name(original_name: str, file_hash: str) -> str:
    """Content-addressed name: `<sha256 prefix>-<original name, made filesystem-safe>`."""
    safe = _UNSAFE.sub("_", original_name).strip("._") or "file"
    return f"{file_hash[:_HASH_PREFIX]}-{safe}"


def land_files(
    paths: list[Path],
    entity: str,
    data_dir: Path,
    mapping: MappingDocument,
    fmt: str | None = None,
    now: datetime | None = None,
) -> list[LandingResult]:
    """Validate each file with the parser and copy the accepted ones into the landing zone.

    A file is rejected (not copied) when it cannot be used at all: unreadable, not a recognised format,
    required columns missing, ambiguous dates. Files with some bad rows are landed; their bad rows are
    quarantined when the raw asset reads them.
    """
    mapping.entity(entity)  # fail fast on an unknown entity
    landed_at = (now or datetime.now(UTC)).astimezone(UTC)
    folder = Path(data_dir) / "landing" / entity
    folder.mkdir(parents=True, exist_ok=True)
    known = {lf.file_hash: lf for lf in list_landing_files(data_dir, entity)}
    results: list[LandingResult] = []
    for raw_path in paths:
        path = Path(raw_path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            results.append(
                LandingResult(
                    path, REJECTED, None, None, None, 1, 0, 1, {"file_unreadable": 1},
                    f"{path.name}: cannot be read: {exc.strerror or exc}",
                )
            )  # fmt: skip
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in known:
            results.append(_already_landed(path, known[digest]))
            continue
        parsed = parse_bytes(data, entity, mapping, extracted_at=landed_at, source_file=path.name, fmt=fmt)
        if parsed.error is not None:
            results.append(
                LandingResult(
                    path, REJECTED, digest, None if parsed.format == "unknown" else parsed.format, None,
                    parsed.rows_in, parsed.rows_ok, parsed.quarantine.height, parsed.quarantined_by_reason,
                    parsed.error,
                )
            )  # fmt: skip
            continue
        target = folder / landed_name(path.name, digest)
        _write_atomic(target, data)
        by_entity = _rows_by_entity(parsed.rows, mapping)
        span = parsed.work_date_range
        meta = {
            "file_hash": digest,
            "format": parsed.format,
            "landed_at": landed_at.isoformat(),
            "rows_in": parsed.rows_in,
            "rows_ok": parsed.rows_ok,
            "rows_quarantined": parsed.quarantine.height,
            "quarantined_by_reason": parsed.quarantined_by_reason,
            "original_name": path.name,
            "work_date_min": span[0].isoformat() if span else None,
            "work_date_max": span[1].isoformat() if span else None,
            "rows_by_entity": by_entity,
        }
        _write_atomic(
            target.with_name(target.name + SIDECAR_SUFFIX), json.dumps(meta, indent=2).encode("utf-8")
        )
        known[digest] = LandingFile(
            target,
            digest,
            parsed.format,
            landed_at,
            path.name,
            span[0] if span else None,
            span[1] if span else None,
        )
        results.append(
            LandingResult(
                path, LANDED, digest, parsed.format, target, parsed.rows_in, parsed.rows_ok,
                parsed.quarantine.height, parsed.quarantined_by_reason, None, by_entity,
            )
        )  # fmt: skip
    return results


def _rows_by_entity(rows: pl.DataFrame, mapping: MappingDocument) -> dict[str, int]:
    """Time entries per assigned entity (rows no entity can be given count under "quarantined")."""
    if "work_date" not in rows.columns or rows.height == 0:
        return {}
    res = assign_entities(rows, mapping)
    counts = {str(e): int(n) for e, n in res.rows.group_by("entity").len().sort("entity").iter_rows()}
    if res.quarantine.height:
        counts["quarantined"] = res.quarantine.height
    return counts


def _already_landed(path: Path, existing: LandingFile) -> LandingResult:
    meta = _read_sidecar(existing.path) or {}

    def count(key: str) -> int:
        value = meta.get(key)
        return value if isinstance(value, int) else 0

    reasons = meta.get("quarantined_by_reason")
    by_entity = meta.get("rows_by_entity")
    return LandingResult(
        source=path,
        status=ALREADY_LANDED,
        file_hash=existing.file_hash,
        format=existing.format,
        landed_path=existing.path,
        rows_in=count("rows_in"),
        rows_ok=count("rows_ok"),
        rows_quarantined=count("rows_quarantined"),
        quarantined_by_reason=dict(reasons) if isinstance(reasons, dict) else {},
        error=None,
        rows_by_entity=dict(by_entity) if isinstance(by_entity, dict) else {},
    )
