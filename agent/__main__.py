"""`python -m torchdoctor.agent`: the CLI where no `torchdoctor` script is at hand.

The autostart entry uses this form (`pythonw.exe -m torchdoctor.agent tray`), because
`python -m torchdoctor` cannot work: torchdoctor is a namespace package, with no `__main__`.
"""

from __future__ import annotations

import os
import sys

from torchdoctor.agent.cli import main

if __name__ == "__main__":
    # Under pythonw.exe (how autostart starts the tray) there is no console: sys.stdout and
    # sys.stderr are None, and the first write to them would end the tray with an AttributeError.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115, PTH123 - lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115, PTH123 - same
    sys.exit(main())
