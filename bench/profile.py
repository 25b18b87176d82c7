"""--profile: py-spy samples of the django-ws processes during echo, summarised by function."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from .procs import kill_group
from .targets import REPO


def start_profile(pid: int, role: str, target: str, duration: int, directory: Path) -> dict:
    out = directory / f"{target}-{role}-{pid}.txt"
    command = ["py-spy", "record", "--pid", str(pid), "--duration", str(duration), "--rate", "200",
               "--nonblocking", "--gil", "--format", "raw", "--output", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    return {"pid": pid, "role": role, "file": out, "process": process, "duration": duration}


def finish_profile(p: dict) -> dict:
    process = p["process"]
    try:
        _, err = process.communicate(timeout=p["duration"] + 30)
    except subprocess.TimeoutExpired:
        kill_group(process, timeout=1)
        err = "py-spy did not finish"
    summary = {"pid": p["pid"], "role": p["role"], "file": str(p["file"].relative_to(REPO))}
    if not p["file"].exists():
        summary["error"] = (err or "no output").strip()[-300:]
        return summary
    summary.update(summarize_collapsed(p["file"].read_text()))
    return summary


def _frame_name(frame: str) -> str:
    """'send_multipart (zmq/sugar/socket.py:701)' -> 'send_multipart (zmq/sugar/socket.py)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    for anchor in ("site-packages", "lib"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor):]
            break
    return f"{name} ({'/'.join(parts[-3:])})"


def summarize_collapsed(text: str, top: int = 15) -> dict:
    """Own-time and total-time shares of the functions in py-spy's raw (collapsed) output."""
    own, total, samples = Counter(), Counter(), 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n

    def share(counter):
        return [[name, round(100.0 * n / samples, 1)] for name, n in counter.most_common(top)]

    return {"samples": samples, "own_pct": share(own) if samples else [], "total_pct": share(total) if samples else []}



def render_profiles(echo_rounds: dict[str, list[dict]]) -> str:
    """The top functions of each profiled process (the first round of echo)."""
    lines = ["Profiles (py-spy, echo scenario, first round; share of samples):"]
    for name, rounds in echo_rounds.items():
        for prof in (rounds[0] if rounds else {}).get("profile", []):
            lines.append(f"  {name} {prof['role']} pid {prof['pid']} ({prof.get('samples', 0)} samples, "
                         f"{prof['file']})")
            if "error" in prof:
                lines.append(f"    error: {prof['error']}")
                continue
            lines.append("    own time:")
            lines += [f"      {pct:5.1f}%  {fn}" for fn, pct in prof["own_pct"][:10]]
            lines.append("    total time:")
            lines += [f"      {pct:5.1f}%  {fn}" for fn, pct in prof["total_pct"][:10]]
    return "\n".join(lines)
