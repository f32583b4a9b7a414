"""Entry point of the frozen (PyInstaller) build: one executable serves both commands.

Invoked as ``arbctl`` (a link named so, as the .deb installs in /usr/bin) it is arbctl; invoked
as ``arbd ctl ...`` too; anything else is ``arbd``.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    name = os.path.basename(sys.argv[0])
    if name.startswith("arbctl"):
        from arbd.cli.arbctl import main as arbctl_main

        arbctl_main()
    elif len(sys.argv) > 1 and sys.argv[1] == "ctl":
        del sys.argv[1]
        sys.argv[0] = "arbctl"
        from arbd.cli.arbctl import main as arbctl_main

        arbctl_main()
    else:
        from arbd.cli.main import main as arbd_main

        arbd_main()


if __name__ == "__main__":
    main()
