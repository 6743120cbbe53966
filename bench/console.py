"""Console page loads with 10,000 users and 1,000,000 calls (SQLite, the embedded default).

Figures: for each main console page, the median and p95 time to answer a GET with a signed-in
admin's session cookie (the HTML only: charts are separate images, measured on their own),
through the whole ASGI app in-process (Litestar's test client; no network). Target: p95 under
300 ms. Baseline: the sign-in page, which reads nothing from the database (the framework,
middleware and template cost on this machine).

The calls are those of the reports benchmark (stored straight through the call repository, one
database built once per run and copied here); the users go through the directory's CSV import,
like an admin's upload.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from bench.report import Figure
from bench.reports import calls_database, settings
from commcredits.api.app import create_app
from commcredits.app import build
from commcredits.services.credits import NewOrder

TARGET_MS = 300.0
PASSWORD = "bench console password"


def _users(container: Any, org_id: str, count: int, say: Callable[..., Any]) -> str:
    container.directory.set_subscription(org_id, "MCOEV", count, actor="bench")
    container.directory.set_subscription(org_id, "MCOPSTN1", count, actor="bench")
    rows = [
        (
            n + 2,
            {
                "upn": f"user{n}@contoso.com",
                "display_name": f"User {n}",
                "usage_location": "DE",
                "licenses": "MCOEV;MCOPSTN1" if n % 2 else "",
            },
        )
        for n in range(count)
    ]
    report = container.directory.import_users(org_id, rows, actor="bench")
    assert not report.errors, report.errors[:3]
    say(f"  {count:,} users imported")
    return f"user{count // 2 + 1}@contoso.com"


def _time(client: Any, path: str, repeats: int) -> tuple[float, float]:
    client.get(path)  # warm: templates compiled, caches filled
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        answer = client.get(path)
        samples.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95


def run(*, quick: bool, say: Callable[..., Any]) -> list[Figure]:
    users = 1_000 if quick else 10_000
    count = 100_000 if quick else 1_000_000
    repeats = 10 if quick else 30
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # The reports suite's million calls (built once per run), copied: this suite writes.
        shared, org_id = calls_database(count, say)
        with (
            closing(sqlite3.connect(shared)) as source,
            closing(sqlite3.connect(folder / "bench.db")) as copy,
        ):
            source.backup(copy)
        container = build(settings(folder / "bench.db"))
        try:
            org = container.orgs.get(org_id)
            method = container.credits.add_agreement(org.id, "EA-BENCH")
            for _ in range(12):
                container.credits.place_order(org.id, NewOrder("100.00", method.id))
            container.orgs.add_admin(org.id, "pat@contoso.com", "Pat", ["global_admin"])
            container.signin.set_password(org.id, "pat@contoso.com", PASSWORD)
            someone = _users(container, org.id, users, say)
            session = container.signin.sign_in("pat@contoso.com", PASSWORD)
            base = f"/console/orgs/{org.id}"
            user_id = container.directory.get_user(org.id, someone).id
            pages = {
                "Your products > Communications Credits": f"{base}/billing/products/credits",
                "Purchase services > Communications Credits": f"{base}/billing/purchase/credits",
                "Active users": f"{base}/users",
                "Active users, search": f"{base}/users?search=user42",
                "Active users, by license": f"{base}/users?sku=MCOPSTN1",
                "a user's licenses": f"{base}/users/{user_id}",
                "PSTN usage, 7 days": f"{base}/reports/pstn?days=7",
                "PSTN usage, 28 days, one user": (
                    f"{base}/reports/pstn?days=28&user=user42%40contoso.com"
                ),
                "Minute pools": f"{base}/reports/pools",
                "Notifications": f"{base}/notifications",
                "Audit log": f"{base}/audit",
            }
            size = f"{users // 1000}k users, {count // 1000}k calls"
            with TestClient(create_app(container)) as client:
                base_median, _ = _time(client, "/console/signin", repeats)
                client.cookies.set("cc_session", session.token, path="/console")
                for name, path in pages.items():
                    median, p95 = _time(client, path, repeats)
                    say(f"    {name}: median {median:.1f} ms, p95 {p95:.1f} ms")
                    figures.append(
                        Figure(
                            figure=f"console p95: {name} ({size})",
                            value=p95,
                            unit="ms",
                            baseline=base_median,
                            target=f"< {TARGET_MS:.0f} ms",
                            met=p95 < TARGET_MS,
                        )
                    )
                chart_median, _ = _time(
                    client, f"{base}/charts/daily-spend.svg?days=7", max(3, repeats // 10)
                )
                figures.append(
                    Figure(
                        figure="console median: daily-spend chart image, 7 days",
                        value=chart_median,
                        unit="ms",
                        baseline=base_median,
                        target="(loads after the page)",
                        met=None,
                    )
                )
        finally:
            container.close()
    return figures
