import sys

from torchdoctor.agent.cli import main

sys.exit(main())
