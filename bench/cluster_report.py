"""What `izinli bench cluster` computes from its samples, and the table it prints."""
from __future__ import annotations

import os
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stop:
    """A STOP posted during the run: the person's campaign line and blind index, when it was
    asked and answered (wall clock, as the sandbox's send times), and whether it went through
    another process than the one holding the line."""
    line: str
    index: bytes
    asked: float
    answered: float
    cross: bool


def stop_figures(stops: list[Stop], received: dict[tuple[str, bytes], list[float]]) -> dict:
    """A STOP is measured when no message to the person started before its response; its
    lateness is how long after the response the last message to the person started (0 when
    none did)."""
    measured, asked = [], []
    for stop in stops:
        sends = received.get((stop.line, stop.index), [])
        if not any(at <= stop.answered for at in sends):  # else already messaged
            measured.append(max((at - stop.answered for at in sends), default=0.0))
        if not any(at <= stop.asked for at in sends):
            # The person's view: messages that still started after they sent STOP.
            asked.append(max((at - stop.asked for at in sends), default=0.0))
    return {"stops": len(stops), "stops_cross": sum(s.cross for s in stops),
            "stops_measured": len(measured), "stops_late": sum(x > 0 for x in measured),
            "lateness": percentiles(measured),
            "after_asked": sum(x > 0 for x in asked), "after_asked_max": max(asked, default=None),
            "stop_response": percentiles([s.answered - s.asked for s in stops])}


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:  # nearest rank
        return ordered[min(len(ordered) - 1, max(0, int(-(-p * len(ordered) // 1)) - 1))]
    return {"p50": rank(0.50), "p99": rank(0.99), "max": ordered[-1]}


def machine_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def pid_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_seconds(before: dict, after: dict) -> dict:
    """Cores in use over the window: the machine, the izinli processes, and this database's
    PostgreSQL backends (those alive at the end; a backend that started during the window
    counts whole)."""
    window = after["at"] - before["at"]
    (b0, t0), (b1, t1) = before["busy"], after["busy"]
    cpus = os.cpu_count() or 1
    postgres = sum(cpu - before["postgres"].get(pid, 0.0)
                   for pid, cpu in after["postgres"].items())
    return {"machine": cpus * (b1 - b0) / max(t1 - t0, 1), "izinli": (after["izinli"] -
            before["izinli"]) / window, "postgres": postgres / window, "cpus": cpus}


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:,.0f}"


def report(results: list[dict], recipients: int, lines: int, version: str, cpus: int,
           round_trips: bool) -> None:
    print(f"\ncluster bench: {lines} unthrottled sandbox lines, {recipients:,} recipients a run, "
          f"PostgreSQL {version} on the same machine, {cpus} CPUs shared by the processes, "
          "PostgreSQL and this bench" + (" (database traffic through the counting proxy)"
                                         if round_trips else ""))
    one = results[0] if results and results[0]["processes"] == 1 else None
    print(f"{'procs':>5} {'msgs/s':>8} {'×1':>5} {'lines/proc':>12} {'cores: all':>10} "
          f"{'izinli':>6} {'pg':>5} {'other':>5} {'xacts/msg':>9} {'Δ vs 1':>7} "
          f"{'RT/msg':>7} {'Δ vs 1':>7} {'idle xacts/s':>12} {'idle RT/s':>9}")
    for r in results:
        cpu = r["cpu"]
        speed = f"{r['msgs_s'] / one['msgs_s']:.2f}" if one else "–"
        dx = f"{r['xacts_msg'] - one['xacts_msg']:+.3f}" if one else "–"
        rt = f"{r['rt_msg']:.3f}" if r["rt_msg"] is not None else "–"
        drt = (f"{r['rt_msg'] - one['rt_msg']:+.3f}" if one and r["rt_msg"] is not None
               else "–")
        idle_rt = f"{r['idle_rt_s']:.1f}" if round_trips else "–"
        spread = "/".join(str(c) for c in r.get("lines_per_process", [])) or "–"
        print(f"{r['processes']:>5} {r['msgs_s']:>8,.0f} {speed:>5} {spread:>12} "
              f"{cpu['machine']:>10.2f} {cpu['izinli']:>6.2f} {cpu['postgres']:>5.2f} "
              f"{cpu['machine'] - cpu['izinli'] - cpu['postgres']:>5.2f} "
              f"{r['xacts_msg']:>9.3f} {dx:>7} {rt:>7} {drt:>7} {r['idle_xacts_s']:>12.1f} "
              f"{idle_rt:>9}")
    print(f"\n{'procs':>5} {'STOPs':>6} {'cross':>6} {'measured':>8} {'late':>5} "
          f"{'lateness p50/p99/max ms':>24} {'STOP answer p50/p99 ms':>23} "
          f"{'after ask n/max ms':>18} {'takeover s':>10} "
          f"{'after kill -9: sent/unknown/dupes':>34}")
    for r in results:
        late, answer = r["lateness"], r["stop_response"]
        take = r.get("takeover")
        after = (f"{take['states'].get('sent', 0)}/{take['states'].get('unknown', 0)}/"
                 f"{take['duplicates']}" if take else "–")
        taken = f"{r['takeover_s']:.2f}" if "takeover_s" in r else "–"
        print(f"{r['processes']:>5} {r['stops']:>6} {r['stops_cross']:>6} "
              f"{r['stops_measured']:>8} {r['stops_late']:>5} "
              f"{_ms(late['p50']) + '/' + _ms(late['p99']) + '/' + _ms(late['max']):>24} "
              f"{_ms(answer['p50']) + '/' + _ms(answer['p99']):>23} "
              f"{str(r['after_asked']) + '/' + _ms(r['after_asked_max']):>18} "
              f"{taken:>10} {after:>34}")
    for r in results:
        bad = {k: v for k, v in r["states"].items() if k not in ("sent", "skipped")}
        if r["duplicates"] or bad:
            print(f"WARNING {r['processes']} process(es): {r['duplicates']} duplicate "
                  f"recipients, outbox states {r['states']}")
        if r.get("leases_lost") or r.get("marked_unknown"):
            print(f"WARNING {r['processes']} process(es): {r['leases_lost']} line leases lost "
                  f"by a live holder during the run, {r['marked_unknown']:,} messages marked "
                  "unknown by the process that took the line over")
        if r.get("unlocks_lost"):
            print(f"WARNING {r['processes']} process(es): a campaign waited for an unlock "
                  f"{r['unlocks_lost']} time(s) although every process had been unlocked; "
                  "the bench unlocked them again")
    print(LEGEND)


LEGEND = """
msgs/s: messages from the first send to the last (the sandbox's send times).
cores: CPU in use during the run: the machine, the izinli processes, this database's PostgreSQL
  backends, and other (this bench and whatever else runs on the machine).
xacts/msg: PostgreSQL transactions during the run per message, the cluster's background
  included; RT/msg: round trips to PostgreSQL per message (--round-trips).
STOP: posted for a person whose message is claimed or next in line, through another process
  than the line's holder (cross); measured: nothing had been sent to the person before the
  STOP's answer; late: a message to them still started after it; lateness: how long after.
  after ask: the person's view, from the moment the STOP was sent rather than answered:
  STOPs after which a message to them still started, and the latest such start.
takeover: kill -9 of a paced line's holder, to the line's fencing token changing."""
