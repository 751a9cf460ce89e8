"""What one process-AGI call through agi/pbx-crm.agi costs, against a bare ``python3 -c pass``.

Every AGI(pbx-crm.agi,...) in the dialplan starts a Python process, so its CPU time is paid on
every call; the goal is to stay within 1.5x of the interpreter's bare start. This starts a real
FastAGI server (a plain dispatcher that returns three variables), plays ``--runs`` calls through
the relay with the Asterisk emulator, and ``--runs`` bare starts, interleaved, and compares the
CPU time (user + system) of the child processes, from ``getrusage(RUSAGE_CHILDREN)`` deltas.

Both are started through ``/usr/bin/env python3`` as Asterisk starts the relay (its shebang),
with ``python3`` resolving to ``--python``: by default ``/usr/bin/python3``, the interpreter a PBX
runs it with (a virtualenv's python reached through a symlink is its base interpreter anyway).

    .venv/bin/python bench/agi_relay.py [--runs 50] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pbx_crm.telephony.fastagi import FastAgiServer, relay_script_path
from pbx_crm.simulator.agi import FakeChannel, run_process_agi


class LookupDispatcher:
    def handle(self, request):
        return {"CRM_STATUS": "OK", "CRM_DEAL_ID": "42", "CRM_CONTACT": 'Budi "Bos" Santoso'}

    def overloaded(self, request):
        return {"CRM_STATUS": "UNAVAILABLE"}


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(run) -> tuple[float, float]:
    cpu, wall = child_cpu(), time.perf_counter()
    run()
    return child_cpu() - cpu, time.perf_counter() - wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    default_python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    parser.add_argument("--python", default=default_python, help="the python3 the shebang finds")
    options = parser.parse_args()

    server = FastAgiServer(("127.0.0.1", 0), LookupDispatcher())
    port = server.start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = relay_script_path()

    with tempfile.TemporaryDirectory() as bindir:
        os.symlink(options.python, Path(bindir) / "python3")
        env = {
            "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "PBX_CRM_FASTAGI": f"127.0.0.1:{port}",
        }
        full_env = {**os.environ, **env}

        def bare():
            subprocess.run(["/usr/bin/env", "python3", "-c", "pass"], env=full_env, check=True)

        def relayed():
            channel = FakeChannel(uniqueid=f"1795892488.{time.monotonic_ns()}")
            transcript = run_process_agi(
                script, "incoming", ["2150001", "+62 812-3456-7890"], channel, env=env
            )
            assert channel.variables.get("CRM_DEAL_ID") == "42", transcript

        bare(), relayed()  # warm the file cache
        bare_cpu, bare_wall, relay_cpu, relay_wall = [], [], [], []
        for _ in range(options.runs):
            cpu, wall = measure(bare)
            bare_cpu.append(cpu), bare_wall.append(wall)
            cpu, wall = measure(relayed)
            relay_cpu.append(cpu), relay_wall.append(wall)
    server.shutdown()

    def ms(values):
        return f"mean {statistics.mean(values) * 1000:6.1f} ms  median {statistics.median(values) * 1000:6.1f} ms"

    print(f"interpreter: {os.path.realpath(options.python)}  runs: {options.runs}")
    print(f"bare python3 -c pass   CPU {ms(bare_cpu)}   wall {ms(bare_wall)}")
    print(f"pbx-crm.agi full call  CPU {ms(relay_cpu)}   wall {ms(relay_wall)}")
    ratio = statistics.mean(relay_cpu) / statistics.mean(bare_cpu)
    print(f"CPU ratio relay / bare: {ratio:.2f}x (goal: within 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
