"""`python -m torchdoctor.agent`: the CLI where no `torchdoctor` script is at hand.

The autostart entry uses this form (`pythonw.exe -m torchdoctor.agent tray`), because
`python -m torchdoctor` cannot work: torchdoctor is a namespace package, with no `__main__`.
"""

from __future__ import annotations

import sys

from torchdoctor.agent.cli import main

if __name__ == "__main__":
    # Under pythonw.exe (how autostart starts the tray) sys.stdout and sys.stderr are None; main()
    # replaces them before anything prints (agent/output.py, ensure_streams).
    sys.exit(main())
