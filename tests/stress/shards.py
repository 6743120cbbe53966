"""The long simulation on every core: ``python -m tests.stress.shards --ops 1000000``.

One simulation is one thread of the engine, so a long run uses one core. This runs the
operations as several seeds side by side, one process each (``--shards``, by default one per
core): seed ``S``, ``S + 1``, ... each with its share of the operations, on its own database.
Every shard is a whole simulation (its own organizations, clock and years of history) and
replays alone with the command it prints. Their progress lines are prefixed with the seed; the
run fails if any shard fails, and names the seed to replay.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from tests.stress.test_simulation import DEFAULT_SEED


@dataclass
class Shard:
    seed: int
    ops: int
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    began: float = 0.0
    ended: float = 0.0


COMMAND = [
    sys.executable,
    *("-m", "pytest", "tests/stress/test_simulation.py", "-q", "-s"),
    *("-p", "no:cacheprovider", "-k", "keeps_every"),
]


def _follow(shard: Shard, lock: threading.Lock) -> None:
    assert shard.process is not None
    assert shard.process.stdout is not None
    for line in shard.process.stdout:
        shard.lines.append(line.rstrip())
        with lock:
            print(f"[seed {shard.seed}] {line.rstrip()}", flush=True)
    shard.process.wait()
    shard.ended = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress.shards", description=__doc__)
    parser.add_argument("--ops", type=int, default=1_000_000, help="operations in all")
    parser.add_argument("--shards", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the first shard's seed")
    args = parser.parse_args(argv)
    per, rest = divmod(args.ops, args.shards)
    shards = [Shard(args.seed + n, per + (1 if n < rest else 0)) for n in range(args.shards)]
    lock = threading.Lock()
    followers = []
    began = time.monotonic()
    print(f"{args.ops:,} operations as {args.shards} seeds side by side", flush=True)
    for shard in shards:
        env = {**os.environ, "STRESS_SIM_SEED": str(shard.seed), "STRESS_SIM_OPS": str(shard.ops)}
        shard.began = time.monotonic()
        shard.process = subprocess.Popen(
            COMMAND,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        follower = threading.Thread(target=_follow, args=(shard, lock))
        follower.start()
        followers.append(follower)
    for follower in followers:
        follower.join()
    failed = [s for s in shards if s.process is None or s.process.returncode != 0]
    print(f"\n{args.ops:,} operations in {time.monotonic() - began:,.0f} s")
    for shard in shards:
        code = shard.process.returncode if shard.process else None
        verdict = "clean" if code == 0 else f"FAILED (exit {code})"
        print(
            f"  seed {shard.seed}: {shard.ops:,} operations, {verdict},"
            f" {shard.ended - shard.began:,.0f} s"
        )
    for shard in failed:
        print(
            f"replay: STRESS_SIM_SEED={shard.seed} STRESS_SIM_OPS={shard.ops}"
            " .venv/bin/python -m pytest tests/stress/test_simulation.py -x -q -s -k keeps_every"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
