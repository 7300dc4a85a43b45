"""Inside a running process (`allocbench inspect`): for each inspected program,
its arenas at each snapshot taken while it ran, what malloc held free and in
RAM, what a trim would have returned, the live threshold, and the findings;
with more than one snapshot, free and in-use bytes per arena and the
threshold over the run."""
from __future__ import annotations

from ..units import human_bytes as hb


def label(rec: dict) -> str:
    return rec.get("program") or rec.get("comm") or str(rec.get("pid"))


def series_of(recs: list[dict]) -> dict[str, list[dict]]:
    """The snapshots of each program (a --watch file, or make bench's mid-run snapshots), in time order."""
    out: dict[str, list[dict]] = {}
    for r in recs:
        if r.get("kind") == "inspect" and r.get("status") == "ok":
            out.setdefault(label(r), []).append(r)
    for snaps in out.values():
        snaps.sort(key=lambda r: r.get("t_s", r.get("t", 0)))
    return out


def draw_over_time(snaps: list[dict], path: str, cap: str) -> bool:
    """Free and in-use bytes per arena, and the mmap threshold, at each snapshot."""
    if len(snaps) < 2:
        return False
    from .draw import plt, save

    t0 = snaps[0].get("t", 0)
    x = [r.get("t_s", r.get("t", 0) - t0) for r in snaps]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    indices = sorted({a["index"] for r in snaps for a in r["arenas"]})
    for i in indices:
        def value(r, key, i=i):
            a = next((a for a in r["arenas"] if a["index"] == i), None)
            if a is None or a[key] is None:
                return None
            return a[key] / 2**20

        ax.plot(x, [value(r, "in_use_bytes") for r in snaps], "-o", ms=3, color=f"C{i % 10}",
                label=f"arena {i} in use")
        ax.plot(x, [None if value(r, "system_bytes") is None or value(r, "in_use_bytes") is None
                    else value(r, "system_bytes") - value(r, "in_use_bytes") for r in snaps], "--", color=f"C{i % 10}",
                label=f"arena {i} free")
    ax.set_ylabel("MiB")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax2.step(x, [r["mp"]["mmap_threshold"] / 1024 for r in snaps], where="post", color="k")
    ax2.set_ylabel("mmap threshold, KiB")
    ax2.set_xlabel("seconds into the run")
    ax2.grid(True, alpha=0.3)
    ax.set_title(f"{label(snaps[0])}: malloc's arenas over the run (allocbench inspect)")
    return save(fig, cap, path)


def render(inputs, canvas) -> list[str]:
    if not inputs.inspect:
        return []
    lines = ["## Inside a running process", "",
             "Each program read from outside while it ran (`allocbench inspect PID`: glibc's own bookkeeping, "
             "every thread stopped for the snapshot). Free is what malloc holds free, in RAM the part of it still "
             "resident, a trim what `malloc_trim(0)` would have returned at that moment.", ""]
    for name, snaps in series_of(inputs.inspect).items():
        last = snaps[-1]
        when = f" at {last['t_s']:.1f} s" if last.get("t_s") is not None else ""
        stopped = f"stopped {last['stopped_ns'] / 1e6:.1f} ms" if last.get("stopped_ns") is not None else "not stopped"
        r, t, mp = last["rss"], last["totals"], last["mp"]
        lines += [f"### {name}", "",
                  f"{len(snaps)} snapshot(s); the last{when} ({stopped}, layout by {last['symbols']}): RSS "
                  f"{hb(r['total_bytes'])} (brk heap {hb(r['brk_heap_bytes'])}, thread-arena heaps "
                  f"{hb(r['arena_heap_bytes'])}, mmapped chunks {hb(r['mmapped_chunk_bytes'])}, other anonymous "
                  f"{hb(r['other_anon_bytes'])}, files {hb(r['file_bytes'])}); mmap threshold "
                  f"{hb(mp['mmap_threshold'])}{' (risen)' if mp['threshold_risen'] else ''}.", "",
                  "| arena | threads | system | in use | free | free in RAM | a trim returns |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for a in last["arenas"]:
            val = lambda v: "?" if v is None else hb(v)
            lines.append(f"| {a['index']}{' (main)' if a['main'] else ''} | {a['attached_threads']} | "
                         f"{val(a['system_bytes'])} | {val(a['in_use_bytes'])} | {hb(sum(a['free_bytes'].values()))} | "
                         f"{val(a['free_resident_bytes'])} | {val(a['trimmable_bytes'])} |")
        lines += ["", f"In all: {hb(t['free_bytes'])} free of {hb(t['system_bytes'])}, "
                      f"{hb(t['free_resident_bytes'])} of it in RAM, {hb(t['trimmable_bytes'])} for a trim.", ""]
        lines += [f"- {f}" for f in last["findings"]] or ["- nothing stands out"]
        lines.append("")
        safe = "".join(c if c.isalnum() else "_" for c in name)
        lines += canvas.figure(f"inspect_{safe}.png", f"{name}: arenas over the run",
                               lambda path, cap, snaps=snaps: draw_over_time(snaps, path, cap))
    return lines
