"""One measured figure and how it compares with its baseline and target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    figure: str
    value: float
    unit: str
    baseline: float | None
    target: str
    met: bool | None

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "value": round(self.value, 3),
            "unit": self.unit,
            "baseline": round(self.baseline, 3) if self.baseline else None,
            "ratio": round(self.ratio, 4) if self.ratio is not None else None,
            "target": self.target,
            "met": self.met,
        }
