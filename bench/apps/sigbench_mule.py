"""uWSGI mule script (`--mule=sigbench_mule.py`): Switchboard runs sigbench:mule_main."""

import sigbench

sigbench.mule_main()
