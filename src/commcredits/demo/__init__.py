"""The demo: a seeded organization and months of simulated traffic through the real API.

``commcredits demo`` (and ``make run``) builds it on its own database, prints a summary read
back from the reports and the ledger, and serves the result. See docs/quickstart.md.
"""

from commcredits.demo.run import DatabaseState, DemoOutcome, inspect_database, run_demo
from commcredits.demo.scenario import SIGNUP, DemoOptions

__all__ = [
    "SIGNUP",
    "DatabaseState",
    "DemoOptions",
    "DemoOutcome",
    "inspect_database",
    "run_demo",
]
