"""Posting throughput with batching stays close to what the target's rate limit allows."""

from __future__ import annotations

from pm_accounting_pipeline.posting.bench import bench_posting


def test_batched_posting_reaches_90_percent_of_the_rate_limit_ceiling() -> None:
    result = bench_posting(180, target="qbo", requests=2, period_s=1.0)
    assert result["posted"] == 180 and result["dead"] == 0, result
    assert result["requests"] == 6, result  # 30 documents per batch request
    assert result["rate_limited_429"] == 0  # the client-side limiter kept under the published limit
    assert result["fraction_of_ceiling"] >= 0.9, result
