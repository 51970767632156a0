"""Runs a script as N local processes of one ``jax.distributed`` job (CPU devices, gloo).

    python -m jaxlab.launch --processes 2 --devices-per-process 2 -- \\
        experiments/lesson_initialization.py --quick

Each process gets ``JAX_NUM_CPU_DEVICES`` and the coordinator's address in its environment
(:mod:`jaxlab.distributed` reads it); its output is printed with a ``[i]`` prefix. If a process
fails, the others are stopped and the launcher exits with its status at once. SIGINT and
SIGTERM are passed on to every process (a checkpointed run then stops after its epoch).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

NOISE = (b"[Gloo]", b"Expected number of connected peer ranks")  # gloo's connection chatter
GRACE_SECONDS = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _forward(index: int, stream, lock: threading.Lock) -> None:
    prefix = f"[{index}] ".encode()
    for line in iter(stream.readline, b""):
        if line.lstrip().startswith(NOISE):
            continue
        with lock:
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.buffer.flush()


def _stop(processes: list[subprocess.Popen], sig: int = signal.SIGTERM) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(sig)
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launch(command: list[str], processes: int, devices: int, port: int | None = None) -> int:
    """Runs ``python command...`` as ``processes`` processes; returns the exit status (the
    first failure's, else 0)."""
    port = port or free_port()
    lock = threading.Lock()
    children, threads = [], []
    for index in range(processes):
        env = os.environ | {
            "JAX_PLATFORMS": "cpu",
            "JAX_NUM_CPU_DEVICES": str(devices),
            "JAXLAB_COORDINATOR": f"localhost:{port}",
            "JAXLAB_NUM_PROCESSES": str(processes),
            "JAXLAB_PROCESS_ID": str(index),
            "PYTHONUNBUFFERED": "1",
        }
        child = subprocess.Popen(
            [sys.executable, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        children.append(child)
        thread = threading.Thread(target=_forward, args=(index, child.stdout, lock), daemon=True)
        thread.start()
        threads.append(thread)

    received: list[int] = []

    def forward_signal(number, frame) -> None:
        if received and number == signal.SIGINT:  # a second Ctrl-C: stop everything now
            for child in children:
                child.kill()
        received.append(number)
        for child in children:
            if child.poll() is None:
                child.send_signal(number)

    previous = {s: signal.signal(s, forward_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = 0
        while None in [child.poll() for child in children]:  # polls every child
            failed = [c.returncode for c in children if c.returncode not in (None, 0)]
            if failed and not received:
                status = failed[0]
                _stop(children)
                break
            time.sleep(0.05)
        codes = [child.returncode for child in children]
        status = status or next((code for code in codes if code != 0), 0)
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
        _stop(children, signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=1.0)
    if status != 0:
        failed = [i for i, child in enumerate(children) if child.returncode == status]
        print(f"jaxlab.launch: process {failed[0]} exited with status {status}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxlab.launch",
        description="Run a script as N local processes of one jax.distributed job.",
    )
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--devices-per-process", type=int, default=1)
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the script to run after --, e.g. -- experiments/imdb_baseline.py")
    if args.processes < 1 or args.devices_per_process < 1:
        parser.error("--processes and --devices-per-process must be positive")
    return launch(command, args.processes, args.devices_per_process, args.port)


if __name__ == "__main__":
    sys.exit(main())
