"""Posting throughput with batching stays close to what the target's rate limit allows."""

from __future__ import annotations

from pm_accounting_pipeline.posting.bench import bench_posting


def test_batched_posting_reaches_90_percent_of_the_rate_limit_ceiling() -> None:
    # 3 batch requests per 3 s, 30 documents each: 270 documents need 3 windows, i.e. just over 6 s.
    result = bench_posting(270, target="qbo", requests=3, period_s=3.0)
    assert result["posted"] == 270 and result["dead"] == 0, result
    assert result["requests"] == 9, result  # 30 documents per batch request
    assert result["rate_limited_429"] == 0, result  # the client-side limiter kept under the published limit
    assert result["fraction_of_ceiling"] >= 0.9, result
