"""allocbench probe: what glibc really does, and the mmap claims."""
from __future__ import annotations

import json
import os
import sys

from .common import UsageError, out_path, size_arg

NAME = "probe"
HELP = "what glibc really does, and the mmap claims: one probe by name, or all"


def add_arguments(p) -> None:
    from ..probes import GLIBC_PROBES, PROBE_ALLOCATORS, PROBES

    p.add_argument("name", choices=PROBES + ("all",), metavar="NAME",
                   help=f"glibc's behaviour: {', '.join(GLIBC_PROBES)}; the mmap claims: "
                        f"{', '.join(p for p in PROBES if p not in GLIBC_PROBES)}; or all of them")
    p.add_argument("--mmap-threshold", type=size_arg, help="boundary: fix M_MMAP_THRESHOLD first")
    p.add_argument("--allocator", choices=PROBE_ALLOCATORS, default=PROBE_ALLOCATORS[0],
                   help="boundary and dynamic also run on the toy")
    p.add_argument("--json", action="store_true", help="print JSON instead of the summary")
    p.add_argument("--out", type=out_path, help="also write the JSON to this file (the report reads it)")


def run(args) -> int:
    from .. import probes

    names = probes.PROBES if args.name == "all" else (args.name,)
    if args.name == "all" and (args.allocator != probes.PROBE_ALLOCATORS[0] or args.mmap_threshold is not None):
        raise UsageError("probe all runs the glibc probes with their defaults; name one probe for options")
    try:
        for name in names:
            probes.check_probe(name, args.allocator, args.mmap_threshold)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    results = {}
    try:
        for name in names:
            work_dir = os.path.dirname(os.path.abspath(args.out)) if args.out else "results"
            results[name] = probes.run_probe(name, args.allocator, args.mmap_threshold, work_dir=work_dir)
            if not args.json:
                print("\n".join(([f"== probe {name}"] if len(names) > 1 else []) + results[name]["summary"]),
                      flush=True)
    except probes.ProbeError as e:
        print(f"allocbench: probe failed: {e}", file=sys.stderr)
        return 1
    out = results if args.name == "all" else results[args.name]
    if args.out:
        from ..results import write_json_atomically
        write_json_atomically(args.out, out)
    if args.json:
        print(json.dumps(out))
    return 0
