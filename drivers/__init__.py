"""Device drivers: slmsuite SLMs and cameras (real and simulated), SCPI instruments over pyvisa.

slmsuite logs every device initialisation at INFO on stdout, which would corrupt ``--json`` output;
lab4f routes its console log to stderr at WARNING (``lab4f -v`` turns it back to DEBUG).
"""

import logging
import sys


def quiet_slmsuite(level: int = logging.WARNING) -> None:
    try:
        import slmsuite
    except ImportError:  # pragma: no cover - slmsuite is a dependency
        return
    configure = getattr(slmsuite, "configure_logging", None)
    if configure is not None:
        configure(level, stream=sys.stderr)


quiet_slmsuite()
