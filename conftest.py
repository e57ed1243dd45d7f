"""Root conftest: wires the conformance suite into pytest (options, fixtures, xdist).

Hooks live in ``conformance/plugin.py``; this file only registers them.
"""

import pytest

from conformance import plugin
from conformance.tracking import Tracker, parse_shard


def pytest_addoption(parser):
    """Add the suite's options (--backend, --device, --grid, --seed, --case)."""
    plugin.addoption(parser)


def pytest_configure(config):
    """Validate options; register the skip-reason and case-input summaries, the Hypothesis
    plugin's remover and the per-case tracker (their xdist hooks are optional hooks)."""
    plugin.configure(config)
    parse_shard(config.option.shard)
    config.pluginmanager.register(plugin.SkipTally(), "fp8-skip-tally")
    config.pluginmanager.register(plugin.IdleHypothesis(config), "fp8-idle-hypothesis")
    config.pluginmanager.register(plugin.InputTally(config), "fp8-input-tally")
    config.pluginmanager.register(Tracker(config), "fp8-tracker")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Last thing of the run: freeze what is alive (``plugin.quick_exit``)."""
    plugin.quick_exit()


def pytest_report_header(config):
    """Name the backend, device, grid, seed and accumulation profile in the header."""
    return plugin.report_header(config)


def pytest_generate_tests(metafunc):
    """Parametrize ``case`` over the selected grid."""
    plugin.generate_tests(metafunc)


def pytest_ignore_collect(collection_path, config):
    """Collect the store-coverage test only in default-grid runs."""
    return plugin.ignore_coverage(collection_path, config)


@pytest.fixture(scope="session")
def adapter(pytestconfig):
    """The kernel adapter under test."""
    return pytestconfig._fp8_adapter


@pytest.fixture(scope="session")
def golden_store(pytestconfig):
    """The golden store, or None with --no-golden."""
    return pytestconfig._fp8_store


@pytest.fixture(scope="session")
def device(pytestconfig):
    return pytestconfig.option.device


@pytest.fixture(scope="session")
def seed(pytestconfig):
    return pytestconfig.option.seed


@pytest.fixture(scope="session")
def reference_dot(pytestconfig):
    """The --reference-device GEMM for computed cases (None: golden's NumPy one)."""
    return pytestconfig._fp8_dot


@pytest.fixture(scope="session")
def timing_reps(pytestconfig):
    """Timed kernel calls per case (--timing-reps)."""
    return pytestconfig.option.timing_reps
