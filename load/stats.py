"""What a fleet run measured, merged across worker processes, and how it is printed."""

from array import array
from dataclasses import dataclass, field


@dataclass
class FleetResult:
    phones: int = 0
    connected: int = 0
    sent_pings: int = 0
    acked_pings: int = 0
    refused_pings: int = 0  # counted by phones honouring retry_after_ms (they resend them)
    window_s: float = 0.0
    latencies_ms: array = field(default_factory=lambda: array("d"))
    errors: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, str] = field(default_factory=dict)

    def merge(self, other: "FleetResult") -> None:
        self.phones += other.phones
        self.connected += other.connected
        self.sent_pings += other.sent_pings
        self.acked_pings += other.acked_pings
        self.refused_pings += other.refused_pings
        self.window_s = max(self.window_s, other.window_s)
        self.latencies_ms.extend(other.latencies_ms)
        for code, count in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + count

    @property
    def acked_per_s(self) -> float:
        return self.acked_pings / self.window_s if self.window_s else 0.0

    @property
    def offered_per_s(self) -> float:
        return self.sent_pings / self.window_s if self.window_s else 0.0

    @property
    def refused_per_s(self) -> float:
        return self.refused_pings / self.window_s if self.window_s else 0.0

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def row(self) -> dict[str, str]:
        return {
            "phones": f"{self.connected}/{self.phones}",
            "acked pings/s": f"{self.acked_per_s:,.0f}",
            "sent": f"{self.sent_pings:,}",
            "acked": f"{self.acked_pings:,}",
            "latency samples": f"{len(self.latencies_ms):,}",
            "p50 ms": f"{self.percentile_ms(0.50):.1f}",
            "p95 ms": f"{self.percentile_ms(0.95):.1f}",
            "p99 ms": f"{self.percentile_ms(0.99):.1f}",
            "errors": ", ".join(f"{code}={count}" for code, count in sorted(self.errors.items())) or "0",
            **self.cpu,
        }


def table(rows: list[dict[str, str]]) -> str:
    """A plain aligned text table (printed, and pasted into closing notes)."""
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r.get(c, "")) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(r.get(c, "").ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
