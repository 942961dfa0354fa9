"""`torchdoctor hardware [--json] [--hardware FILE]`: what the probe sees.

The JSON is a valid `--hardware FILE`, so a bug report can carry the reporter's machine.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final, TextIO

from torchdoctor.agent.args import add_hardware_argument
from torchdoctor.agent.output import home_text, paint, terminal_width, use_colour, wrap, write_json
from torchdoctor.service.errors import EXIT_OK
from torchdoctor.service.models import Hardware, HardwareSource, ProbeState
from torchdoctor.service.probe.hardware import STATE_SUMMARY, hardware_to_json, resolve_hardware

_SOURCE_TEXT: Final = {
    HardwareSource.NVML: "NVML (the NVIDIA driver's management library)",
    HardwareSource.NVIDIA_SMI: "nvidia-smi",
    HardwareSource.FILE: "a hardware file (not this machine's driver)",
    HardwareSource.NONE: "nothing answered",
}

_STATE_COLOUR: Final = {
    ProbeState.OK: "green",
    ProbeState.NO_GPU: "yellow",
    ProbeState.PARTIAL: "yellow",
    ProbeState.NO_DRIVER: "red",
    ProbeState.RESTART_NEEDED: "red",
    ProbeState.ERROR: "red",
    ProbeState.DRIVER_LIBS_MISSING: "red",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "hardware",
        help="show the NVIDIA driver and GPUs the probe sees",
        description=(
            "Show the NVIDIA driver, the newest CUDA it supports, and each GPU's compute capability "
            "and memory. The --json output is a valid --hardware file."
        ),
    )
    parser.add_argument("--json", action="store_true", help="write JSON instead of text")
    add_hardware_argument(parser)
    parser.set_defaults(handler=run)


def render(hw: Hardware, *, colour: bool, width: int | None = None) -> list[str]:
    """The text report, one fact a line (wrapped to `width`, the terminal's by default); pure, so
    tests read it without a terminal."""
    cols = width if width is not None else terminal_width()
    driver = hw.driver_version or "unknown"
    cuda = (
        f"supports CUDA up to {hw.cuda_driver_version}" if hw.cuda_driver_version else "CUDA version unknown"
    )
    facts = [
        ("Source:", _SOURCE_TEXT[hw.source]),
        ("Driver:", f"{driver} ({cuda})" if hw.driver_version else driver),
    ]
    if hw.gpus:
        for gpu in hw.gpus:
            cc = (
                f"compute capability {gpu.compute_capability}"
                if gpu.compute_capability
                else "compute capability unknown"
            )
            memory = f", {gpu.memory_mib} MiB" if gpu.memory_mib is not None else ""
            facts.append((f"GPU {gpu.index}:", f"{gpu.name} ({cc}{memory})"))
    else:
        facts.append(("GPUs:", "none found"))
    lines: list[str] = []
    for label, text in facts:
        lines += wrap(text, cols, first=f"{label:<9}")
    state = wrap(STATE_SUMMARY[hw.state], cols - 9)
    hue = _STATE_COLOUR[hw.state]
    lines += [f"{'State:' if i == 0 else '':<9}{paint(line, hue, colour)}" for i, line in enumerate(state)]
    for note in hw.notes:
        lines += wrap(home_text(note), cols, first="  - ")
    return lines


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    out = stream if stream is not None else sys.stdout
    hw = resolve_hardware(args.hardware)
    if args.json:
        write_json(hardware_to_json(hw), out)
    else:
        for line in render(hw, colour=use_colour(out)):
            out.write(line + "\n")
    return EXIT_OK
