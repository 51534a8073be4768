"""Capacity: step Locust users up until p95 or the failure rate breaks the profile's targets; the
highest step that met them is the capacity (requests/s and candidate pairs/s)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ... import config
from ..fmt import fmt
from .locust import run_locust
from .profiles import Profile, Targets


def run_capacity(profile: Profile, endpoints, out_dir: Path, server_pid: int | None = None) -> dict:
    """Step users up (profile.capacity_users, step_run_time_s each) until p95 or the failure
    rate breaks the profile's targets; the highest step that met them is the capacity."""
    gate = Targets(p95_ms=profile.targets.p95_ms, max_failure_rate=profile.targets.max_failure_rate)
    steps, best = [], None
    for users in profile.capacity_users:
        step = replace(profile, users=users, spawn_rate=max(profile.spawn_rate, users), targets=gate,
                       run_time_s=profile.capacity_step_s)
        result = run_locust(step, endpoints, out_dir, name=f"{profile.name}-capacity/u{users:03d}",
                            server_pid=server_pid, echo=False)
        total = result.total
        steps.append({"users": users, "passed": result.passed, "requests": total.requests,
                      "failures": total.failures, "rps": round(total.rps, 2),
                      "pairs_per_s": round(total.pairs_per_s, 1), "p50_ms": total.p(50), "p95_ms": total.p(95),
                      "p99_ms": total.p(99), "cpu": result.cpu,
                      "ranker_rows_per_execution":
                          result.metrics.get(config.RANKER_MODEL, {}).get("rows_per_execution")})
        print(f"  capacity step {users:>3} users: {total.rps:6.1f} req/s, {total.pairs_per_s:7.0f} pairs/s, "
              f"p95 {fmt(total.p(95), '.0f')} ms, failures {total.failures}, "
              f"server {fmt(result.cpu.get('server_cores'), '.2f')} / "
              f"Locust {result.cpu['load_generator_cores']:.2f} cores"
              f" -> {'meets' if result.passed else 'BREAKS'} p95 <= {gate.p95_ms:g} ms", flush=True)
        if not result.passed:
            break
        if best is None or total.rps > best["rps"]:
            best = steps[-1]
    summary = {"profile": profile.name, "p95_target_ms": gate.p95_ms, "max_failure_rate": gate.max_failure_rate,
               "candidates": profile.candidates.spec, "top_k": profile.top_k,
               "step_run_time_s": profile.capacity_step_s,
               "steps": steps, "capacity": best}
    path = Path(out_dir) / f"{profile.name}-capacity" / "capacity.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    if best:
        print(f"=> capacity ({profile.name}): {best['rps']:.1f} requests/s = {best['pairs_per_s']:.0f} candidate "
              f"pairs/s at {best['users']} users with p95 {fmt(best['p95_ms'], '.0f')} ms <= {gate.p95_ms:g} ms  "
              f"({path})")
    else:
        print(f"=> capacity ({profile.name}): not even {profile.capacity_users[0]} user(s) met "
              f"p95 <= {gate.p95_ms:g} ms")
    return summary
