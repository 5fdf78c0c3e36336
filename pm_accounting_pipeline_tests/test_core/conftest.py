from __future__ import annotations

import pytest

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.core.fx import EcbOfflineProvider
from pm_accounting_pipeline_tests.test_core.builders import make_mapping


@pytest.fixture(scope="session")
def mapping() -> MappingDocument:
    return make_mapping()


@pytest.fixture(scope="session")
def ecb() -> EcbOfflineProvider:
    return EcbOfflineProvider()
