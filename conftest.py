# The reliability figures plugin (tests/reliability_report.py). It is registered here because only
# the root conftest may list plugins; the suite's own fixtures are in tests/conftest.py.
pytest_plugins = ["tests.reliability_report"]
